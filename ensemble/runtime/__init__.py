"""ensemble.runtime: images to P(positive), in this process or from an export.

    model       EnsembleModel: an ENS_DIR, a bag or a checkpoint, loaded with torch
    exported    ExportedModel: a verified MODEL_DIR run by onnxruntime (or TorchScript)
    predictor   the Predictor protocol and load_predictor, which dispatches on the folder's kind
    inputs      the image files and slices a model is run on
"""
