"""Degenerate repetition loops in generated text: finding them, and stopping llama.cpp at one.

Small models (SmolLM2-135M) often fall into a loop: the same few lines again and again until the
token cap. llama.cpp's repetition penalty only looks back ``last_n_tokens`` tokens, so a block
longer than that window escapes it. Two defences, both here:

- :func:`find_loop` finds where a loop starts: a block of lines immediately repeated (two copies of
  two or more lines, three of a single short line) or a tail that is one phrase over and over; the
  text is cut after the first copy, so what is kept is what the model really said, once;
- :class:`LoopStopper`, a llama-cpp-python logits processor, runs the same check while generating
  and forces the end-of-generation token as soon as a loop is complete, so no time is spent on
  copies that would be cut anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

_MIN_BLOCK_CHARS = 24  # a repeated block shorter than this may be legitimate ("}", "end", "Yes.")
_MAX_BLOCK_LINES = 8
_LONG_LINE = 80  # a single line this long repeated twice in a row is a loop
_MIN_PHRASE_SPAN = 64  # a tail periodic over this many characters (three copies at least)
_MAX_PHRASE = 100
_LETTER = re.compile(r"[^\W\d_]")
_MARKUP = re.compile(r"[*_`>#]")  # a loop may switch between *emphasis* and **strong** (seen)
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-+•])\s+")  # "34. Avoid caffeine." "35. Avoid caffeine." (seen)


def _content_lines(text: str) -> list[tuple[str, int]]:
    """``(normalised line, offset of its end)`` for each line with a letter in it; separators such
    as ``>``, ``---`` or a closing brace take no part in a block; list numbers and bullets and
    Markdown emphasis, quote and heading marks are ignored."""
    lines: list[tuple[str, int]] = []
    offset = 0
    for raw in text.splitlines(keepends=True):
        end = offset + len(raw.rstrip("\r\n"))
        offset += len(raw)
        normalised = " ".join(_MARKUP.sub("", _LIST_MARKER.sub("", raw)).split())
        if _LETTER.search(normalised):
            lines.append((normalised, end))
    return lines


def _line_loop(text: str) -> int | None:
    """End of the first copy of the earliest repeated block of lines, or ``None``."""
    lines = _content_lines(text)
    words = [line for line, _ in lines]
    for start in range(len(words)):
        for size in range(1, _MAX_BLOCK_LINES + 1):
            block = words[start : start + size]
            if len(block) < size or words[start + size : start + 2 * size] != block:
                continue
            chars = sum(map(len, block))
            if chars < _MIN_BLOCK_CHARS:
                continue
            if size == 1 and chars < _LONG_LINE and words[start + 2 : start + 3] != block:
                continue  # one short line twice may be a refrain; three times is a loop
            return lines[start + size - 1][1]
    return None


def _phrase_loop(text: str) -> int | None:
    """End of the first copy when the text ends in one phrase repeated (within a line or across
    lines), or ``None``. Only the tail is checked: such a loop runs to the end of the text."""
    body = text.rstrip()
    for period in range(2, _MAX_PHRASE + 1):
        span = max(3 * period, _MIN_PHRASE_SPAN)
        if span > len(body):
            break
        window = body[-span:]
        if window[period:] != window[:-period] or not _LETTER.search(window[:period]):
            continue
        start = len(body) - span
        while start > 0 and body[start - 1] == body[start - 1 + period]:
            start -= 1  # the periodic stretch may begin earlier than the window
        return start + period
    return None


def find_loop(text: str) -> int | None:
    """Where to cut ``text`` so a degenerate loop is kept once: the end of its first copy, or
    ``None`` when there is no loop. A loop of whole lines is cut at a line end; where a repeated
    phrase starts is ambiguous by a few characters, so that check comes second."""
    line = _line_loop(text)
    return line if line is not None else _phrase_loop(text)


def cut_loop(text: str) -> tuple[str, bool]:
    """``text`` with a trailing loop cut after its first copy, and whether it had one."""
    cut = find_loop(text)
    return (text, False) if cut is None else (text[:cut].rstrip(), True)


class LoopStopper:
    """A llama-cpp-python logits processor that ends the generation when a loop is complete.

    llama-cpp-python calls it before each token with the context's token ids (prompt first) and
    the logits; once :func:`find_loop` sees a loop in the generated text, every token but the
    end-of-generation one gets ``-inf``. The text is checked at each line end, and every
    ``check_every`` tokens for a loop inside a line.
    """

    def __init__(self, detokenize: Callable[[list[int]], bytes], eog_token: int, check_every: int = 16):
        self._detokenize = detokenize
        self._eog = eog_token
        self._every = check_every
        self._prompt_tokens: int | None = None
        self._generated = bytearray()
        self._seen = 0
        self.fired = False

    def __call__(self, input_ids: Sequence[int], scores: Any) -> Any:
        try:
            if not self.fired and self._loop_complete(input_ids):
                self.fired = True
        except Exception:  # called from C through ctypes: never let an error escape there
            return scores
        if self.fired:
            scores[:] = float("-inf")
            scores[self._eog] = 0.0
        return scores

    def _loop_complete(self, input_ids: Sequence[int]) -> bool:
        if self._prompt_tokens is None:  # the first call comes before the first new token
            self._prompt_tokens = len(input_ids)
        new = [int(token) for token in input_ids[self._prompt_tokens + self._seen :]]
        if not new:
            return False
        self._seen += len(new)
        piece = self._detokenize(new)
        self._generated += piece
        if b"\n" not in piece and self._seen % self._every:
            return False
        return find_loop(self._generated.decode("utf-8", errors="ignore")) is not None
