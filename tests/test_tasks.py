"""Task generators: counts, determinism, no test item among its own demonstrations."""

from __future__ import annotations

import pytest

from iclab.tasks import TaskError, build_examples, copy_items


def test_copy_has_all_ordered_selections():
    items = copy_items()
    assert len(items) == 6720 == len({x for x, _ in items})
    x, y = items[0]
    assert x == y == "a, b, c, d, e"
    assert all(len(set(x.split(", "))) == 5 for x, _ in items)


def test_copy_examples_are_deterministic_and_seeded():
    a = build_examples("copy", 50, 5, seed=3)
    b = build_examples("copy", 50, 5, seed=3)
    c = build_examples("copy", 50, 5, seed=4)
    assert a == b
    assert [e.item for e in a] != [e.item for e in c]


def test_demonstrations_exclude_the_test_item():
    for ex in build_examples("copy", 300, 8, seed=0):
        assert len(ex.demos) == 8
        assert ex.x not in [dx for dx, _ in ex.demos]
        assert len(set(ex.demos)) == 8


def test_prompt_format():
    ex = build_examples("copy", 1, 1, seed=0)[0]
    (dx, dy), = ex.demos
    assert ex.prompt == f"Input: {dx}\nOutput: {dy}\nInput: {ex.x}\nOutput:"
    assert ex.target == f" {ex.x}"


def test_all_items_when_n_test_is_none():
    examples = build_examples("copy", None, 0, seed=0)
    assert len(examples) == 6720 and examples[0].prompt.startswith("Input: a, b, c, d, e")


@pytest.mark.parametrize("kwargs,message", [
    ({"n_test": 10, "shots": 6720}, "larger than the demonstration pool"),
    ({"n_test": 0, "shots": 1}, "n_test"),
])
def test_impossible_settings(kwargs, message):
    with pytest.raises(TaskError, match=message):
        build_examples("copy", seed=0, **kwargs)


def test_unknown_task():
    with pytest.raises(TaskError, match="unknown task"):
        build_examples("nope", 1, 1, 0)
