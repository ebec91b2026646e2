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
                   pad_id: int, token_budget: int, max_batch: int, progress: bool = True,
                   head_masks: np.ndarray | None = None) -> pd.DataFrame:
    """Per row: `correct`, `gold_logprob` (summed), `first_token_rank` (1 = top), argmax ids.

    `head_masks[row, layer, head]` (default all ones) lets rows of one batch carry different
    ablations of the same or different prompts.
    """
    results: dict[int, dict] = {}
    lengths = [len(e.input_ids) for e in encoded]
    batches = list(length_sorted_batches(lengths, token_budget, max_batch))
    for rows in tqdm(batches, desc="teacher-forced", disable=not progress, mininterval=5):
        chunk = [encoded[i] for i in rows]
        positions = [list(range(len(e.prompt_ids) - 1, len(e.input_ids))) for e in chunk]
        masks = (full_head_mask(len(chunk), layout) if head_masks is None
                 else head_masks[np.asarray(rows)])
        feeds = batch_feeds([e.input_ids for e in chunk], positions, pad_id, masks)
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
                  guesses: Sequence[list[int]] | None = None, progress: bool = False) -> list[str]:
    """Exact greedy continuations by Jacobi iteration, cut at the first `stop`.

    The graph has no KV cache, so instead of one full pass per new token each pass verifies a
    whole guessed continuation: predictions at every guessed position are read at once, the
    guess is accepted up to its first disagreement plus the model's token there (which is then
    greedy's, its prefix being confirmed), and later predictions become the next guess. The
    fixed point is exactly greedy decoding; every pass confirms at least one token.

    `prefixes` are tokens already known to be greedy's (from a teacher-forced pass); `guesses`
    optional first guesses of what follows them.
    """
    pad = pad_token_id(tokenizer)
    limits = ([int(max_new_tokens)] * len(prompts) if isinstance(max_new_tokens, int)
              else [int(n) for n in max_new_tokens])
    known = [list(p) for p in prefixes] if prefixes else [[] for _ in prompts]
    guess = [list(g) for g in guesses] if guesses else [[] for _ in prompts]

    def finished(i: int) -> bool:
        return stop in tokenizer.decode(known[i]) or len(known[i]) >= limits[i]

    active = [i for i in range(len(prompts)) if not finished(i)]
    passes = tqdm(desc="greedy decode (Jacobi passes)", mininterval=5, disable=not progress)
    while active:
        passes.update(1)
        for i in active:  # pad or cut each guess to the tokens still wanted
            remaining = limits[i] - len(known[i])
            guess[i] = (guess[i] + [pad] * remaining)[:remaining]
        sequences = {i: list(prompts[i]) + known[i] + guess[i][:-1] for i in active}
        start = {i: len(prompts[i]) + len(known[i]) - 1 for i in active}
        lengths = [len(sequences[i]) for i in active]
        for rows in length_sorted_batches(lengths, token_budget, max_batch):
            ids = [active[r] for r in rows]
            positions = [list(range(start[i], len(sequences[i]))) for i in ids]
            feeds = batch_feeds([sequences[i] for i in ids], positions, pad,
                                full_head_mask(len(ids), layout))
            predicted = runtime.run(feeds).argmax(axis=-1)  # [B, K]
            for b, i in enumerate(ids):
                pred = predicted[b, : len(guess[i])].tolist()
                agree = next((k for k, (g, p) in enumerate(zip(guess[i], pred)) if g != p),
                             len(pred))
                known[i] += pred[: agree + 1]
                guess[i] = pred[agree + 1:]
        active = [i for i in active if not finished(i)]
    passes.close()
    return [tokenizer.decode(k[:limit]).split(stop)[0] for k, limit in zip(known, limits)]


