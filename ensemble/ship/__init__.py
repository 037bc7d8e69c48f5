"""ensemble.ship: what leaves the lab and how it is checked.

    graph      the whole ensemble as one torch module (members, combiner, calibrator)
    export     `lungsweep export`: ENS_DIR, a sweep's trial or a run as one verified MODEL_DIR
    predict    `lungsweep predict`: a model on new images, one CSV row each
    evaluate   `lungsweep evaluate`: a model scored on a labelled folder
"""
