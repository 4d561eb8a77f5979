"""pneumo: experiment-tracking sweeps for chest X-ray pneumonia classification.

Imports sit at the top of each module. These are the late ones, inside the function that
needs them, each for a start-up cost that was measured or an import that must wait
(tests/test_layout.py holds the code to this list). `pneumo --help` (~1 s) and the data
commands load neither TensorFlow nor these.

- pneumo/runtime/backend.py (keras, tensorflow, jax, torch): `import pneumo` runs it, to choose
  the backend (KERAS_BACKEND) before Keras is imported; Keras with TensorFlow takes 8-10 s to
  import here, and only the installed backend can be imported at all.
- pneumo/runtime/quiet.py (keras): `libraries()` is where a job first imports Keras, its native
  log lines filtered.
- pneumo/job/__init__.py (pneumo.job.phases): the phases load Keras (pneumo.search.session), and
  a job checks its config (a bad value exits 2 in seconds) and quietens the libraries before
  Keras loads.
- pneumo/evaluation/plots.py (matplotlib, sklearn), pneumo/evaluation/referral.py (matplotlib):
  pneumo.job.phases imports them at its top, and a config refused at start-up would load matplotlib and
  scikit-learn's calibration for nothing (0.5 s of the 4.5 s CPU it takes to say no).
- pneumo/data/splits.py (sklearn): every command, `--help` too, loads pneumo.data, and
  scikit-learn's model_selection takes 1-2 s.
- pneumo/evaluation/importance.py (sklearn): every `pneumo compare` loads it; only --importance
  fits forests (0.4-0.8 s of import).
- pneumo/data/kaggle.py (kaggle): the client authenticates when imported.

pneumo/commands/, pneumo/release/ and pneumo/record/ are not held to it yet
(issue 29 item 4).
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
