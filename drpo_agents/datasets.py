"""Training and held-out queries: the packaged defaults, user files, and validation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NotRequired

from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from 3.12

from drpo_agents.conversations import (
    Conversation,
    Turn,
    history_text,
    is_conversation,
    is_message,
    read_conversation,
)
from drpo_agents.errors import ConfigError, raise_item_faults
from drpo_agents.infra.json_files import read_json, read_jsonl, read_text

# A query longer than this is almost certainly a mistake (a whole file pasted in); refuse it
# before paying for it to be sent to every candidate at every level.
MAX_QUERY_CHARS = 20_000


def packaged_text(name: str) -> str:
    return resources.files("drpo_agents").joinpath("data", name).read_text(encoding="utf-8")


def _preview(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


class Query(TypedDict):
    """A training or held-out item: a single query, or the last user turn of a conversation with
    the turns before it (``history``) and the app's own system message (``system``)."""

    id: str
    query: str
    category: NotRequired[str]
    history: NotRequired[list[Turn]]
    system: NotRequired[str]
    turns: NotRequired[list[str]]  # held-out only: the user's turns, each setup writing its own replies


def is_multi_turn(query: Query) -> bool:
    """Whether ``query`` is a conversation: earlier turns given, or several user turns to answer."""
    return "history" in query or len(query.get("turns", [])) > 1


def normalize_queries(queries: Iterable[Any], *, user_turns: bool = False) -> list[Query]:
    """Validate training or held-out items and give each an id.

    Accepts strings, dicts with a ``"query"`` (or ``"instruction"``) key and optional ``"id"``
    and ``"category"`` (``"red_team"`` marks a query for the safety constraint), and
    conversations (:mod:`drpo_agents.conversations`: OpenAI ``messages``, LangSmith-style
    ``inputs.messages``, LangChain message lists) whose last message is the user's. With
    ``user_turns`` (held-out sets), also ``{"turns": ["...", "..."]}``: a conversation given as the
    user's turns only, which each evaluated setup answers in order with its own earlier replies.

    Raises:
        ConfigError: on an empty set, a blank, over-long or duplicate query, a duplicate id, or a
            conversation that is not one (one line naming the item and the fault).
    """
    if isinstance(queries, str):
        raise ConfigError(f"queries must be a list of queries, not one string: pass [{_preview(queries)}]")
    if not isinstance(queries, Iterable) or isinstance(queries, bytes):
        raise ConfigError(f"queries must be a list of queries, got {type(queries).__name__}")
    if isinstance(queries, Mapping):
        raise ConfigError(
            "queries must be a list of strings, {'id', 'query'} dicts or conversations, got one dict"
        )
    items = list(queries)
    if items and all(is_message(m) for m in items):
        raise ConfigError(
            "queries is one conversation (a list of messages); pass a list of conversations: [messages]"
        )
    normalized: list[Query] = []
    faults: list[str] = []
    seen_text: dict[str, int] = {}
    seen_ids: set[str] = set()
    for index, item in enumerate(items):
        try:
            row, key = _query_row(index, item, user_turns)
            if key in seen_text:
                raise ConfigError(
                    f"query #{index + 1} duplicates query #{seen_text[key] + 1}: {row['query'][:80]!r}"
                )
            if row["id"] in seen_ids:
                raise ConfigError(f"query #{index + 1}: the id {row['id']!r} is used twice")
        except ConfigError as exc:
            faults.append(str(exc))
            continue
        seen_text[key] = index
        seen_ids.add(row["id"])
        normalized.append(row)
    raise_item_faults(faults, len(items), "queries")
    if not normalized:
        raise ConfigError("no training queries given")
    return normalized


def _query_row(index: int, item: Any, user_turns: bool) -> tuple[Query, str]:
    """One item as a query row, and the text that makes it a duplicate of another."""
    named = item.get("id") if isinstance(item, Mapping) else None
    where = f"query #{index + 1}" + (f" (id {named!r})" if named is not None else "")
    if isinstance(item, dict) and "turns" in item and "messages" not in item:
        text, turns = _user_turns(item, where, allowed=user_turns)
        query_id, category, conversation = item.get("id"), item.get("category"), None
    else:
        turns = None
        text, query_id, category, conversation = _read_item(item, where)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where} is empty")
    history = history_text(conversation.history) if conversation else "\n".join((turns or [])[:-1])
    if len(text) + len(history) > MAX_QUERY_CHARS:
        raise ConfigError(
            f"{where} is {len(text) + len(history):,} characters long (limit {MAX_QUERY_CHARS:,})"
        )
    system = conversation.system if conversation else ""
    row: Query = {"id": str(query_id) if query_id is not None else f"q{index + 1:04d}", "query": text.strip()}
    if category:
        row["category"] = str(category)
    if turns is not None:
        row["turns"] = turns
    if conversation is not None:
        if conversation.history:
            row["history"] = list(conversation.history)
        if conversation.system:
            row["system"] = conversation.system
    return row, " ".join(f"{system}\n{history}\n{text}".split()).casefold()


