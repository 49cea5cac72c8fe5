"""How a traced run's inputs and outputs become JSON: compact messages, graph-state summaries, long texts once.

:class:`JsonlTracer` (``drpo_agents.tracing``) writes a run's inputs and outputs through
:class:`TraceValues`, and :func:`resolve_texts` turns a read line back into plain values:

- A message is ``{"type", "content"}`` (plus ``id``, ``tool_calls``, ``usage_metadata``, ``name``
  when set: the id tells an ICL example's turns from the conversation's own), not LangChain's ``dumpd`` constructor form; pydantic models and dataclasses are dumped.
- A text of :data:`MIN_SHARED_TEXT` characters or more is written once per trace file, where it
  first appears, as ``{"$text": ID, "value": TEXT}``; every later occurrence is ``{"$text": ID}``
  (``ID``: a hash of the text). System prompts, ICL answers and ``Send`` payloads repeat in
  thousands of runs; :func:`resolve_texts` restores them.
- A LangGraph node run receives the whole graph state: over the size limit, its inputs or
  outputs become ``{"truncated": true, "summary": {key: value}}`` where large values are
  replaced by their size (``{"omitted": "list", "items": 206}``). The conversion stops once
  past the limit, so a large state is never serialized whole.
- Values under secret-looking keys (``api_key``, ``password``, …) become ``[redacted]``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from langchain_core.load import dumpd
from langchain_core.load.serializable import Serializable
from langchain_core.messages import BaseMessage
from langgraph.types import Send
from pydantic import BaseModel

REDACTED = "[redacted]"
TEXT_KEY = "$text"
"""The key of a shared text's reference (``{"$text": ID}``) and definition (with ``"value"``)."""
MIN_SHARED_TEXT = 200
"""Texts at least this long are written once per trace file and referenced after that."""
SUMMARY_VALUE_CHARS = 300
"""In a summary of a graph state, values estimated at most this long are kept as they are."""

# Keys whose values are never written, wherever they appear (metadata, inputs, outputs).
_SECRET_KEY = re.compile(
    r"api[_-]?key|secret|passw(or)?d|authorization|credential|(access|auth|bearer)[_-]?token", re.I
)


# Traced values repeat the same few hundred keys thousands of times: each is judged once.
@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether values under ``key`` are secrets (``api_key``, ``password``, ``auth_token``, …)."""
    return _SECRET_KEY.search(key) is not None


def redact_keys(value: Any) -> Any:
    """``value`` with the values under secret-looking keys replaced by ``[redacted]``, at any depth."""
    kind = type(value)
    if kind is str or kind is int or value is None:  # most metadata values: checked by exact type
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) else redact_keys(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_keys(v) for v in value]
    return value


class TooLarge(Exception):
    """A value's JSON would pass the limit given to :meth:`TraceValues.convert`."""


def _omitted(value: Any) -> dict[str, Any]:
    """What a summary says about a value too large to keep: its kind and size."""
    if isinstance(value, str):
        return {"omitted": "str", "chars": len(value)}
    if isinstance(value, Mapping):
        return {"omitted": "dict", "keys": len(value)}
    if isinstance(value, list | tuple | set | frozenset):
        return {"omitted": "list", "items": len(value)}
    return {"omitted": type(value).__name__}


