"""Getting a validated pydantic object out of any chat model.

Four methods (``DRPOConfig.structured_output_method``): ``json_schema`` and ``function_calling``
go through ``with_structured_output``; ``json_mode`` asks for a JSON object (``response_format``
``json_object``) with the schema in the prompt; ``text`` puts the schema in the prompt and parses
the reply with a tolerant parser that accepts fenced or embedded JSON. An invalid answer is sent
back with the error and re-asked, at most ``max_retries`` times, then :class:`StructuredOutputError`.

``auto`` (the default) discovers per model what its endpoint accepts and falls back from one
method to the next when the endpoint refuses one: see :mod:`drpo_agents.structured_methods`,
which also shapes the schemas sent to a provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ValidationError

from drpo_agents.config import StructuredOutputMethod
from drpo_agents.errors import ModelCallError, StructuredOutputError
from drpo_agents.infra.calls import CallPlan, ModelCall
from drpo_agents.json_types import JsonSchema
from drpo_agents.models.registry import is_openai_client
from drpo_agents.prompts import render_prompt
from drpo_agents.structured_methods import (
    FALLBACK_ORDER,
    METHOD_STEPS,
    MethodStep,
    StructuredMethods,
    first_step,
    is_method_rejection,
    method_label,
    next_step,
    provider_schema,
    structured_runnable,
)

__all__ = [
    "FALLBACK_ORDER",
    "METHOD_STEPS",
    "StructuredMethods",
    "StructuredResult",
    "extract_json",
    "is_method_rejection",
    "method_label",
    "parse_structured_text",
    "plan_structured",
    "provider_schema",
]

SchemaT = TypeVar("SchemaT", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The first JSON object in ``text``: fenced in a code block, bare, or embedded in prose.

    Raises:
        ValueError: if no JSON object can be found.
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        stripped = candidate.strip()
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
        start = stripped.find("{")
        while start != -1:
            try:
                value, _ = json.JSONDecoder().raw_decode(stripped[start:])
                return value
            except json.JSONDecodeError:
                start = stripped.find("{", start + 1)
    raise ValueError("no JSON object found in the model's reply")


def parse_structured_text(text: str, schema: type[SchemaT]) -> SchemaT:
    """Parse a model's free-text reply into ``schema`` (tolerant of fences and surrounding prose)."""
    return schema.model_validate(extract_json(text))


@dataclass
class StructuredResult(Generic[SchemaT]):
    """A validated object plus the raw messages it took to get it (for usage accounting), and the
    structured-output method that produced it."""

    value: SchemaT
    messages: list[AIMessage] = field(default_factory=list)
    method: str = ""


def _message_text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


def _prepared(
    model: BaseChatModel,
    schema: type[SchemaT],
    messages: Sequence[BaseMessage],
    step: MethodStep,
    prompts_dir: Path | None,
    wire: JsonSchema | None,
) -> tuple[Runnable[Any, Any], list[BaseMessage], bool]:
    """The runnable, the conversation and whether replies are plain messages (parsed here)."""
    as_text = step == "text" or (step == "json_mode" and is_openai_client(model))
    runnable: Runnable[Any, Any] = model if step == "text" else structured_runnable(model, schema, step, wire)
    conversation = list(messages)
    if step in ("text", "json_mode"):
        schema_json = json.dumps(schema.model_json_schema(), indent=1)
        conversation.append(
            HumanMessage(render_prompt("structured_output_format", prompts_dir, schema=schema_json))
        )
    return runnable, conversation, as_text


