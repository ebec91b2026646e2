"""ICL task generators (seed 003): seeded, deterministic, demonstrations never contain the test item.

Prompt format: demonstrations as `Input: {x}\nOutput: {y}\n`, then `Input: {x}\nOutput:`;
the target is ` {y}`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

COPY_LETTERS = "abcdefgh"
COPY_LENGTH = 5


class TaskError(ValueError):
    """A task cannot be built as configured (e.g. more shots than the demonstration pool)."""


@dataclass(frozen=True)
class Example:
    """One test item with its demonstrations; `item` indexes the task's full item list."""

    task: str
    item: int
    x: str
    y: str
    demos: tuple[tuple[str, str], ...]
    shots: int
    seed: int

    @property
    def prompt(self) -> str:
        shown = "".join(f"Input: {dx}\nOutput: {dy}\n" for dx, dy in self.demos)
        return f"{shown}Input: {self.x}\nOutput:"

    @property
    def target(self) -> str:
        return f" {self.y}"


def copy_items() -> list[tuple[str, str]]:
    """All 8!/3! = 6720 ordered selections of 5 distinct letters from a-h; the answer is the input."""
    items = []
    for letters in itertools.permutations(COPY_LETTERS, COPY_LENGTH):
        text = ", ".join(letters)
        items.append((text, text))
    return items


def sample_examples(task: str, items: list[tuple[str, str]], n_test: int | None, shots: int,
                    seed: int) -> list[Example]:
    """Draw `n_test` test items (all if None) and, per item, `shots` demonstrations from the rest."""
    if shots < 0:
        raise TaskError(f"{task}: shots must be >= 0, got {shots}")
    if shots > len(items) - 1:
        raise TaskError(
            f"{task}: shots={shots} is larger than the demonstration pool ({len(items) - 1} items)")
    if n_test is not None and not 0 < n_test <= len(items):
        raise TaskError(f"{task}: n_test={n_test} must be between 1 and {len(items)}")
    rng = np.random.default_rng(seed)
    test_ids = (np.arange(len(items)) if n_test is None or n_test == len(items)
                else np.sort(rng.choice(len(items), size=n_test, replace=False)))
    examples = []
    for item in test_ids:
        drawn = rng.choice(len(items), size=min(shots + 1, len(items)), replace=False)
        demo_ids = [int(d) for d in drawn if d != item][:shots]
        x, y = items[item]
        examples.append(Example(task=task, item=int(item), x=x, y=y,
                                demos=tuple(items[d] for d in demo_ids), shots=shots, seed=seed))
    return examples


TASK_ITEMS = {"copy": copy_items}


def build_examples(task: str, n_test: int | None, shots: int, seed: int) -> list[Example]:
    """Examples of a built-in task."""
    if task not in TASK_ITEMS:
        raise TaskError(f"unknown task {task!r}; known: {sorted(TASK_ITEMS)}")
    return sample_examples(task, TASK_ITEMS[task](), n_test, shots, seed)
