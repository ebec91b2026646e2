"""Ablated examples per second: iclab's batched ONNX sweep vs the one-forward-per-head PyTorch loop.

Baseline (the head-pruning loop as the source article writes it): for each head, for each
example, one full PyTorch forward at batch size 1 with full-vocabulary logits at every
position, the head zeroed by a hook.
iclab: the same (head, example) pairs as rows of shared batches through the ONNX graph's
head_mask, log-probs at the answer positions only; with shared demonstrations (the default
sweep cell), the demonstration prefix runs once per ablation and its key/value cache serves
every item ("prefix cache"), measured beside the same batches without that reuse ("full
pass"). Same examples, same machine, one run.

    python benchmarks/ablation_sweep.py [--model-dir resources/models/smollm2-135m]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import iclab.scoring

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from iclab.ablation import layer_conditions, sweep  # noqa: E402
from iclab.heads import head_mask_applied  # noqa: E402
from iclab.models import head_layout, load_saved  # noqa: E402
from iclab.runtime import create_runtime  # noqa: E402
from iclab.scoring import encode  # noqa: E402
from iclab.tasks import build_examples  # noqa: E402


def per_head_loop(model, tokenizer, examples, conditions, layout) -> tuple[float, list[float]]:
    """The per-head loop (one forward per head and example); returns seconds and the gold
    log-probs (for a correctness check)."""
    gold = []
    start = time.perf_counter()
    for condition in conditions:
        mask = torch.from_numpy(condition.mask(layout))[None]
        for ex in examples:
            enc = encode(tokenizer, ex.prompt, ex.target)
            ids = torch.tensor([enc.prompt_ids + enc.target_ids])
            with torch.no_grad(), head_mask_applied(model, mask):
                logits = model(ids).logits  # [1, T, V]: every position, full vocabulary
            logprobs = torch.log_softmax(logits[0], -1)
            p = len(enc.prompt_ids)
            gold.append(float(sum(logprobs[p - 1 + j, t] for j, t in enumerate(enc.target_ids))))
    return time.perf_counter() - start, gold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default="resources/models/smollm2-135m")
    parser.add_argument("--onnx", default="resources/onnx/smollm2-135m/model.onnx")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2, help="layers whose heads are swept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--demonstrations", choices=["shared", "per_item"], default="shared")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tokenizer = load_saved(args.model_dir)
    layout = head_layout(model.config)
    examples = build_examples("copy", args.examples, args.shots, seed=0,
                              demonstrations=args.demonstrations)
    conditions = [c for layer in range(args.layers) for c in layer_conditions(layout, layer)]
    ablated = len(conditions) * len(examples)

    runtime = create_runtime(args.onnx, "auto", args.threads)

    def batched_sweep():
        start = time.perf_counter()
        frame = sweep(runtime, tokenizer, examples, conditions, layout, args.token_budget, 64,
                      progress=False)
        return time.perf_counter() - start, frame

    sweep(runtime, tokenizer, examples[:2], conditions[:2], layout, args.token_budget, 64,
          progress=False)  # warm-up
    cached_s, cached = batched_sweep()
    shared_prefix = iclab.scoring.MIN_SHARED_PREFIX
    iclab.scoring.MIN_SHARED_PREFIX = 10 ** 9  # the same batches, every prefix recomputed
    full_s, full = batched_sweep()
    iclab.scoring.MIN_SHARED_PREFIX = shared_prefix

    per_head_loop(model, tokenizer, examples[:1], conditions[:1], layout)  # warm-up
    loop_s, loop_gold = per_head_loop(model, tokenizer, examples, conditions, layout)

    def max_diff(frame) -> float:
        return float(np.abs(frame["gold_logprob"].to_numpy() - np.array(loop_gold)).max())

    result = {
        "model": str(args.model_dir), "provider": runtime.provider, "threads": args.threads,
        "examples": len(examples), "shots": args.shots, "demonstrations": args.demonstrations,
        "conditions": len(conditions), "ablated_examples": ablated,
        "prefix_cache_seconds": cached_s, "full_pass_seconds": full_s, "loop_seconds": loop_s,
        "prefix_cache_examples_per_s": ablated / cached_s,
        "full_pass_examples_per_s": ablated / full_s, "loop_examples_per_s": ablated / loop_s,
        "speedup": loop_s / cached_s, "speedup_full_pass": loop_s / full_s,
        "prefix_cache_gain": full_s / cached_s, "target_speedup": 10.0,
        "max_abs_gold_logprob_diff": max_diff(cached),
        "max_abs_gold_logprob_diff_full_pass": max_diff(full),
        "same_correct_cache_vs_full": bool((cached["correct"] == full["correct"]).all()),
    }
    path = save(f"ablation_sweep-{runtime.device}", result)
    print(f"prefix cache {ablated / cached_s:.1f} ex/s, full pass {ablated / full_s:.1f} ex/s, "
          f"loop {ablated / loop_s:.1f} ex/s: {loop_s / cached_s:.2f}x (full pass "
          f"{loop_s / full_s:.2f}x; target 10x), max |Δ gold log-prob| {max_diff(cached):.2e}"
          f" -> {path}")


if __name__ == "__main__":
    main()
