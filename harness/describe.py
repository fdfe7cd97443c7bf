"""`python -m harness.study --describe`: what a study file can name, read from the registries themselves, so the
reference cannot drift from the code: optimizers and their params, strategies, models and their stages,
datasets, the comparison kinds, and every `TrialConfig` field with its default; and, for a study named with it,
that study's model, stages, arms and comparisons (`describe_study`)."""

from __future__ import annotations

import dataclasses
import inspect
import re

from harness import analysis_plan as plan
from harness.spec import Arm, StudySpec, TrialConfig


def _first_line(obj: object) -> str:
    return (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")


def stage_names(name: str) -> list[str]:
    """A registry model's stages, from its structure alone (built on the meta device: no weights, no memory)."""
    import torch

    from harness.learn.models import MODELS

    with torch.device("meta"):
        net = MODELS[name].build()
    return [stage for stage, _ in MODELS[name].stages(net)]


STRATEGY_NOTES = {  # tests/test_study_cli.py checks these keys are harness.learn.models.STRATEGIES
    "linear_probe": "only the new head trains",
    "freeze_k": "the first freeze_k stages frozen, the rest fine-tune (Yosinski et al. 2014)",
    "full": "every layer fine-tunes",
    "gradual": "one more stage unfreezes each epoch, from the top (ULMFiT)",
    "lp_ft": "lp_epochs of linear probe, then full fine-tuning (Kumar et al. 2022)",
}


def field_notes() -> dict[str, str]:
    """TrialConfig's fields and the comment beside each in harness/spec.py."""
    source = inspect.getsource(TrialConfig)
    return {m[1]: m[2].strip() for m in re.finditer(r"^    (\w+): [^#\n]*?(?:#\s*(.*))?$", source, re.MULTILINE)
            if m[1] in {f.name for f in dataclasses.fields(TrialConfig)} and m[2]}


def signature(cls: type) -> str:
    """A dataclass's constructor as a study file calls it: required fields bare, the rest with their defaults."""
    parts = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in ("source", "file", "changes") and cls.__name__ in ("StudySpec", "SuiteSpec"):
            continue
        if dataclasses.is_dataclass(f.default):  # a TrialConfig(): its fields are listed on their own
            parts.append(f"{f.name}={type(f.default).__name__}()")
        elif f.default is not dataclasses.MISSING:
            parts.append(f"{f.name}={f.default!r}")
        elif f.default_factory is not dataclasses.MISSING:
            parts.append(f"{f.name}={f.default_factory()!r}")
        else:
            parts.append(f.name)
    return f"{cls.__name__}({', '.join(parts)})"


def constructors() -> list[str]:
    """Every public constructor a study or suite file (or a notebook, `from harness import ...`) builds."""
    from harness import spec
    from harness.suite_spec import SuiteSpec, Workload

    classes = (spec.StudySpec, spec.Arm, SuiteSpec, Workload, plan.Difference, plan.NonInferior, plan.Equivalent,
               plan.Interaction, plan.Trend)
    lines = ["constructors (from harness import ...; a suite file's SUITE = SuiteSpec(...)):"]
    for cls in classes:
        lines.append(f"  {signature(cls)}")
        lines.append(f"      {_first_line(cls)}")
    from harness.learn.register import register_model

    lines.append(f"  register_model{inspect.signature(register_model)}".replace("'", ""))
    lines.append(f"      {_first_line(register_model)}")
    lines.append("  TrialConfig(...): its fields below")
    return lines


def describe() -> str:
    from harness.learn.datasets import DATASETS
    from harness.learn.models import MODELS, STRATEGIES
    from harness.learn.optim import OPTIMIZERS
    from harness.learn.train import LR_SCHEDULES
    from harness.run.slots import SAMPLERS

    lines = ["optimizers (Arm(name, OPTIMIZER, ...); their params go in optimizer_params):"]
    lines += [f"  {name:10s} {spec.cls.__name__}; params: {', '.join(spec.params) or '(none)'}"
              for name, spec in OPTIMIZERS.items()]
    lines += ["", "strategies (Arm(name, optimizer, STRATEGY)):"]
    lines += [f"  {name:13s}{STRATEGY_NOTES.get(name, '')}" for name in STRATEGIES]
    lines += ["", "models (TrialConfig.model; stages count from the input side, for freeze_k and transfer_stages):"]
    for name, spec in MODELS.items():
        stages = stage_names(name)
        lines.append(f"  {name:10s} {len(stages)} stages: {', '.join(stages)}; {spec.input_size} px, "
                     f"{spec.in_channels} channel{'s' * (spec.in_channels > 1)}")
    lines.append("  (or any torchvision classification model by name, or timm's as timm:NAME with pip install timm:"
                 " stages derived from its structure; ImageNet weights through timm's hub download, or a local"
                 " .pth/.safetensors file as weights)")
    lines += ["", "datasets (TrialConfig.dataset, --dataset):"]
    lines += [f"  {name:16s} {spec.num_classes} classes{'' if spec.download is None else ', downloads'}"
              for name, spec in DATASETS.items()]
    lines.append("  folder:PATH      PATH/<class>/*.jpg, or PATH/train/<class>/ + PATH/val/<class>/")
    lines += ["", f"lr schedules (TrialConfig.lr_schedule): {', '.join(LR_SCHEDULES)}",
              f"samplers (StudySpec.sampler): {', '.join(SAMPLERS)}", "",
              "comparisons (StudySpec.plan, harness.analysis_plan):"]
    for kind in (plan.Difference, plan.NonInferior, plan.Equivalent, plan.Interaction, plan.Trend):
        lines.append(f"  {kind.__name__:12s} {kind.kind}: {_first_line(kind)}")
    lines += ["", *constructors()]
    lines += ["", "TrialConfig fields (Arm.fixed, TrialConfig(...) as a study's base, or a search space's return):"]
    notes = field_notes()
    for f in dataclasses.fields(TrialConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        note = f"  ({notes[f.name]})" if f.name in notes else ""
        lines.append(f"  {f.name:18s} default {default!r}{note}")
    return "\n".join(lines)


def describe_study(spec: StudySpec) -> str:
    """One study as it would run (a variant's settings applied): its model and stages, its arms and its declared
    comparisons; nothing is run or written."""
    from harness.learn.models import REGISTERED, stage_names

    base = spec.base
    stages = stage_names(base.model)
    own = " (registered with harness.register_model)" if base.model in REGISTERED else ""
    lines = [f"{spec.name}: {spec.question}", "",
             f"model {base.model}{own}, weights {base.weights}: {len(stages)} stages, {', '.join(stages)}",
             f"data {base.dataset}; {base.epochs} epochs a run", "",
             (f"arms ({len(spec.arms)}; {spec.n_trials} trials each, in {spec.searches} search"
              f"{'es' * (spec.searches > 1)}; {spec.seeds} verdict seeds, up to {spec.seeds_cap}):")]
    for arm in spec.arms:
        fixed = ", ".join(f"{k}={v!r}" for k, v in arm.fixed.items())
        lines.append(f"  {arm.name:16s} {arm.optimizer}, {arm.strategy}" + (f"; {fixed}" if fixed else "")
                     + f"; searched: {_searched(spec, arm) or 'nothing'}")
    lines += ["", "comparisons (the declared plan):"]
    lines += [f"  {c.kind:16s} {c.label}" + (f", margin {c.margin:g}" if getattr(c, "margin", None) else "")
              for c in spec.family]
    return "\n".join(lines)


def _searched(spec: StudySpec, arm: Arm) -> str:
    """An arm's searched parameters and their ranges, from the dry run's low and high corners of its space."""
    from harness.run.dryrun import sample_configs

    corners = {label: params for label, params, _ in sample_configs(spec, arm)}
    low, high = corners["the low corner"], corners["the high corner"]
    return ", ".join(f"{name} {_value(low.get(name))}..{_value(high.get(name))}" for name in {**low, **high})


def _value(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
