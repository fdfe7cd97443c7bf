"""harness: optimizer comparisons for transfer learning, run as Optuna studies and logged to MLflow."""

import os

# MLflow's usage telemetry sends records to a server outside this machine from a background thread: the
# harness contacts no address but the stores it is given (and a thread alive at a fork could hold a lock the
# forked worker then waits on for ever). A user's own setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def __getattr__(name: str):
    """The Python API (harness.api) and what a study is built from, imported when first asked for: `import harness`
    stays light for the command line."""
    if name in ("run_study", "load", "Result"):
        from harness import api

        return getattr(api, name)
    if name in ("StudySpec", "Arm", "TrialConfig"):
        from harness import spec

        return getattr(spec, name)
    if name in ("SuiteSpec", "Workload"):
        from harness import suite_spec

        return getattr(suite_spec, name)
    if name == "register_model":  # imports torch: a study file that registers a model needs it anyway
        from harness.learn.register import register_model

        return register_model
    if name in ("Difference", "NonInferior", "Equivalent", "Interaction", "Trend"):
        from harness import analysis_plan

        return getattr(analysis_plan, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
