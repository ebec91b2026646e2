"""Aggregate metrics with intervals: Wilson for accuracies, paired bootstrap for differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap

BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's implementation)."""
    if trials == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence,
                                                             method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95,
                         seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """mean(a) - mean(b) for paired samples, with a seeded percentile bootstrap interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or np.all(a - b == (a - b)[0]):
        return diff, diff, diff  # no spread to resample
    result = bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True,
                       vectorized=True, confidence_level=confidence, method="percentile",
                       n_resamples=BOOTSTRAP_RESAMPLES, rng=np.random.default_rng(seed))
    return diff, float(result.confidence_interval.low), float(result.confidence_interval.high)


def accuracy_table(samples: pd.DataFrame, keys: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """One row per `keys` group: n, accuracy with a Wilson interval, mean gold log-prob; for
    tasks with choices also choice accuracy (Wilson) and the mean contrastive loss."""
    rows = []
    for group, frame in samples.groupby(keys, sort=True, dropna=False):
        n, k = len(frame), int(frame["correct"].sum())
        low, high = wilson_interval(k, n, confidence)
        row = {**dict(zip(keys, group if isinstance(group, tuple) else (group,))),
               "n": n, "n_seeds": frame["seed"].nunique() if "seed" in frame else 1,
               "n_correct": k, "accuracy": k / n, "ci_low": low, "ci_high": high,
               "mean_gold_logprob": float(frame["gold_logprob"].mean())}
        if "choice_correct" in frame and frame["choice_correct"].notna().any():
            kc = int(frame["choice_correct"].sum())
            c_low, c_high = wilson_interval(kc, n, confidence)
            row.update(choice_accuracy=kc / n, choice_ci_low=c_low, choice_ci_high=c_high,
                       mean_contrastive_loss=float(frame["contrastive_loss"].mean()))
        row["provider"] = ",".join(sorted(frame["provider"].unique()))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(samples: pd.DataFrame) -> pd.DataFrame:
    """Accuracy differences with paired bootstrap intervals (pairs: same seed and test item).

    - `shots`: each shot count against the smallest one, per model, task and variant;
    - `variant`: each variant against the first one, per model, task and shot count.
    """
    rows = []
    key = ["seed", "item"]

    def compare(kind, frame_a, frame_b, label_a, label_b, base):
        paired = frame_a[key + ["correct"]].merge(frame_b[key + ["correct"]], on=key,
                                                  suffixes=("_a", "_b"))
        if paired.empty:
            return
        diff, low, high = bootstrap_difference(paired["correct_a"], paired["correct_b"])
        rows.append({**base, "comparison": kind, "a": label_a, "b": label_b, "n_pairs": len(paired),
                     "difference": diff, "ci_low": low, "ci_high": high})

    for (model, task, variant), frame in samples.groupby(["model", "task", "variant"], sort=True):
        shots = sorted(frame["shots"].unique())
        for k in shots[1:]:
            compare("shots", frame[frame["shots"] == k], frame[frame["shots"] == shots[0]],
                    str(k), str(shots[0]), {"model": model, "task": task, "variant": variant,
                                            "shots": k})
    for (model, task, k), frame in samples.groupby(["model", "task", "shots"], sort=True):
        variants = list(dict.fromkeys(frame["variant"]))
        for variant in variants[1:]:
            compare("variant", frame[frame["variant"] == variant],
                    frame[frame["variant"] == variants[0]], variant, variants[0],
                    {"model": model, "task": task, "variant": variant, "shots": k})
    return pd.DataFrame(rows)
