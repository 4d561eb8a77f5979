"""pneumo: experiment-tracking sweeps for chest X-ray pneumonia classification.

Kept import-light on purpose: `pneumo --help` and the data commands must not
pull in TensorFlow.
"""

import os

__version__ = "0.1.0"

# MLflow 3 sends usage telemetry from a background thread by default. A clinical
# research tool should not phone home unasked (and sites without network only get
# failed connections from it): off unless the user set MLFLOW_DISABLE_TELEMETRY.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# Installed with `.[jax]` or `.[torch]` only: run Keras on that backend unless KERAS_BACKEND says otherwise.
from pneumo.runtime import backend as _backend

_backend.choose()
