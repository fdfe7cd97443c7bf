"""A suite: one study's question asked over many workloads (model x source -> target x shots x epochs).

Each workload is a variant of one study file: the same arms, search space, budget and declared comparisons,
with other settings (those `python -m harness.study STUDY --shots 10 ...` may change). So a workload is a study
of its own, with its own Optuna studies, MLflow experiment, report, workers and resume, and one that the study's
own command line already ran (the study itself, or the same variant) is the same study: reused, not rerun.

Nothing here imports Optuna, MLflow or torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.naming import variant_name
from harness.spec import STUDIES_DIR, VARIANT_SETTINGS, StudySpec
from harness.study_file import load_study

FLAGS = {"n_trials": "--trials", "data_root": "--data-root", "source_classes": "--source-classes",
         "target_classes": "--target-classes"}  # a setting's command-line flag, where it is not --<setting>


@dataclass(frozen=True)
class Workload:
    """One task of the suite: `label` for the report, and the settings (`harness.spec.VARIANT_SETTINGS`) that
    differ from the suite's study file. `target` is the validation accuracy time-to-target counts to; None:
    the suite's `target_fraction` of the best arm's mean best validation accuracy on this workload."""

    label: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    target: float | None = None


@dataclass(frozen=True, kw_only=True)
class SuiteSpec:
    """The question, the study file whose arms and declared comparisons every workload runs, and the workloads.
    `name` is the suite file's name (`harness.study_file.load_study(..., suites=True)` sets it)."""

    name: str = ""
    question: str
    study: str
    workloads: tuple[Workload, ...]
    target_fraction: float = 0.95
    source: str = field(default="", repr=False, compare=False)
    file: str = field(default="", compare=False)
    changes: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.workloads, tuple | list) or not self.workloads or \
                not all(isinstance(w, Workload) for w in self.workloads):
            raise ValueError("workloads must be a non-empty tuple of Workload(...)")
        labels = [w.label for w in self.workloads]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"workload labels must differ; given more than once: {', '.join(twice)}")
        for w in self.workloads:
            unknown = sorted(set(w.changes) - set(VARIANT_SETTINGS))
            if unknown:
                raise ValueError(f"workload {w.label!r}: a workload may set {', '.join(VARIANT_SETTINGS)}; "
                                 f"not {', '.join(unknown)}")
            if w.target is not None and not 0 < w.target <= 1:
                raise ValueError(f"workload {w.label!r}: target is a validation accuracy in (0, 1]; got {w.target!r}")
        if not 0 < self.target_fraction <= 1:
            raise ValueError(f"target_fraction must be in (0, 1]; got {self.target_fraction!r}")


    def variant(self, changes: Mapping[str, Any]) -> SuiteSpec:
        """The suite with the command line's settings over every workload's (`StudySpec.variant`'s); named after
        what they change, so a quick trial run never overwrites the suite's report."""
        changes = {k: v for k, v in changes.items() if v is not None}
        named = {k: v for k, v in changes.items() if k != "data_root"}
        return dataclasses.replace(self, changes=changes, name=variant_name(self.name, named) if named else self.name)


def workload_specs(suite: SuiteSpec, directory: Path = STUDIES_DIR) -> list[StudySpec]:
    """Each workload's study: the suite's study file with the workload's settings (and the command line's,
    `suite.changes`, over both). Two workloads that come to the same study are refused: one would count twice."""
    base = load_study(suite.study, directory)
    specs = [base.variant(**{**w.changes, **suite.changes}) for w in suite.workloads]
    names = [s.name for s in specs]
    same = sorted({n for n in names if names.count(n) > 1})
    if same:
        raise ValueError(f"suite {suite.name}: several workloads are the same study ({', '.join(same)}); "
                         "give each workload settings of its own")
    return specs


def workload_argv(suite: SuiteSpec, workload: Workload) -> list[str]:
    """The command line that runs `workload` as a study: `python -m harness.study <this>`.

    >>> w = Workload("10 shots", {"shots": 10, "source_classes": (5, 6, 7, 8, 9)})
    >>> workload_argv(SuiteSpec(question="?", study="sgd_vs_adam", workloads=(w,)), w)
    ['sgd_vs_adam', '--shots', '10', '--source-classes', '5,6,7,8,9']
    """
    return [suite.study, *flags({**workload.changes, **suite.changes})]


def flags(changes: Mapping[str, Any]) -> list[str]:
    """Settings as the command line's flags: {"shots": 10, "target_classes": (0, 1)} -> --shots 10
    --target-classes 0,1."""
    argv = []
    for key, value in changes.items():
        text = "all" if value is None else ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
        argv += [FLAGS.get(key, f"--{key}"), text]
    return argv
