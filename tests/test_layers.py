"""The package's layers, from its import graph: imports run down only, there is no cycle, the training code
imports neither Optuna nor MLflow, nothing imports a command line, and no module outgrows a few hundred
lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
LAYERS = {  # lowest first; a module may import its own layer and those below
    "harness.spec": 0, "harness.study_file": 0,
    "harness.suite_spec": 0, "harness.analysis_plan": 0, "harness.naming": 0, "harness.schema": 0,
    "harness.stores": 0, "harness.browse": 0, "harness.internals": 0,
    "harness.learn": 1, "harness.inference": 1, "harness.ledger": 1.5, "harness.run": 2, "harness.analysis": 3,
    "harness.reporting": 4,
    "harness.cli": 5, "harness.api": 5, "harness.study": 5, "harness.report": 5, "harness.bench": 5,
    "harness.describe": 5,
}
CLIS = ("harness.cli", "harness.study", "harness.report", "harness.bench.__main__")
MAX_LINES = 360


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, function-local imports included (they hide cycles otherwise)."""
    found = set()
    tree = ast.parse(path.read_text())
    hints = {id(n) for block in ast.walk(tree)  # type hints only: never run
             if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from harness.run import queue`
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def layer(name: str) -> int:
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len, default=None)
    assert prefix is not None, f"{name} belongs to no layer; add it to LAYERS"
    return LAYERS[prefix]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_down_the_layers(name):
    up = sorted(m for m in GRAPH[name] if layer(m) > layer(name))
    assert not up, f"{name} (layer {layer(name)}) imports a higher layer: {up}"


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(GRAPH[name]):
            assert state.get(other) != 1, f"import cycle: {' -> '.join([*path, name, other])}"
            if other not in state:
                visit(other, [*path, name])
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [])


def test_the_training_code_and_the_spec_import_neither_optuna_nor_mlflow():
    for name, path in MODULES.items():
        if layer(name) <= 1 and name not in ("harness.stores", "harness.internals"):
            heavy = sorted(m for m in imports(path) if m.split(".")[0] in ("optuna", "mlflow"))
            assert not heavy, f"{name} imports {heavy}"


def test_the_report_reads_results_through_the_ledger_never_the_worker():
    for name, path in MODULES.items():
        if name.startswith(("harness.analysis", "harness.reporting")):  # type hints included
            imported = {n.module for n in ast.walk(ast.parse(path.read_text()))
                        if isinstance(n, ast.ImportFrom) and n.module}
            imported |= {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import)
                         for a in n.names}
            worker = sorted(m for m in imported if m.startswith("harness.run"))
            assert not worker, f"{name} imports the worker {worker}: read results through harness.ledger"


def test_only_the_log_reader_knows_mlflow_column_names():
    for name, path in MODULES.items():
        if name.startswith(("harness.analysis", "harness.reporting")) and name != "harness.analysis.mlflow_log":
            assert '"tags.' not in path.read_text(), f"{name} reads MLflow tags by column name"


FRONT_ENDS = {"harness.api": {"harness.study"}}  # the Python API runs a study through the command's checks and worker


def test_nothing_imports_a_command_line():
    for name, imported in GRAPH.items():
        clis = sorted(m for m in imported if m in CLIS and m != "harness.cli" and m not in FRONT_ENDS.get(name, ()))
        assert not clis, f"{name} imports the command line {clis}"


def test_no_module_outgrows_a_few_hundred_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_retry_or_divergence_decision_reads_message_text():
    for name, path in MODULES.items():
        text = path.read_text()
        for phrase in ('startswith("diverged', 'startswith(("interrupted', 'startswith("stale', "RETRY_REASONS"):
            assert phrase not in text, f"{name} decides on message text: {phrase}"
