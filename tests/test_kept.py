"""Candidate weights kept from confirmation runs: the seed a logged model uses wins, whoever offers first."""

import torch

from harness.run import kept


def state(value: float) -> dict:
    return {"w": torch.full((2,), value)}


def test_the_best_seed_is_kept_and_a_tie_goes_to_the_lower_seed(tmp_path):
    kept.offer(tmp_path, "adam", 4, seed=3, value=0.90, state=state(3))
    kept.offer(tmp_path, "adam", 4, seed=1, value=0.80, state=state(1))  # worse: not kept
    assert kept.take(tmp_path, "adam", 4, seed=1) is None
    assert torch.equal(kept.take(tmp_path, "adam", 4, seed=3)["w"], state(3)["w"])
    kept.offer(tmp_path, "adam", 4, seed=2, value=0.90, state=state(2))  # a tie: the lower seed wins
    assert kept.take(tmp_path, "adam", 4, seed=3) is None
    assert torch.equal(kept.take(tmp_path, "adam", 4, seed=2)["w"], state(2)["w"])


def test_nothing_kept_means_none(tmp_path):
    assert kept.take(tmp_path, "sgd", 0, seed=1) is None
    kept.offer(tmp_path, "sgd", 0, seed=1, value=0.5, state=state(1))
    assert kept.take(tmp_path, "sgd", 1, seed=1) is None  # another trial
