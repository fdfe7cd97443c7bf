"""examples/notebook.ipynb runs top to bottom (its code cells in order, as a kernel would), and the Python API it
shows returns what it says: the answer, the comparisons and the runs, and the same answer read back."""

import ast
import json
import linecache
from pathlib import Path

import pytest

import harness
from harness.learn.spaces import lr_space
from harness.report import main as report_main

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


@pytest.mark.slow
def test_the_example_notebook_runs_top_to_bottom_and_its_result_reads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    scope: dict = {}
    last = None
    for i, cell in enumerate(cells):  # as a kernel runs a cell: every statement, the value of a last bare
        text = "".join(cell["source"])  # expression, and the cell's text where inspect finds it (IPython's way)
        name = f"<ipython-input-{i}>"
        linecache.cache[name] = (len(text), None, text.splitlines(keepends=True), name)
        tree = ast.parse(text)
        tail = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, name, "exec"), scope)  # noqa: S102 - our own example
        last = eval(compile(ast.Expression(tail.value), name, "eval"), scope) if tail else None
    result = scope["result"]
    assert last is True  # harness.load gave the same answer back
    assert result.answer and any("adam" in line and "sgd" in line for line in result.answer)
    assert list(result.comparisons["comparison"]) == ["adam - sgd"]
    verdict = result.runs[result.runs["verdict"]]
    assert set(verdict["arm"]) == {"adam", "sgd"} and len(verdict) == 6 and verdict["test_acc"].notna().all()
    assert result.report_path.is_file() and result.figure("test_acc").is_file()
    # recorded as a study file is: the report command rebuilds it from the stores, with no notebook at hand
    result.report_path.unlink()
    assert report_main(["notebook_demo", "--root", "mlruns", "--reports", str(result.folder.parent)]) == 0
    assert harness.load("notebook_demo", root="mlruns").answer == result.answer


def test_the_api_refuses_unknown_settings_and_a_spec_without_a_name_before_running(tmp_path):
    with pytest.raises(ValueError, match="unknown settings lr; a study may change n_trials"):
        harness.run_study("sgd_vs_adam", root=tmp_path, lr=0.1)
    spec = harness.StudySpec(question="?", arms=(harness.Arm("a", "sgd"),), search_space=None)
    with pytest.raises(ValueError, match="give the StudySpec a name"):
        harness.run_study(spec, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


LOW = 1e-4  # a value of the "notebook's" own: a recorded file would not have it


def _space_with_own_value(trial, arm):
    return {"lr": trial.suggest_float("lr", LOW, 1.0, log=True)}


def _space(trial, arm):
    return lr_space(trial, arm.optimizer)


def test_a_spec_built_in_code_is_recorded_as_a_study_file_that_rebuilds_it():
    from harness.study_file import notebook_source, study_from_source

    spec = harness.StudySpec(name="nb", question="?", arms=(harness.Arm("a", "sgd"), harness.Arm("b", "adam")),
                             search_space=_space, n_trials=3, plan=(harness.Difference("b", "a"),))
    rebuilt = study_from_source("nb", notebook_source(spec), "<recorded>")
    assert (rebuilt.arms, rebuilt.plan, rebuilt.base, rebuilt.n_trials) == (spec.arms, spec.plan, spec.base, 3)
    assert rebuilt.search_space.__name__ == "_space"
    own = harness.StudySpec(name="nb", question="?", arms=(harness.Arm("a", "sgd"),),
                            search_space=_space_with_own_value)
    assert notebook_source(own) is None  # not recorded, and run_study says so (harness.load(spec) still reads it)
