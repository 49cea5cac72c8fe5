"""Conversations as training and held-out items: the forms apps export them in, read into one
typed shape (earlier turns, the last user turn, the app's own system message), and shown back as
messages (the responder) or as text (the judge and the rewriter).

Accepted forms of one item:

* OpenAI chat: ``{"id": ..., "messages": [{"role": "system" | "developer" | "user" | "assistant",
  "content": ...}, ...]}`` (content a string or text blocks);
* a LangSmith-style dataset row: ``{"id": ..., "inputs": {"messages": [...]}}``;
* from Python, a list of LangChain messages (or of message dicts).

The last message must be the user's: it is the query the responder answers, with the earlier
turns in context. System messages may only lead the conversation; they are the app's own
instruction, kept after the optimized prompt (as :func:`drpo_agents.with_alignment` does).
An ICL example may be a conversation too (:func:`read_example`): it ends with the assistant's
answer to the user's last turn, and is placed in context as its turns, marked as an example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from 3.12

from drpo_agents.errors import ConfigError
from drpo_agents.prompts import render_prompt

Role = Literal["user", "assistant"]
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "developer": "system"}
_KNOWN_ROLES = ("system", "developer", "user", "human", "assistant", "ai")
_NO_TOOLS = (
    "tool calls and tool results are not supported in conversations yet: drop the assistant's "
    "tool call and the tool messages (or keep the assistant's text reply)"
)


class Turn(TypedDict):
    """One earlier turn of a conversation, as JSON (in queries, tasks, records and checkpoints)."""

    role: Role
    content: str


@dataclass(frozen=True)
class Conversation:
    """A conversation read from one item: ``query`` is its last user turn, ``history`` the turns
    before it (user and assistant), ``system`` the app's leading system message ("" if none)."""

    query: str
    history: tuple[Turn, ...]
    system: str


def is_conversation(item: object) -> bool:
    """Whether ``item`` is in one of the conversation forms (it may still be invalid)."""
    if isinstance(item, Mapping):
        inputs = item.get("inputs")
        return "messages" in item or (isinstance(inputs, Mapping) and "messages" in inputs)
    if isinstance(item, BaseMessage):
        return True
    return (
        isinstance(item, Sequence)
        and not isinstance(item, str)
        and any(isinstance(m, BaseMessage | Mapping) or _is_pair(m) for m in item)
    )


def is_message(item: object) -> bool:
    """Whether ``item`` is one message (a LangChain message or a message dict), not a list of them."""
    return isinstance(item, BaseMessage) or (
        isinstance(item, Mapping) and "content" in item and ("role" in item or "type" in item)
    )


def _is_pair(item: object) -> bool:
    """LangChain's ("user", "text") message shorthand."""
    return isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)


def read_conversation(item: object, where: str) -> Conversation:
    """The conversation in ``item`` (see the module docstring for the forms).

    Raises:
        ConfigError: one line naming ``where`` and the fault: no messages, an unknown role, an
            empty message, a system message after the first turn, or a last turn not the user's.
    """
    system, turns = _read_turns(_raw_messages(item), where)
    if not turns or turns[-1]["role"] != "user":
        last = turns[-1]["role"] if turns else "system"
        raise ConfigError(
            f"{where}: the last message must be the user's (the turn to answer), not the {last}'s"
        )
    return Conversation(query=turns[-1]["content"], history=tuple(turns[:-1]), system="\n\n".join(system))


def read_example(item: object, where: str) -> tuple[list[Turn], str, str]:
    """(earlier turns, query, answer) of an ICL example given as a conversation that ends with
    the assistant's answer to the user's last turn. LangSmith-style rows may put the answer in
    ``outputs`` (:func:`_output_messages`).

    Raises:
        ConfigError: as :func:`read_conversation`, or for a system message (an example is shown
            under the optimized prompt, so it cannot bring its own) or a last turn not an answer.
    """
    raw = _raw_messages(item)
    outputs = item.get("outputs") if isinstance(item, Mapping) else None
    if isinstance(outputs, Mapping) and isinstance(raw, Sequence) and not isinstance(raw, str):
        raw = [*raw, *_output_messages(outputs)]
    _, turns = _read_turns(raw, where, system=False)
    if len(turns) < 2 or turns[-1]["role"] != "assistant" or turns[-2]["role"] != "user":
        raise ConfigError(
            f"{where}: an ICL example conversation must end with a user turn and the assistant's answer to it"
        )
    return turns[:-2], turns[-2]["content"], turns[-1]["content"]


def _output_messages(outputs: Mapping[str, object]) -> list[object]:
    """The answer of a LangSmith-style row: ``outputs.messages``, or one message or text in
    ``outputs.message`` / ``output`` / ``answer``."""
    if isinstance(messages := outputs.get("messages"), Sequence) and not isinstance(messages, str):
        return list(messages)
    for key in ("message", "output", "answer"):
        if key in outputs:
            value = outputs[key]
            return [{"role": "assistant", "content": value} if isinstance(value, str) else value]
    return []


def _raw_messages(item: object) -> object:
    """The message list of ``item`` in any of the accepted forms (unchecked)."""
    if isinstance(item, Mapping):
        inputs = item.get("inputs")
        if isinstance(inputs, Mapping) and "messages" in inputs:
            return inputs.get("messages")
        return item.get("messages")
    if isinstance(item, BaseMessage):
        return [item]
    return item


