"""harness: optimizer comparisons for transfer learning, run as Optuna studies and logged to MLflow."""

import os

# MLflow's usage telemetry sends records to a server outside this machine from a background thread: the
# harness contacts no address but the stores it is given (and a thread alive at a fork could hold a lock the
# forked worker then waits on for ever). A user's own setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
