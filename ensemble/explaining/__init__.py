"""ensemble.explaining: where the models look, on top of ensemble.runtime.

    cam       Grad-CAM (captum) of each member, placed and averaged as the ensemble averages them
    border    the content box and border band of an image as the models saw it, and a map's mass in each
    explain   `lungsweep explain`: sources, samples, overlays, the summary
"""