def _user_turns(item: Mapping[str, Any], where: str, *, allowed: bool) -> tuple[str, list[str]]:
    """(last turn, all turns) of a ``{"turns": [...]}`` item, for held-out sets only."""
    if not allowed:
        raise ConfigError(
            f"{where} gives only the user's turns ('turns'): that form is for held-out sets (drpo "
            "evaluate), where each setup writes its own replies; to train, give the assistant's "
            "replies too (OpenAI 'messages')"
        )
    turns = item["turns"]
    if not isinstance(turns, list) or not turns:
        raise ConfigError(f"{where}: 'turns' must be a non-empty list of the user's messages")
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, str) or not turn.strip():
            raise ConfigError(f"{where}, turn {number}: must be a non-empty string")
    cleaned = [t.strip() for t in turns]
    return cleaned[-1], cleaned


def _read_item(item: object, where: str) -> tuple[Any, Any, Any, Conversation | None]:
    """(query text, id, category, conversation or None) of one item, before validation."""
    if isinstance(item, str):
        return item, None, None, None
    if isinstance(item, dict) and ("query" in item or "instruction" in item) and is_conversation(item):
        raise ConfigError(f"{where} has both a 'query' and 'messages': give one of them")
    if isinstance(item, dict) and is_conversation(item):
        read = read_conversation(item, where)
        return read.query, item.get("id"), item.get("category"), read
    if isinstance(item, dict):
        if "query" not in item and "instruction" not in item:
            keys = ", ".join(repr(k) for k in list(item)[:5]) or "none"
            raise ConfigError(
                f"{where} has no 'query' (or 'instruction') field, nor 'messages'; its fields: {keys}"
            )
        text = item.get("query", item.get("instruction"))
        conversation: Conversation | None = None
        if item.get("history") or item.get("system"):  # a query record, as normalize_queries returns
            system = [{"role": "system", "content": item["system"]}] if item.get("system") else []
            history = item.get("history") or []
            if not isinstance(history, list):
                raise ConfigError(f"{where}: 'history' must be a list of user/assistant messages")
            turns = [*system, *history, {"role": "user", "content": text if isinstance(text, str) else ""}]
            conversation = read_conversation({"messages": turns}, where)
        return text, item.get("id"), item.get("category"), conversation
    if is_conversation(item):
        read = read_conversation(item, where)
        return read.query, None, None, read
    raise ConfigError(f"{where} must be a string, a dict or a list of messages, got {type(item).__name__}")


def load_queries(path: str | Path, *, user_turns: bool = False) -> list[Query]:
    """Read training or evaluation queries from a file, validated by :func:`normalize_queries`.

    Formats: ``.jsonl`` (one object with ``"query"`` or ``"instruction"`` per line), ``.json``
    (a list of strings or such objects), or plain text (one query per line). Conversations as
    :func:`normalize_queries` reads them (``user_turns``: held-out sets may give user turns only).

    Raises:
        ConfigError: if the file is missing, not UTF-8, malformed, or holds invalid queries.
    """
    source = Path(path)
    rows: Sequence[Any]
    if source.suffix == ".jsonl":
        rows = read_jsonl(read_text(source, "query file", ConfigError), str(source))
    elif source.suffix == ".json":
        rows = read_json(source, "query file", ConfigError)
        if not isinstance(rows, list):
            raise ConfigError(f"{source}: expected a JSON list of queries")
    else:
        rows = [line for line in read_text(source, "query file", ConfigError).splitlines() if line.strip()]
    try:
        return normalize_queries(rows, user_turns=user_turns)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_training_queries() -> list[Query]:
    """The packaged default training queries (instruction, open-ended, knowledge and red-team)."""
    return normalize_queries(read_jsonl(packaged_text("train_queries.jsonl"), "train_queries.jsonl"))


def load_eval_queries() -> list[Query]:
    """The packaged held-out evaluation queries (disjoint from the training queries)."""
    return normalize_queries(read_jsonl(packaged_text("eval_queries.jsonl"), "eval_queries.jsonl"))


def load_eval_conversations() -> list[Query]:
    """The packaged multi-turn held-out set: 30 conversations of 2-4 user turns (``turns``), which
    each evaluated setup answers in order with its own earlier replies."""
    rows = read_jsonl(packaged_text("eval_conversations.jsonl"), "eval_conversations.jsonl")
    return normalize_queries(rows, user_turns=True)


def query_categories() -> dict[str, str]:
    """Category of every packaged query, by id (``instruction``, ``red_team``, ...)."""
    categories: dict[str, str] = {}
    for name in ("train_queries.jsonl", "eval_queries.jsonl"):
        for row in read_jsonl(packaged_text(name), name):
            categories[str(row["id"])] = str(row.get("category", ""))
    return categories
