"""ICL example sets: the packaged seed examples and user files, read into :class:`ICLExample`.

An example is a query and the answer to show for it, or a conversation: earlier turns, then the
user's last turn (the query) and the assistant's answer to it. Accepted forms of one example:

* ``{"query", "answer", "id"?, "history"?}`` (``history``: earlier ``{"role", "content"}`` turns);
* a conversation ending with the assistant's answer, in the forms queries take
  (:mod:`drpo_agents.conversations`): OpenAI ``messages``, LangSmith-style ``inputs.messages``
  (the answer may be in ``outputs``: ``messages``, ``message``, ``output`` or ``answer``), a
  list of LangChain messages;
* in a file, also the reference DRPO format: one JSON object mapping query to answer.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drpo_agents.conversations import is_conversation, is_message, read_example
from drpo_agents.datasets import Query, is_multi_turn, packaged_text
from drpo_agents.errors import ConfigError, DRPOWarning, raise_item_faults
from drpo_agents.infra.json_files import read_json, read_jsonl, read_text
from drpo_agents.json_types import JsonObject
from drpo_agents.schemas import ICLExample

ICLExampleInput = ICLExample | Mapping[str, Any] | Sequence[Any]
"""An ICL example in any accepted form (see the module docstring)."""


def load_icl_examples(path: str | Path) -> list[ICLExample]:
    """Read ICL examples from a file: JSON Lines (``.jsonl``, an example per line, as chat
    exports come), or JSON: a list of examples (see the module docstring for their forms) or an
    object mapping query to answer (the reference DRPO format, ``<START>``/``<END>`` markers
    allowed).

    Raises:
        ConfigError: if the file is missing, not UTF-8 JSON, or holds invalid or repeated examples
            (every bad example named, a line each).
    """
    source = Path(path)
    if source.suffix == ".jsonl":
        data = read_jsonl(read_text(source, "ICL example file", ConfigError), str(source))
    else:
        data = read_json(source, "ICL example file", ConfigError)
    return parse_icl_examples(data, str(source))


def parse_icl_examples(data: Any, source: str) -> list[ICLExample]:
    """The examples in ``data`` (a file's parsed JSON, or a list from Python); ``source`` names
    it in errors. Two examples with the same id, or the same turns, are refused: retrieval would
    place both."""
    if isinstance(data, str | Path):
        raise ConfigError(
            f"{source} must be a list of examples, not {type(data).__name__} {str(data)[:60]!r}: "
            "to read a file, pass load_icl_examples(path)"
        )
    if isinstance(data, Mapping) and (is_conversation(data) or {"query", "answer"} & data.keys()):
        raise ConfigError(f"{source} is one example (a dict); pass a list of examples: [example]")
    if isinstance(data, Sequence) and data and all(is_message(m) for m in data):
        raise ConfigError(
            f"{source} is one conversation (a list of messages); pass a list of examples: [messages]"
        )
    if isinstance(data, dict) and {"system_prompt", "icl_examples"} <= data.keys():
        raise ConfigError(
            f"{source} is an artifact, not an ICL example file: start from it with --from "
            "(Python: start_from=), which takes its prompt and its ICL examples"
        )
    rows = _official_rows(data, source) if isinstance(data, dict) else data
    if isinstance(rows, tuple):
        rows = list(rows)
    if not isinstance(rows, list):
        raise ConfigError(f"{source}: expected a list of examples or a query -> answer object")
    examples: list[ICLExample] = []
    faults: list[str] = []
    seen: dict[object, int] = {}
    for number, row in enumerate(rows, start=1):
        try:
            example = icl_example(row, f"ICL example #{number}")
            keys = [("turns", json.dumps(example.turns())), *([("id", example.id)] if example.id else [])]
            for key in keys:
                if key in seen:
                    what = f"the id {example.id!r} of " if key[0] == "id" else ""
                    raise ConfigError(f"ICL example #{number} repeats {what}ICL example #{seen[key]}")
            seen.update(dict.fromkeys(keys, number))
        except ConfigError as exc:
            faults.append(str(exc))
            continue
        examples.append(example)
    try:
        raise_item_faults(faults, len(rows), "ICL examples")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return examples


def icl_example(item: object, where: str) -> ICLExample:
    """One example in any accepted form (an :class:`ICLExample` is returned as it is).

    Raises:
        ConfigError: one line naming ``where`` and the fault.
    """
    if isinstance(item, ICLExample):
        return item
    named = item.get("id") if isinstance(item, Mapping) else None
    if named is not None:
        where = f"{where} (id {named!r})"
    if isinstance(item, Mapping) and ("query" in item or "answer" in item) and is_conversation(item):
        raise ConfigError(f"{where} has both 'query'/'answer' and 'messages': give one of them")
    if isinstance(item, Mapping) and ("query" in item or "answer" in item):
        try:
            return ICLExample.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "example"
            if first["type"] == "missing":
                raise ConfigError(f"{where} has no {field!r}") from exc
            if first["type"] == "value_error":  # our validators' messages name the field
                raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from exc
            raise ConfigError(f"{where}: {field}: {first['msg']}") from exc
    if is_conversation(item):
        history, query, answer = read_example(item, where)
        return ICLExample(
            query=query, answer=answer, id=None if named is None else str(named), history=history
        )
    raise ConfigError(
        f"{where}: not an example: give 'query' and 'answer', or 'messages' ending with the assistant's answer"
    )


def _official_rows(data: dict[Any, Any], source: str) -> list[JsonObject]:
    """The reference format's query -> answer pairs; an answer that is not text is skipped, with a
    warning naming its query."""
    rows: list[JsonObject] = []
    for query, answer in data.items():
        if isinstance(answer, str):
            rows.append({"query": query, "answer": answer})
        else:
            warnings.warn(
                f"{source}: skipped the ICL example {str(query)[:60]!r}: its answer is "
                f"{type(answer).__name__}, not text",
                DRPOWarning,
                stacklevel=4,
            )
    return rows


def load_seed_icl_examples(*, conversations: bool = False) -> list[ICLExample]:
    """The packaged seed ICL examples (written for this project); with ``conversations``, also
    the packaged example conversations, whose answers use what the user said in earlier turns."""
    examples = parse_icl_examples(json.loads(packaged_text("seed_icl.json")), "seed_icl.json")
    if conversations:
        examples += parse_icl_examples(
            json.loads(packaged_text("seed_icl_conversations.json")), "seed_icl_conversations.json"
        )
    return examples


def seed_icl_examples_for(queries: Sequence[Query]) -> list[ICLExample]:
    """The packaged seed set a run on ``queries`` starts from: with the example conversations
    when any query is a conversation, so a chat's follow-ups retrieve examples that are
    conversations too."""
    return load_seed_icl_examples(conversations=any(is_multi_turn(q) for q in queries))
