"""House rules kept by CI: `ruff check` passes on the package, its tests and its studies, under pyproject.toml's
[tool.ruff] settings (the line length among them)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_finds_nothing():
    pytest.importorskip("ruff", reason="ruff is not installed: pip install -e '.[dev]'")
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
               "harness", "tests", "studies"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"`ruff check harness tests studies` found:\n{result.stdout}{result.stderr}"
