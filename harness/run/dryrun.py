"""A dry run of every arm's search space before anything is written.

Each arm's space is sampled on an in-memory Optuna study (random points, then the low and the high corner of
every parameter seen), and every resulting `TrialConfig` is validated against the registries and the model's
stages. A reversed range, an unknown strategy, schedule or optimizer param, a freeze depth beyond the model,
or `lp_ft` without linear-probe epochs then fails in seconds, naming the arm and the parameter, instead of
mid-study. Nothing is trained and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from harness.learn.checks import problems
from harness.spec import VARIANCE_SOURCES, Arm, StudySpec, TrialConfig

RANDOM_POINTS = 16  # enough to reach every branch of a conditional space with a few categoricals


class _Naming:
    """An optuna.Trial that remembers which parameter it is suggesting, so that an error can name it."""

    def __init__(self, trial: optuna.Trial):
        self._trial = trial
        self.current: str | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
            self.current = param
            return attr(param, *args, **kwargs)

        return suggest


def _corner(distributions: dict[str, BaseDistribution], high: bool) -> dict[str, Any]:
    """Every parameter at its low (or high) end; a categorical at its first (or last) choice."""
    corner = {}
    for name, d in distributions.items():
        if isinstance(d, CategoricalDistribution):
            corner[name] = d.choices[-1 if high else 0]
        else:
            corner[name] = d.high if high else d.low
    return corner


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" per arm
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def sample_configs(spec: StudySpec, arm: Arm) -> list[tuple[str, dict[str, Any], TrialConfig]]:
    """(which point, its params, its config) for random points and both corners of `arm`'s space.

    Raises ValueError naming the arm and the parameter when the space itself fails (a reversed range, a
    log range through zero, a field TrialConfig does not have)."""
    with _quiet_optuna():
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    out: list[tuple[str, dict[str, Any], TrialConfig]] = []

    def draw(label: str) -> None:
        trial = _Naming(study.ask())
        try:
            overrides = spec.search_space(trial, arm)
        except Exception as error:  # any mistake in the user's space: name where it happened
            where = f"parameter {trial.current!r}" if trial.current else "its search space"
            raise ValueError(f"arm {arm.name}: {where} fails: {error}") from error
        fixed_by_arm = sorted(set(overrides) & {"arm", "optimizer", "strategy"})
        if fixed_by_arm:
            raise ValueError(f"arm {arm.name}: the search space sets {', '.join(fixed_by_arm)}, which the arm fixes; "
                             "make one arm per value instead")
        try:
            cfg = arm.config(spec.base, **dict(overrides))
        except TypeError as error:
            fields = ", ".join(TrialConfig.__dataclass_fields__)
            raise ValueError(f"arm {arm.name}: the search space returns {sorted(overrides)}, "
                             f"not all TrialConfig fields ({fields})") from error
        out.append((label, dict(trial.params), cfg))
        study.tell(trial._trial, 0.0)

    for i in range(RANDOM_POINTS):
        draw(f"random point {i}")
    seen: dict[str, BaseDistribution] = {}
    for t in study.trials:
        seen.update(t.distributions)
    for label, high in (("the low corner", False), ("the high corner", True)):
        study.enqueue_trial(_corner(seen, high))
        draw(label)
    return out


def _check_spec_fields(spec: StudySpec) -> None:
    unknown = sorted(set(spec.vary) - set(VARIANCE_SOURCES))
    if unknown or "seed" not in spec.vary:
        raise ValueError(f"vary must include 'seed' and name only {', '.join(VARIANCE_SOURCES)}; not {spec.vary}")
    if not 0 <= spec.chance_margin < 1:
        raise ValueError(f"chance_margin must be in [0, 1), not {spec.chance_margin}")
    # the plan's arms, kinds and margins are checked when the StudySpec is made (harness.analysis_plan.check_plan)


def check_search_spaces(spec: StudySpec) -> None:
    """Sample every arm's search space (random points and corners) and validate each config; ValueError
    naming the arm and the parameter at the first mistake. Takes seconds and writes nothing."""
    _check_spec_fields(spec)
    for arm in spec.arms:
        for label, params, cfg in sample_configs(spec, arm):
            for field, problem in problems(cfg):
                searched = f" (searched {field} = {params[field]!r})" if field in params else ""
                shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
                raise ValueError(f"arm {arm.name}, parameter {field}{searched}: {problem}; "
                                 f"at {label} of the search space ({shown or 'nothing searched'})")