def pad_token_id(tokenizer) -> int:
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
                   temperature: float = 1.0, progress: bool = True) -> pd.DataFrame:
    """The samples log: one row per example with prompt, target, prediction and metrics.

    `prediction` is the greedy answer (decoded up to the first newline). For correct rows it is
    the target; wrong rows are really decoded, up to len(target tokens) + `extra_tokens` tokens.
    Examples with `choices` also get every candidate's log P(candidate | prompt) (summed over
    its tokens, lm-eval `multiple_choice` style), `choice_correct` and the contrastive loss.
    """
    encoded, owner, gold_row = [], [], []
    for i, ex in enumerate(examples):
        answers = ex.choices or (ex.y,)
        if ex.y not in answers:
            raise ValueError(f"{ex.task} item {ex.item}: answer {ex.y!r} not among its choices")
        for answer in answers:
            if answer == ex.y:
                gold_row.append(len(encoded))
            encoded.append(encode(tokenizer, ex.prompt, f" {answer}"))
            owner.append(i)
    scored = teacher_forced(runtime, encoded, layout, pad_token_id(tokenizer), token_budget, max_batch,
                            progress)
    gold = scored.iloc[gold_row].reset_index(drop=True)
    wrong = [i for i in range(len(examples)) if not gold.at[i, "correct"]]
    predictions = [ex.target.strip() for ex in examples]
    if wrong:
        gold_enc = [encoded[gold_row[i]] for i in wrong]
        max_new = [len(e.target_ids) + extra_tokens for e in gold_enc]
        known = [_greedy_prefix(e.target_ids, gold.at[i, "argmax_ids"])
                 for e, i in zip(gold_enc, wrong)]
        # Teacher-forced predictions after the first miss make a good first guess.
        guesses = [list(gold.at[i, "argmax_ids"][len(k):]) for k, i in zip(known, wrong)]
        decoded = greedy_decode(runtime, tokenizer, [e.prompt_ids for e in gold_enc], layout,
                                max_new, token_budget, max_batch, prefixes=known,
                                guesses=guesses, progress=progress)
        for i, text in zip(wrong, decoded):
            predictions[i] = text.strip()
    frame = pd.DataFrame({
        "task": [ex.task for ex in examples],
        "variant": [ex.variant for ex in examples],
        "item": [ex.item for ex in examples],
        "group": [ex.group for ex in examples],
        "shots": [ex.shots for ex in examples],
        "seed": [ex.seed for ex in examples],
        "prompt": [ex.prompt for ex in examples],
        "target": [ex.target for ex in examples],
        "prediction": predictions,
        "correct": gold["correct"].astype(bool),
        "gold_logprob": gold["gold_logprob"],
        "first_token_rank": gold["first_token_rank"],
        "n_prompt_tokens": [len(encoded[r].prompt_ids) for r in gold_row],
        "n_target_tokens": [len(encoded[r].target_ids) for r in gold_row],
    })
    if any(ex.choices for ex in examples):
        choice_scores = [[] for _ in examples]
        for row, i in enumerate(owner):
            choice_scores[i].append(float(scored.at[row, "gold_logprob"]))
        frame["choices"] = [list(ex.choices) for ex in examples]
        frame["choice_logprobs"] = choice_scores
        frame["choice_prediction"] = [ex.choices[int(np.argmax(s))] if ex.choices else ""
                                      for ex, s in zip(examples, choice_scores)]
        frame["choice_correct"] = frame["choice_prediction"] == [ex.y for ex in examples]
        frame["contrastive_loss"] = [
            contrastive_loss(s, [c == ex.y for c in ex.choices], temperature)
            if ex.choices else float("nan") for ex, s in zip(examples, choice_scores)]
    frame["provider"] = runtime.provider
    return frame


def contrastive_loss(scores: Sequence[float], positive: Sequence[bool],
                     temperature: float = 1.0) -> float:
    """Seed 001: `L = -1/N+ sum_{i in +} log(exp(s_i/tau) / sum_j exp(s_j/tau))`."""
    from scipy.special import logsumexp

    s = np.asarray(scores, dtype=np.float64) / temperature
    mask = np.asarray(positive, dtype=bool)
    if not mask.any():
        raise ValueError("contrastive loss needs at least one positive candidate")
    return float(-(s[mask] - logsumexp(s)).mean())
