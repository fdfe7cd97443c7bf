"""The fast tier, `pytest -m "not slow"`: a parametrized check keeps one or a few cases there and runs every case in
CI (plain `pytest`), where `slow` selects nothing away."""

from __future__ import annotations

from collections.abc import Iterable

import pytest


def slow_except(values: Iterable, *fast) -> list:
    """`values` as parameters, each marked slow but those in `fast`.

    >>> [getattr(p, "marks", ()) != () for p in slow_except([3, 5, 10], 10)]
    [True, True, False]
    """
    return [value if value in fast else pytest.param(value, marks=pytest.mark.slow) for value in values]
