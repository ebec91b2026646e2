"""Aggregate metrics with intervals: Wilson for accuracies."""

from __future__ import annotations

import pandas as pd
from scipy.stats import binomtest


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's implementation)."""
    if trials == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence,
                                                             method="wilson")
    return float(ci.low), float(ci.high)


def accuracy_table(samples: pd.DataFrame, keys: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """One row per `keys` group: n, correct, accuracy, Wilson interval, mean gold log-prob."""
    rows = []
    for group, frame in samples.groupby(keys, sort=True, dropna=False):
        n, k = len(frame), int(frame["correct"].sum())
        low, high = wilson_interval(k, n, confidence)
        rows.append({**dict(zip(keys, group if isinstance(group, tuple) else (group,))),
                     "n": n, "n_correct": k, "accuracy": k / n, "ci_low": low, "ci_high": high,
                     "mean_gold_logprob": float(frame["gold_logprob"].mean()),
                     "provider": ",".join(sorted(frame["provider"].unique()))})
    return pd.DataFrame(rows)