def _read_turns(raw: object, where: str, *, system: bool = True) -> tuple[list[str], list[Turn]]:
    """(leading system messages, user/assistant turns) of a message list; ``system=False``
    refuses any system message (an ICL example is shown under the optimized prompt)."""
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ConfigError(f"{where}: 'messages' must be a non-empty list of messages")
    messages = [_message(m, f"{where}, message {n}") for n, m in enumerate(raw, start=1)]
    leading: list[str] = []
    turns: list[Turn] = []
    for number, (role, content) in enumerate(messages, start=1):
        if role == "system":
            if not system:
                raise ConfigError(
                    f"{where}, message {number}: an ICL example cannot carry a system or developer "
                    "message (it is shown under the optimized prompt); drop it"
                )
            if turns:
                raise ConfigError(
                    f"{where}, message {number}: a system message after the conversation began "
                    "(only leading system messages are kept, as the app's own instruction)"
                )
            leading.append(content)
        else:
            turns.append(Turn(role=role, content=content))
    return leading, turns


def _message(raw: object, where: str) -> tuple[Literal["system", "user", "assistant"], str]:
    """(role, text) of one message: a LangChain message or a dict with a role (or type)."""
    if _is_pair(raw):
        raw = {"role": raw[0], "content": raw[1]}  # type: ignore[index]
    if isinstance(raw, Mapping):
        role = str(raw.get("role", raw.get("type", ""))).strip().lower()
        if role in ("tool", "function") or raw.get("tool_calls") or raw.get("function_call"):
            raise ConfigError(f"{where}: {_NO_TOOLS}")
        if role not in _KNOWN_ROLES:
            known = "system, developer, user or assistant"
            raise ConfigError(f"{where}: unknown role {role or '(none)'!r} (want {known})")
        if "content" not in raw:
            raise ConfigError(f"{where}: the {role} message has no 'content'")
    try:
        (message,) = convert_to_messages([raw])  # type: ignore[list-item]
    except (ValueError, TypeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where}: not a message ({first})") from exc
    if isinstance(message, ToolMessage) or (isinstance(message, AIMessage) and message.tool_calls):
        raise ConfigError(f"{where}: {_NO_TOOLS}")
    if isinstance(message, SystemMessage):
        kind: Literal["system", "user", "assistant"] = "system"
    elif isinstance(message, HumanMessage):
        kind = "user"
    elif isinstance(message, AIMessage):
        kind = "assistant"
    else:
        raise ConfigError(f"{where}: unknown role {message.type!r} (want system, user or assistant)")
    text = message.text.strip()
    if not text:
        raise ConfigError(f"{where}: the {kind} message is empty")
    return kind, text


ICL_ID_PREFIX = "drpo-icl-"
"""The id prefix of the ICL example turns placed before a conversation (by the search and by
``with_alignment`` alike): what tells an example from an earlier turn of the conversation."""


def icl_messages(examples: Sequence[Sequence[Turn]]) -> list[BaseMessage]:
    """ICL examples, each given as its turns (query then answer, after any earlier turns), as
    user/assistant messages marked as ICL examples."""
    messages: list[BaseMessage] = []
    for number, turns in enumerate(examples):
        earlier, query, answer = turns[:-2], turns[-2]["content"], turns[-1]["content"]
        messages += [
            _turn_message(turn, f"{ICL_ID_PREFIX}{number}-turn{index}") for index, turn in enumerate(earlier)
        ]
        messages += [
            HumanMessage(query, id=f"{ICL_ID_PREFIX}{number}-query"),
            AIMessage(answer, id=f"{ICL_ID_PREFIX}{number}-answer"),
        ]
    return messages


def icl_layout_note(examples: Sequence[Sequence[Turn]], prompts_dir: Path | None = None) -> str:
    """What the system message says about the ICL example turns placed before a conversation,
    when one of them is a conversation: which messages are samples, so a model never takes an
    example user's details for its own user's (message ids, which mark them for us, are not sent
    to a provider). "" for single-turn examples, which read as a question and its answer."""
    if all(len(turns) <= 2 for turns in examples):
        return ""
    return render_prompt("icl_conversations_note", prompts_dir, count=sum(len(turns) for turns in examples))


def _turn_message(turn: Turn, message_id: str | None = None) -> BaseMessage:
    if turn["role"] == "user":
        return HumanMessage(turn["content"], id=message_id)
    return AIMessage(turn["content"], id=message_id)


def is_icl_example(message: BaseMessage) -> bool:
    """Whether ``message`` is an ICL example turn (see :data:`ICL_ID_PREFIX`)."""
    return (message.id or "").startswith(ICL_ID_PREFIX)


def history_messages(history: Sequence[Turn]) -> list[BaseMessage]:
    """Earlier turns as chat messages, for the responder."""
    return [_turn_message(t) for t in history]


def history_text(history: Sequence[Turn]) -> str:
    """Earlier turns as text for a judge or rewriter prompt ("" for a single-turn query)."""
    return "\n\n".join(f"{t['role']}: {t['content']}" for t in history)


def conversation_block(history: Sequence[Turn]) -> str:
    """The earlier turns as a judge prompt shows them ("" for a single-turn query): the judge
    grades the reply to the last user turn in the light of what was said before."""
    if not history:
        return ""
    return (
        f"<earlier_turns>\n{history_text(history)}\n</earlier_turns>\n\n"
        "The query below is the user's latest message in this conversation: read it, and any answer "
        "to it, in the light of the earlier turns. A reply that ignores or contradicts what the user "
        "already said is worse.\n\n"
    )
