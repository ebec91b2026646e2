"""Ablated examples per second: iclab's batched ONNX sweep vs the seed's per-head PyTorch loop.

Baseline (seed 000 §3.1 as written): for each head, for each example, one full PyTorch forward at
batch size 1 with full-vocabulary logits at every position, the head zeroed by a hook.
iclab: the same (head, example) pairs as rows of shared batches through the ONNX graph's
head_mask, log-probs at the answer positions only. Same examples, same machine, one run.

    python benchmarks/ablation_sweep.py [--model-dir resources/models/smollm2-135m]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from iclab.ablation import layer_conditions, sweep  # noqa: E402
from iclab.heads import head_mask_applied  # noqa: E402
from iclab.models import head_layout, load_saved  # noqa: E402
from iclab.runtime import create_runtime  # noqa: E402
from iclab.scoring import encode  # noqa: E402
from iclab.tasks import build_examples  # noqa: E402


def per_head_loop(model, tokenizer, examples, conditions, layout) -> tuple[float, list[float]]:
    """The seed's method; returns seconds and the gold log-probs (for a correctness check)."""
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
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tokenizer = load_saved(args.model_dir)
    layout = head_layout(model.config)
    examples = build_examples("copy", args.examples, args.shots, seed=0)
    conditions = [c for layer in range(args.layers) for c in layer_conditions(layout, layer)]
    ablated = len(conditions) * len(examples)

    runtime = create_runtime(args.onnx, "auto", args.threads)
    sweep(runtime, tokenizer, examples[:1], conditions[:1], layout, args.token_budget, 64,
          progress=False)  # warm-up
    start = time.perf_counter()
    batched = sweep(runtime, tokenizer, examples, conditions, layout, args.token_budget, 64,
                    progress=False)
    batched_s = time.perf_counter() - start

    per_head_loop(model, tokenizer, examples[:1], conditions[:1], layout)  # warm-up
    loop_s, loop_gold = per_head_loop(model, tokenizer, examples, conditions, layout)

    max_diff = float(np.abs(batched["gold_logprob"].to_numpy() - np.array(loop_gold)).max())
    result = {
        "model": str(args.model_dir), "provider": runtime.provider, "threads": args.threads,
        "examples": len(examples), "shots": args.shots, "conditions": len(conditions),
        "ablated_examples": ablated,
        "batched_seconds": batched_s, "loop_seconds": loop_s,
        "batched_examples_per_s": ablated / batched_s, "loop_examples_per_s": ablated / loop_s,
        "speedup": loop_s / batched_s, "target_speedup": 10.0,
        "max_abs_gold_logprob_diff": max_diff,
    }
    path = save(f"ablation_sweep-{runtime.device}", result)
    print(f"batched {ablated / batched_s:.1f} ex/s, loop {ablated / loop_s:.1f} ex/s, "
          f"speedup {loop_s / batched_s:.2f}x (target 10x), max |Δ gold log-prob| {max_diff:.2e}"
          f" -> {path}")


if __name__ == "__main__":
    main()
