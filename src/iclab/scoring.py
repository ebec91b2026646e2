"""Teacher-forced scoring and greedy decoding of ICL examples through an ONNX runtime.

`correct` is read from one teacher-forced pass: every gold answer token must be the argmax at
its position. That is exactly the condition under which greedy decoding emits the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from iclab.models import HeadLayout
from iclab.runtime import Runtime, length_sorted_batches
from iclab.tasks import Example


class TokenizationError(ValueError):
    """The prompt's tokens are not a prefix of the prompt+target tokens."""


@dataclass(frozen=True)
class Encoded:
    prompt_ids: list[int]
    target_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        """What the graph reads: the prompt and every answer token but the last."""
        return self.prompt_ids + self.target_ids[:-1]


def encode(tokenizer, prompt: str, target: str) -> Encoded:
    """Split `prompt + target` into prompt tokens and answer tokens, tokenised jointly."""
    prompt_ids = tokenizer(prompt).input_ids
    full_ids = tokenizer(prompt + target).input_ids
    if full_ids[: len(prompt_ids)] != prompt_ids or len(full_ids) == len(prompt_ids):
        raise TokenizationError(
            f"prompt tokens are not a prefix of prompt+target tokens for target {target!r}")
    return Encoded(prompt_ids, full_ids[len(prompt_ids):])


