"""examples/notebook.ipynb runs top to bottom (its code cells in order, as a kernel would), and the Python API it
shows returns what it says: the answer, the comparisons and the runs, and the same answer read back."""

import ast
import json
from pathlib import Path

import pytest

import harness

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


@pytest.mark.slow
def test_the_example_notebook_runs_top_to_bottom_and_its_result_reads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    scope: dict = {}
    last = None
    for cell in cells:  # as a kernel runs a cell: every statement, and the value of a last bare expression
        tree = ast.parse("".join(cell["source"]))
        tail = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, str(NOTEBOOK), "exec"), scope)  # noqa: S102 - our own example
        last = eval(compile(ast.Expression(tail.value), str(NOTEBOOK), "eval"), scope) if tail else None
    result = scope["result"]
    assert last is True  # harness.load gave the same answer back
    assert result.answer and any("adam" in line and "sgd" in line for line in result.answer)
    assert list(result.comparisons["comparison"]) == ["adam - sgd"]
    verdict = result.runs[result.runs["verdict"]]
    assert set(verdict["arm"]) == {"adam", "sgd"} and len(verdict) == 6 and verdict["test_acc"].notna().all()
    assert result.report_path.is_file() and result.figure("test_acc").is_file()


def test_the_api_refuses_unknown_settings_and_a_spec_without_a_name_before_running(tmp_path):
    with pytest.raises(ValueError, match="unknown settings lr; a study may change n_trials"):
        harness.run_study("sgd_vs_adam", root=tmp_path, lr=0.1)
    spec = harness.StudySpec(question="?", arms=(harness.Arm("a", "sgd"),), search_space=None)
    with pytest.raises(ValueError, match="give the StudySpec a name"):
        harness.run_study(spec, root=tmp_path)
    assert list(tmp_path.iterdir()) == []
