"""ensemble.folders: the on-disk formats, and nothing of fitting or reports.

    ensemble_dir   ENS_DIR: its file names, `write_ensemble`, and `read_ensemble`, the one door for reading it
    model_dir      MODEL_DIR: its file names, its manifest, the sha256 checks it passes before it runs
    kinds          which kind of folder a path is, asking each format's owner (trainers, search, the two above)
"""
