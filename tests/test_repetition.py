"""Degenerate loops in generated text: where they start, and stopping llama.cpp at one."""

from __future__ import annotations

import numpy as np
import pytest

from drpo_agents.models.repetition import LoopStopper, cut_loop, find_loop

# The "after" answer SmolLM2-135M gave in the README demo before loops were stopped (shortened:
# the four quoted lines went on to the 512-token cap, ending mid-line).
BLOCK = (
    "> *You're welcome!*\n>\n> *Don't forget to check out the other side of the world.*\n>\n"
    "> *This is a place where people come to celebrate.*\n>\n"
    "> *I'm not sure what you mean, but I'll try to find someone else.*\n>\n"
)
HEAD = (
    "Here's a more relaxed version:\n\n**Subject: Busy, Talk Later**\n> *I'll try to find someone else.*\n>\n"
)
DEMO = HEAD + BLOCK * 5 + "> *I'm"


def test_a_repeated_block_of_lines_is_kept_once() -> None:
    text, looped = cut_loop(DEMO)
    assert looped
    assert text == (HEAD + BLOCK).rstrip().removesuffix(">").rstrip()  # cut after the first copy
    assert find_loop(text) is None  # what is kept has no loop left


def test_a_single_short_line_needs_three_copies() -> None:
    refrain = "Row, row, row your boat\nRow, row, row your boat\nGently down the stream."
    assert find_loop(refrain) is None
    looped = "Step one.\nAlways be kind to others.\nAlways be kind to others.\nAlways be kind to others.\n"
    assert cut_loop(looped) == ("Step one.\nAlways be kind to others.", True)
    long_line = "x " + "A long sentence that goes on and on about the same thing, again. " * 2
    assert find_loop(f"{long_line}\n{long_line}\n") is not None  # a long line: two copies suffice


@pytest.mark.parametrize(
    "text",
    [
        "def f():\n    if x:\n        return 1\n    }\n}\n}\n",  # separators take no part
        "- Eat well.\n- Sleep well.\n- Eat well.\n- Exercise.\n",  # not consecutive
        "1. Mix.\n2. Bake.\n3. Serve.\n",
        "- Wash the lettuce well.\n- Dry the lettuce.\n- Wash the tomatoes well.\n",
        "Yes.\nYes.\nYes.\n",  # short blocks may be legitimate
        "-" * 120 + "\nA table follows.\n| a | b |\n|---|---|\n",
        "The answer is 42.",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert cut_loop(text) == (text, False)


def test_a_phrase_repeated_to_the_end_is_kept_once() -> None:
    text = "I think that it is very, " + "very, " * 30 + "ve"
    assert cut_loop(text) == ("I think that it is very,", True)


def test_list_numbers_do_not_hide_a_loop() -> None:
    text = "Tips:\n33. Keep the room dark.\n34. Avoid heavy meals and caffeine.\n35. Avoid heavy meals and caffeine.\n36. Avoid heavy meals and caffeine.\n37. Avoid"
    assert cut_loop(text) == ("Tips:\n33. Keep the room dark.\n34. Avoid heavy meals and caffeine.", True)


def test_markdown_marks_do_not_hide_a_loop() -> None:
    text = "> *Thanks for everything!*\n> *That's all I need now.*\n> **Thanks for everything!**\n> **That's all I need now.**\n"
    assert cut_loop(text) == ("> *Thanks for everything!*\n> *That's all I need now.*", True)


def test_the_earliest_loop_wins() -> None:
    first = "Alpha line one here.\nBeta line two here.\n"
    second = "Gamma line three.\nDelta line four.\n"
    text = "Intro.\n" + first * 2 + second * 3
    assert cut_loop(text) == ("Intro.\n" + first.rstrip(), True)


def test_the_stopper_forces_the_end_once_a_loop_is_complete() -> None:
    pieces = ["Intro.\n"] + [line + "\n" for line in BLOCK.splitlines()] * 2 + ["> *You're"]
    vocabulary = {i: piece.encode() for i, piece in enumerate(pieces, start=100)}
    stopper = LoopStopper(lambda ids: b"".join(vocabulary[i] for i in ids), eog_token=2)
    prompt = [1, 5, 7]
    fired_at = None
    for step in range(len(pieces) + 1):
        scores = np.full(200, 0.5, dtype=np.float32)
        out = stopper(np.array(prompt + list(range(100, 100 + step))), scores)
        if stopper.fired:
            assert out[2] == 0.0 and np.isneginf(np.delete(out, 2)).all()
            fired_at = fired_at if fired_at is not None else step
        else:
            assert (out == 0.5).all()
    # It fired right after the last line with words of the second copy (its 7th; the 8th is ">"),
    # not before and not later.
    assert fired_at == 1 + len(BLOCK.splitlines()) + 7


def test_the_stopper_never_raises_into_llama_cpp() -> None:
    def broken(ids: list[int]) -> bytes:
        raise RuntimeError("detokenize failed")

    stopper = LoopStopper(broken, eog_token=2)
    stopper([1], [0.0])
    assert stopper([1, 9], [0.0, 1.0]) == [0.0, 1.0] and not stopper.fired
