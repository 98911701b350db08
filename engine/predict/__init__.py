"""``run.py --predict``: apply trained checkpoints to new images and volumes.

``options`` parses the flags, ``checkpoints`` rebuilds the task modules from their checkpoints (the
checkpoint's own hyper-parameters, the config only where it lacks them), ``inputs`` finds and reads
images, NIfTI files and DICOM series, ``runner`` turns images into class log-probabilities (resize or
sliding windows, flip TTA, checkpoint ensembles), ``writers`` writes masks, probabilities, overlays
and NIfTI volumes, and ``driver`` runs it all with a progress bar and ``predictions.csv``.
"""

from engine.predict.driver import run_prediction
from engine.predict.options import PredictOptions, is_predict_call, parse_predict_args

__all__ = ["PredictOptions", "is_predict_call", "parse_predict_args", "run_prediction"]
