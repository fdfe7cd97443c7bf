"""The harness from Python (a notebook, a script): run a study by name or from a `StudySpec` defined in a cell,
and read its answer, comparisons and runs as pandas frames.

    import harness
    result = harness.run_study("sgd_vs_adam", epochs=4)  # or run_study(my_spec), a StudySpec built in a cell
    result.answer                                       # the report's Answer, sentence by sentence
    result.comparisons                                  # one row per declared comparison
    result.runs                                         # every counted run: arm, search, seed, params, accuracies
    harness.load("sgd_vs_adam")                         # a finished study's result, rebuilt from its stores

A run goes through the command line's own checks and worker, so it resumes, refuses and records exactly as
`python -m harness.study` does; it runs one worker in this process (a notebook's kernel should not fork).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.spec import VARIANT_SETTINGS, StudySpec


@dataclass(frozen=True)
class Result:
    """A study's report, read back: its folder holds README.md, summary.json, results.csv, runs.csv and figures."""

    name: str
    report_path: Path

    @property
    def folder(self) -> Path:
        return self.report_path.parent

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.folder / "summary.json").read_text())

    @property
    def answer(self) -> list[str]:
        """The report's Answer section, one sentence per item."""
        text = self.report_path.read_text()
        section = text.split("## Answer", 1)[1].split("\n\n![", 1)[0].split("\n##", 1)[0]
        return [line[2:] for line in section.strip().splitlines() if line.startswith("- ")]

    @property
    def comparisons(self) -> pd.DataFrame:
        """One row per declared comparison: kind, decision, estimate and interval (fractions: 0.02 = 2 points)."""
        return pd.DataFrame(self.summary["decisions"])

    @property
    def results(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "results.csv")

    @property
    def runs(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "runs.csv")

    def figure(self, name: str) -> Path:
        """A figure's file (e.g. "test_acc"), to show with IPython.display.Image; KeyError names those drawn."""
        path = self.folder / (name if name.endswith(".png") else f"{name}.png")
        if not path.is_file():
            drawn = ", ".join(sorted(p.stem for p in self.folder.glob("*.png")))
            raise KeyError(f"no figure {name!r}; drawn: {drawn}")
        return path

    def _repr_markdown_(self) -> str:  # Jupyter shows the answer first, as the report does
        return f"**{self.name}**\n\n" + "\n".join(f"- {line}" for line in self.answer) + f"\n\n({self.report_path})"


def run_study(study: str | StudySpec, root: str | Path = "mlruns", reports: str | Path | None = None,
              progress: bool = True, **settings: Any) -> Result:
    """Run (or resume) a study, by its file's name or as a `StudySpec`, with `settings` a variant may change
    (`harness.spec.VARIANT_SETTINGS`: n_trials, seeds, searches, epochs, model, weights, dataset, shots, ...).
    ValueError, naming the valid choices, for what the command line would refuse. With `progress`, a progress
    bar of the study's slots (tqdm's: a widget in Jupyter, a line in a terminal) beside the slot lines."""
    from harness import study as cli
    from harness.suite_spec import flags

    unknown = sorted(set(settings) - set(VARIANT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {', '.join(unknown)}; a study may change {', '.join(VARIANT_SETTINGS)}")
    reports = Path(reports) if reports is not None else Path(root) / "reports"
    spec = None
    if isinstance(study, StudySpec):
        if not study.name:
            raise ValueError("give the StudySpec a name (StudySpec(name=..., ...)): its stores and report are named "
                             "after it")
        if not study.source:  # recorded as a study file is, so `python -m harness.report` rebuilds it
            study = _with_source(study)
        spec = study.variant(**settings)
        argv = [spec.name]
    else:
        argv = [study, *flags(settings)]
    with _progress_bar(progress):
        code = cli.main([*argv, "--root", str(root), "--reports", str(reports), "--workers", "1"], spec=spec)
    name = spec.name if spec is not None else _name(study, settings)
    if code != 0:
        raise RuntimeError(f"study {name} ended with exit code {code} (see the messages above)")
    return Result(name, reports / name / "README.md")


def load(study: str | StudySpec, root: str | Path = "mlruns", reports: str | Path | None = None) -> Result:
    """A finished (or partly run) study's result, its report rebuilt from the stores under `root`. (Running is
    `run_study`: `harness.run` is the package of the workers.)"""
    from harness.analysis.recorded import recorded_study
    from harness.reporting.markdown import build_report
    from harness.spec import STUDIES_DIR
    from harness.stores import Stores

    stores = Stores(Path(root))
    reports = Path(reports) if reports is not None else Path(root) / "reports"
    if not (stores.root / "mlflow.db").is_file():
        raise ValueError(f"no stores under {stores.root}; run the study first (harness.run_study)")
    spec = study if isinstance(study, StudySpec) else recorded_study(study, stores, STUDIES_DIR)
    return Result(spec.name, build_report(spec, stores, reports))


def _with_source(spec: StudySpec) -> StudySpec:
    import dataclasses
    import warnings

    from harness.study_file import notebook_source

    source = notebook_source(spec)
    if source is None:
        warnings.warn(f"{spec.name}: its search space uses values of this notebook's own (or its source cannot be "
                      "read), so its runs cannot record it as a study file: `python -m harness.report` will not "
                      "rebuild its report; harness.load(spec) will", stacklevel=3)
        return spec
    return dataclasses.replace(spec, source=source, file=spec.name)


@contextlib.contextmanager
def _progress_bar(show: bool) -> Iterator[None]:
    """tqdm's bar fed by the worker's slot count (harness.run.progress.listeners) for as long as the run lasts."""
    if not show:
        yield
        return
    try:  # Jupyter's widget where ipywidgets is installed; else tqdm's text bar (tqdm.auto would warn)
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm

    from harness.run import progress

    bar = tqdm(total=0, unit="slot", desc="slots")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    progress.listeners.append(update)
    try:
        yield
    finally:
        progress.listeners.remove(update)
        bar.close()


def _name(study: str, settings: dict[str, Any]) -> str:
    from harness.study_file import load_study

    return load_study(study).variant(**settings).name
