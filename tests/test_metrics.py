"""Interval functions against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from iclab.metrics import accuracy_table, wilson_interval


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(8, 10), (0, 12), (6705, 6720), (6720, 6720), (1, 3)])
def test_wilson_matches_formula(k, n):
    low, high = wilson_interval(k, n)
    want_low, want_high = wilson_by_hand(k, n)
    assert low == pytest.approx(max(0.0, want_low), abs=1e-9)
    assert high == pytest.approx(min(1.0, want_high), abs=1e-9)


def test_accuracy_table_groups_and_counts():
    samples = pd.DataFrame({
        "model": ["m"] * 5, "task": ["copy"] * 5, "shots": [1, 1, 1, 5, 5],
        "correct": [True, False, True, True, True], "gold_logprob": [-1.0, -3.0, -2.0, -0.5, -0.5],
        "provider": ["CPUExecutionProvider"] * 5,
    })
    table = accuracy_table(samples, ["model", "task", "shots"]).set_index("shots")
    assert table.loc[1, "n"] == 3 and table.loc[1, "n_correct"] == 2
    assert table.loc[1, "accuracy"] == pytest.approx(2 / 3)
    assert table.loc[1, "mean_gold_logprob"] == pytest.approx(-2.0)
    assert table.loc[5, "ci_high"] == pytest.approx(1.0)
    assert table.loc[1, "ci_low"] < 2 / 3 < table.loc[1, "ci_high"]
