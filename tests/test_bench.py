"""harness.bench: the smoke plan runs every comparison end to end, prints one JSON object, writes its report."""

import json

from harness.bench import TARGETS, main


def test_the_smoke_bench_prints_every_figure_and_writes_its_report_outside_the_user_s_stores(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench" / "README.md"
    assert main(["--plan", "smoke", "--json", "--out", str(out), "--note", "A test."]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(TARGETS) <= set(figures)
    assert figures["default_study_seconds"] is None  # the smoke plan skips the study, its report, its load
    assert figures["report_seconds"] is None and figures["default_study_under_load_over_quiet"] is None
    for key in ("harness_over_bare", "harness_over_plain_optuna_mlflow", "cached_linear_probe_speedup"):
        assert figures[key] > 0
    assert figures["linear_probe_max_accuracy_difference"] < 1e-6  # the cache changes speed, not results
    assert [r["model"] for r in figures["images_per_second"]] == ["lenet5"]
    assert figures["runs"] == 4  # one trial per arm of sgd_vs_adam
    report = out.read_text()
    assert "| `harness_over_bare` |" in report and figures["machine"]["cpu"] in report and "A test." in report
    assert not (tmp_path / "mlruns").exists()


def test_the_gpu_check_says_when_there_is_no_gpu(capsys):
    import torch

    assert main(["--gpu"]) == 0
    line = json.loads(capsys.readouterr().out)
    if torch.cuda.is_available():
        assert set(line["harness_over_bare_bf16"]) == {"resnet18", "resnet50"}
    else:
        assert line["gpu"] is None and "no CUDA device" in line["note"]