def batch_feeds(sequences: Sequence[list[int]], target_pos: Sequence[list[int]], pad_id: int,
                head_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Right-padded `input_ids`, `attention_mask`, `target_pos` (padded by repetition) + mask."""
    length = max(len(s) for s in sequences)
    k = max(len(p) for p in target_pos)
    input_ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
    positions = np.zeros((len(sequences), k), dtype=np.int64)
    for row, (seq, pos) in enumerate(zip(sequences, target_pos)):
        input_ids[row, : len(seq)] = seq
        attention_mask[row, : len(seq)] = 1
        positions[row] = list(pos) + [pos[-1]] * (k - len(pos))
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "head_mask": head_mask.astype(np.float32), "target_pos": positions}


def full_head_mask(rows: int, layout: HeadLayout) -> np.ndarray:
    return np.ones((rows, layout.n_layers, layout.n_heads), dtype=np.float32)


def teacher_forced(runtime: Runtime, encoded: Sequence[Encoded], layout: HeadLayout,
                   pad_id: int, token_budget: int, max_batch: int,
                   progress: bool = True) -> pd.DataFrame:
    """Per example: `correct`, `gold_logprob` (summed), `first_token_rank` (1 = top), argmax ids."""
    results: dict[int, dict] = {}
    lengths = [len(e.input_ids) for e in encoded]
    batches = list(length_sorted_batches(lengths, token_budget, max_batch))
    for rows in tqdm(batches, desc="teacher-forced", disable=not progress, mininterval=5):
        chunk = [encoded[i] for i in rows]
        positions = [list(range(len(e.prompt_ids) - 1, len(e.input_ids))) for e in chunk]
        feeds = batch_feeds([e.input_ids for e in chunk], positions, pad_id,
                            full_head_mask(len(chunk), layout))
        logprobs = runtime.run(feeds)  # [B, K, V]
        for b, (i, e) in enumerate(zip(rows, chunk)):
            k = len(e.target_ids)
            gold = np.asarray(e.target_ids)
            lp = logprobs[b, :k]
            gold_lp = lp[np.arange(k), gold]
            argmax = lp.argmax(axis=-1)
            results[int(i)] = {
                "correct": bool((argmax == gold).all()),
                "gold_logprob": float(gold_lp.sum()),
                "first_token_rank": int((lp[0] > gold_lp[0]).sum()) + 1,
                "argmax_ids": argmax.tolist(),
            }
    return pd.DataFrame([results[i] for i in range(len(encoded))])


def greedy_decode(runtime: Runtime, tokenizer, prompts: Sequence[list[int]], layout: HeadLayout,
                  max_new_tokens: int | Sequence[int], token_budget: int, max_batch: int,
                  stop: str = "\n", prefixes: Sequence[list[int]] | None = None,
                  progress: bool = False) -> list[str]:
    """Greedy continuations (no KV cache: a full pass per token), cut at the first `stop`.

    `max_new_tokens` is one limit for all prompts or one per prompt. `prefixes` are tokens
    already known to be greedy's first choices (from a teacher-forced pass); decoding resumes
    after them, which saves one full pass per known token.
    """
    pad_id = _pad_id(tokenizer)
    limits = ([int(max_new_tokens)] * len(prompts) if isinstance(max_new_tokens, int)
              else [int(n) for n in max_new_tokens])
    generated = [list(p) for p in prefixes] if prefixes else [[] for _ in prompts]

    def unfinished(i: int) -> bool:
        return stop not in tokenizer.decode(generated[i]) and len(generated[i]) < limits[i]

    active = [i for i in range(len(prompts)) if unfinished(i)]
    steps = tqdm(total=max(limits, default=0), desc="greedy decode", mininterval=5,
                 disable=not progress)
    while active:
        steps.update(1)
        lengths = [len(prompts[i]) + len(generated[i]) for i in active]
        still_active = []
        for rows in length_sorted_batches(lengths, token_budget, max_batch):
            ids = [active[r] for r in rows]
            sequences = [list(prompts[i]) + generated[i] for i in ids]
            feeds = batch_feeds(sequences, [[len(s) - 1] for s in sequences], pad_id,
                                full_head_mask(len(ids), layout))
            next_ids = runtime.run(feeds)[:, 0].argmax(axis=-1)
            for i, token in zip(ids, next_ids.tolist()):
                generated[i].append(token)
                if unfinished(i):
                    still_active.append(i)
        active = sorted(still_active)
    steps.close()
    return [tokenizer.decode(g).split(stop)[0] for g in generated]


def _pad_id(tokenizer) -> int:
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if token_id is not None:
            return int(token_id)
    return 0


def _greedy_prefix(gold: list[int], argmax: list[int]) -> list[int]:
    """Greedy's first tokens, known from teacher forcing: gold up to the first miss, then the miss."""
    for j, (g, a) in enumerate(zip(gold, argmax)):
        if g != a:
            return list(gold[:j]) + [a]
    return list(gold)


def score_examples(runtime: Runtime, tokenizer, examples: Sequence[Example], layout: HeadLayout,
                   token_budget: int, max_batch: int, extra_tokens: int = 4,
                   progress: bool = True) -> pd.DataFrame:
    """The samples log: one row per example with prompt, target, prediction and metrics.

    `prediction` is the greedy answer (decoded up to the first newline). For correct rows it is
    the target; wrong rows are really decoded, up to len(target tokens) + `extra_tokens` tokens.
    """
    encoded = [encode(tokenizer, ex.prompt, ex.target) for ex in examples]
    scored = teacher_forced(runtime, encoded, layout, _pad_id(tokenizer), token_budget, max_batch,
                            progress)
    wrong = [i for i in range(len(examples)) if not scored.at[i, "correct"]]
    predictions = [ex.target.strip() for ex in examples]
    if wrong:
        max_new = [len(encoded[i].target_ids) + extra_tokens for i in wrong]
        known = [_greedy_prefix(encoded[i].target_ids, scored.at[i, "argmax_ids"]) for i in wrong]
        decoded = greedy_decode(runtime, tokenizer, [encoded[i].prompt_ids for i in wrong], layout,
                                max_new, token_budget, max_batch, prefixes=known,
                                progress=progress)
        for i, text in zip(wrong, decoded):
            predictions[i] = text.strip()
    return pd.DataFrame({
        "task": [ex.task for ex in examples],
        "item": [ex.item for ex in examples],
        "shots": [ex.shots for ex in examples],
        "seed": [ex.seed for ex in examples],
        "prompt": [ex.prompt for ex in examples],
        "target": [ex.target for ex in examples],
        "prediction": predictions,
        "correct": scored["correct"].astype(bool),
        "gold_logprob": scored["gold_logprob"],
        "first_token_rank": scored["first_token_rank"],
        "n_prompt_tokens": [len(e.prompt_ids) for e in encoded],
        "n_target_tokens": [len(e.target_ids) for e in encoded],
        "provider": runtime.provider,
    })
