"""pneumo: experiment-tracking sweeps for chest X-ray pneumonia classification.

Kept import-light on purpose: `pneumo --help` and the data commands must not
pull in TensorFlow.
"""

__version__ = "0.1.0"