def plan_structured(
    model: BaseChatModel,
    schema: type[SchemaT],
    messages: Sequence[BaseMessage],
    *,
    method: StructuredOutputMethod = "auto",
    max_retries: int = 2,
    validate: Callable[[SchemaT], SchemaT] | None = None,
    config: RunnableConfig | None = None,
    prompts_dir: Path | None = None,
    methods: StructuredMethods | None = None,
    wire_schema: JsonSchema | None = None,
) -> CallPlan[StructuredResult[SchemaT]]:
    """Ask ``model`` for a ``schema`` object, re-asking with the error when the reply is invalid.

    A call plan (see :mod:`drpo_agents.infra.calls`): run it with ``run_plan`` or ``arun_plan``.

    Args:
        model: any LangChain chat model.
        schema: the pydantic class to produce.
        messages: the conversation to send.
        method: ``"auto"`` discovers the method (see the module docs); the other values force a
            method, and a request the endpoint rejects then fails.
        max_retries: re-asks after an invalid reply (a rejected method does not count).
        validate: extra check run on the parsed object; raise ``ValueError`` to reject it.
        config: forwarded to the model call (callbacks, tags, metadata).
        prompts_dir: optional template override folder.
        methods: the run's memory of working methods per model (``auto`` starts from it and
            records what it finds); None discovers afresh on every call.
        wire_schema: the JSON schema to send instead of :func:`provider_schema` of ``schema``,
            narrowed for this call (e.g. the aspect names a score must use, so a server that
            decodes under a grammar cannot invent others); replies are still validated with
            ``schema``.

    Raises:
        StructuredOutputError: when every attempt produced an invalid object.
    """
    step, (runnable, conversation, use_text) = _start(
        model, schema, messages, method, methods, prompts_dir, wire_schema
    )

    raw_messages: list[AIMessage] = []
    raw_outputs: list[str] = []
    errors: list[str] = []
    attempt = 0
    while attempt <= max_retries:
        try:
            output = yield ModelCall(runnable, conversation, config)
        except ModelCallError as exc:
            reply_text, error = _rejected(exc)
        except Exception as exc:
            following = next_step(step) if method == "auto" and is_method_rejection(exc) else None
            if following is None:
                raise
            # The endpoint refuses this mechanism: try the next one (not an attempt of the model's).
            step = following
            runnable, conversation, use_text = _prepared(
                model, schema, messages, step, prompts_dir, wire_schema
            )
            continue
        else:
            if method == "auto" and methods is not None:
                methods.remember(model, step)
            raw, parsed, parse_error = _reply_of(output, use_text)
            raw_messages.append(raw)
            reply_text = _message_text(raw) or json.dumps(_tool_args(raw))
            try:
                value = _validated(raw, parsed, parse_error, schema, validate)
                return StructuredResult(value=value, messages=raw_messages, method=method_label(model, step))
            except (ValidationError, ValueError) as exc:
                error = _describe_error(exc)
        attempt += 1
        errors.append(error)
        raw_outputs.append(reply_text)
        conversation = _reasked(conversation, reply_text, error, prompts_dir)
    raise StructuredOutputError(
        f"{schema.__name__}: no valid reply after {max_retries + 1} attempt(s); last error: {errors[-1]}",
        raw_outputs=raw_outputs,
        messages=raw_messages,
    )


def _start(
    model: BaseChatModel,
    schema: type[SchemaT],
    messages: Sequence[BaseMessage],
    method: StructuredOutputMethod,
    methods: StructuredMethods | None,
    prompts_dir: Path | None,
    wire_schema: JsonSchema | None,
) -> tuple[MethodStep, tuple[Runnable[Any, Any], list[BaseMessage], bool]]:
    """The first method to try and the request prepared for it (a model without tool calling
    falls back to text under ``auto``)."""
    step = first_step(model, method, methods)
    try:
        return step, _prepared(model, schema, messages, step, prompts_dir, wire_schema)
    except NotImplementedError:
        if method != "auto":
            raise
        return "text", _prepared(model, schema, messages, "text", prompts_dir, wire_schema)


def _reply_of(output: Any, use_text: bool) -> tuple[AIMessage, Any, BaseException | None]:
    """The reply message, the object the runnable parsed from it (None: parse its text) and the
    runnable's parse error."""
    if use_text:
        return (output if isinstance(output, AIMessage) else AIMessage(content=str(output))), None, None
    raw = output["raw"] if isinstance(output["raw"], AIMessage) else AIMessage(content="")
    return raw, output.get("parsed"), output.get("parsing_error")


def _validated(
    raw: AIMessage,
    parsed: Any,
    parse_error: BaseException | None,
    schema: type[SchemaT],
    validate: Callable[[SchemaT], SchemaT] | None,
) -> SchemaT:
    """The reply as a valid ``schema`` object.

    Raises:
        ValidationError, ValueError: the reply is not one.
    """
    if parsed is None:
        # Tool-less reply or a failed tool parse: fall back to the text of the reply.
        text = _message_text(raw)
        if not text.strip() and parse_error is not None:
            raise ValueError(str(parse_error))
        parsed = parse_structured_text(text, schema)
    elif not isinstance(parsed, schema):
        parsed = schema.model_validate(parsed)
    return validate(parsed) if validate else parsed


def _reasked(
    conversation: Sequence[BaseMessage], reply_text: str, error: str, prompts_dir: Path | None
) -> list[BaseMessage]:
    """The conversation with the invalid reply and a turn that says what was wrong with it."""
    return [
        *conversation,
        *([AIMessage(content=reply_text)] if reply_text else []),
        HumanMessage(render_prompt("structured_output_retry", prompts_dir, error=error)),
    ]


def _rejected(exc: ModelCallError) -> tuple[str, str]:
    """The reply's text and the error when the provider's client rejected the reply itself
    (langchain-openai's json_schema method parses with openai's ``parse``): an invalid reply like
    any other, so it is re-asked. Its text survives only for invalid JSON.

    Raises:
        ModelCallError: ``exc`` itself when it is not such a rejection.
    """
    if not isinstance(exc.__cause__, ValidationError):
        raise exc
    return _rejected_text(exc.__cause__), _describe_error(exc.__cause__)


def _rejected_text(exc: ValidationError) -> str:
    """The reply text a client-side validation error still holds (the whole reply when it was not JSON)."""
    details = exc.errors()
    value = details[0].get("input") if details else None
    return value if details and details[0]["type"] == "json_invalid" and isinstance(value, str) else ""


def _tool_args(message: AIMessage) -> Any:
    return [call.get("args") for call in message.tool_calls]


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:5]]
        return "; ".join(parts)
    return str(exc)
