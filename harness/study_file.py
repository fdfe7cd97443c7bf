"""Reading a study file: `studies/<name>.py` defines `STUDY = StudySpec(...)` (or a suite's `SUITE`); errors name
the file and the line, never a traceback."""

from __future__ import annotations

import dataclasses
import traceback
import types
from pathlib import Path

from harness.spec import STUDIES_DIR, StudySpec


def _failing_package(frames: traceback.StackSummary, study: str) -> str | None:
    """The installed package whose own code raised (the last frame, in site-packages), if one did."""
    last = frames[-1].filename if frames else ""
    if last == study or "site-packages" not in last:
        return None
    return Path(last.split("site-packages", 1)[1]).parts[1]


def list_studies(directory: Path = STUDIES_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.py") if not p.stem.startswith("_"))


def load_study(name: str, directory: Path = STUDIES_DIR, suites: bool = False) -> StudySpec:
    """Import `studies/<name>.py` and return its `STUDY`, named after the file (with `suites`, its `SUITE` if it
    defines one: a `harness.suite_spec.SuiteSpec`)."""
    path = directory / f"{name}.py"
    if not path.is_file():
        choices = ", ".join(list_studies(directory)) or "(none)"
        raise ValueError(f"unknown study {name!r}; studies in {directory}: {choices}")
    return study_from_source(name, path.read_text(), path, suites)


def study_from_source(name: str, source: str, path: Path | str, suites: bool = False) -> StudySpec:
    """The `STUDY` a study file's text defines: what `load_study` reads, and what a report rebuilds from the
    copy of the file its runs recorded. Errors name the file and the line."""
    module = types.ModuleType(f"studies.{name}")
    module.__file__ = str(path)
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's own study file
    except SyntaxError as error:  # the file itself: its line, and the caret's text
        raise ValueError(f"{path}, line {error.lineno}: {error.msg}: {(error.text or '').strip()!r}; "
                         "fix the study file") from None
    except Exception as error:  # noqa: BLE001 - any error a study file raises at import is the file's to fix
        frames = traceback.extract_tb(error.__traceback__)
        lines = [f.lineno for f in frames if f.filename == str(path)]
        where = f", line {lines[-1]}" if lines else ""
        package = _failing_package(frames, str(path))
        if package and isinstance(error, (ImportError, RuntimeError, OSError)):
            raise ValueError(  # a broken install (torch and torchvision that do not match) is not the file's fault
                f"{path}{where}: the installed package {package!r} failed while loading ({type(error).__name__}: "
                f"{error}); the study file is not at fault. Repair the installation (`pip check`; torch and "
                "torchvision must be a matching pair, e.g. `pip install torch==2.14.1 torchvision==0.29.1`)") from None
        raise ValueError(f"{path}{where}: {type(error).__name__}: {error}; fix the study file") from None
    study = getattr(module, "SUITE", None) if suites else None
    study = study if study is not None else getattr(module, "STUDY", None)
    if not isinstance(study, StudySpec) and not (suites and hasattr(study, "workloads")):
        raise TypeError(f"{path} must define STUDY = StudySpec(...)" + (" or SUITE = SuiteSpec(...)" * suites))
    if study.name and study.name != name:
        raise ValueError(f"{path} sets name={study.name!r}, but a study is named after its file ({name!r}); "
                         "drop name= or rename the file")
    return dataclasses.replace(study, name=name, source=source, file=name)


def notebook_source(spec: StudySpec) -> str | None:
    """A study file's text for a `StudySpec` built in a notebook or a script, so that its runs record it as a study
    file's are recorded (and `python -m harness.report` rebuilds its report from the stores alone): the search
    space's source with the imports it uses, and the spec's values. None where that text would not rebuild the
    same study (a search space whose source cannot be read, or that uses values of the notebook's own)."""
    import inspect
    import textwrap

    space, lines, imports = spec.search_space, [], {"from harness.spec import StudySpec"}
    if space is not None:
        try:
            code = textwrap.dedent(inspect.getsource(space))
        except (OSError, TypeError):
            return None
        for name in _global_names(space.__code__):
            value = space.__globals__.get(name)
            if isinstance(value, types.ModuleType):
                imports.add(f"import {value.__name__} as {name}")
            elif getattr(value, "__module__", "__main__") not in ("__main__", None) and \
                    getattr(value, "__qualname__", None) == name:
                imports.add(f"from {value.__module__} import {name}")
            elif value is not None:
                return None  # the notebook's own value: a file would not have it
        lines.append(code)
    values = []
    for f in dataclasses.fields(spec):
        if f.name in ("name", "source", "file", "changes", "search_space") or not f.init:
            continue
        value = getattr(spec, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING or value != default:
            values.append(f"    {f.name}={value!r},")
            imports.update(f"from {type(v).__module__} import {type(v).__name__}"
                           for v in _dataclass_values(value))
    values.append(f"    search_space={space.__name__ if space is not None else None},")
    source = "\n".join(["# a study built in a notebook or a script, as harness.run_study recorded it",
                        *sorted(imports), "", *lines, "", "STUDY = StudySpec(", *values, ")", ""])
    try:
        rebuilt = study_from_source(spec.name, source, "<notebook>")
    except (ValueError, TypeError):
        return None
    same = all(getattr(rebuilt, f.name) == getattr(spec, f.name) for f in dataclasses.fields(spec)
               if f.compare and f.name != "search_space")
    return source if same and (space is None) == (rebuilt.search_space is None) else None


def _global_names(code: types.CodeType) -> set[str]:
    """The global names a function's code (and the functions nested in it) may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _dataclass_values(value: object) -> list[object]:
    """The dataclass instances in a field's value (an Arm, a TrialConfig, a plan's comparisons)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [value, *(v for f in dataclasses.fields(value) for v in _dataclass_values(getattr(value, f.name)))]
    if isinstance(value, tuple | list):
        return [v for item in value for v in _dataclass_values(item)]
    return []