def text_id(text: str) -> str:
    """The id a shared text is written under: a short hash of it."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class TraceValues:
    """Turns inputs and outputs into JSON-able values for one trace file; remembers which long
    texts the file already holds (see the module docstring). Not thread-safe: the tracer calls
    it under its write lock, so a text is defined in the file before any line refers to it."""

    def __init__(self) -> None:
        self._written: set[str] = set()  # ids of texts defined in lines already written
        # Defined in the line being built, not yet written: id -> the definition in the value.
        self._pending: dict[str, dict[str, str]] = {}
        self._left: float = math.inf  # characters the value being converted may still take

    @property
    def defined(self) -> int:
        """How many texts the line being built defines so far (for :meth:`undo`)."""
        return len(self._pending)

    def convert(self, value: Any, limit: int | None = None) -> Any:
        """``value`` as plain JSON types, long texts defined or referenced. Definitions count
        for later lines once :meth:`commit` says the line is written.

        Raises:
            TooLarge: the JSON would be longer than about ``limit`` characters. The walk stops
                there, so a large graph state costs no more than the limit to measure.
        """
        defined = self.defined
        self._left = math.inf if limit is None else limit
        try:
            return self._convert(value)
        except TooLarge:
            self.undo(defined)
            raise

    def undo(self, defined: int) -> None:
        """Forget the definitions made since :attr:`defined` was ``defined``: the value holding
        them is not written as such (it was truncated to a preview)."""
        for key in list(self._pending)[defined:]:
            del self._pending[key]

    def commit(self) -> None:
        """The line being built is in the file: its definitions hold for the lines after it, and
        the converted values that held them now refer to them (for reuse in a later line)."""
        self._written.update(self._pending)
        for definition in self._pending.values():
            definition.pop("value", None)
        self._pending.clear()

    def summary(self, value: Mapping[Any, Any]) -> dict[str, Any]:
        """A graph state too large to write: small values as they are, large ones by size."""
        kept: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if isinstance(key, str) and is_secret_key(key):
                kept[name] = REDACTED
                continue
            try:
                kept[name] = self.convert(item, SUMMARY_VALUE_CHARS)
            except TooLarge:
                kept[name] = _omitted(item)
        return {"truncated": True, "summary": kept}

    def _spend(self, chars: int) -> None:
        self._left -= chars
        if self._left < 0:
            raise TooLarge

    def _convert(self, value: Any) -> Any:
        # The common types first, by exact type: this walk runs over every traced value.
        kind = type(value)
        if kind is str:
            if len(value) < MIN_SHARED_TEXT:
                self._spend(len(value) + 2)
                return value
            shared = self._text(value)
            self._spend(len(shared.get("value", "")) + 30)
            return shared
        if kind is dict:
            self._spend(2 + 6 * len(value))
            return {
                str(k): (REDACTED if isinstance(k, str) and is_secret_key(k) else self._convert(v))
                for k, v in value.items()
            }
        if kind is list or kind is tuple:
            self._spend(2 + 2 * len(value))
            return [self._convert(v) for v in value]
        if value is None or kind is bool or kind is int or kind is float:
            self._spend(6)
            return value
        return self._convert(self._plain(value))

    @staticmethod
    def _plain(value: Any) -> Any:
        """Any other value as a dict, list, str or number (then converted like those)."""
        if isinstance(value, BaseMessage):
            return _message(value)
        if isinstance(value, Send):
            return {"send": value.node, "arg": value.arg}
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, list | tuple | set | frozenset):
            return list(value)
        if isinstance(value, str | bool | int | float):  # subclasses (enums): the plain value
            return json.loads(json.dumps(value))
        if isinstance(value, Serializable):
            return dumpd(value)
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return repr(value)

    def _text(self, text: str) -> dict[str, str]:
        key = text_id(text)
        if key in self._written or key in self._pending:
            return {TEXT_KEY: key}
        definition = {TEXT_KEY: key, "value": text}
        self._pending[key] = definition
        return definition


def _message(message: BaseMessage) -> dict[str, Any]:
    """A message as the trace keeps it: type and content, and id, tool calls, usage and name if set."""
    record: dict[str, Any] = {"type": message.type, "content": message.content}
    fields = vars(message)  # not getattr: a field a message type lacks costs pydantic a lookup
    for field in ("id", "name", "tool_calls", "tool_call_id", "usage_metadata"):
        value = fields.get(field)
        if value:
            record[field] = value
    return record


def resolve_texts(value: Any, texts: dict[str, str]) -> Any:
    """``value`` (a read trace line's inputs or outputs) with shared texts restored. Definitions
    are added to ``texts``; pass the same dict for the lines of a file in order. A reference whose
    definition is not in ``texts`` (the file was cut) stays ``{"$text": ID}``."""
    if isinstance(value, dict):
        key = value.get(TEXT_KEY)
        if isinstance(key, str) and len(value) <= 2 and set(value) <= {TEXT_KEY, "value"}:
            if "value" in value:
                texts[key] = value["value"]
                return value["value"]
            return texts.get(key, value)
        return {k: resolve_texts(v, texts) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_texts(v, texts) for v in value]
    return value
