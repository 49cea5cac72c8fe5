"""Getting a validated pydantic object out of any chat model.

Models with tool calling or JSON-schema support go through ``with_structured_output``; models
without it (NotImplementedError) get the JSON schema in the prompt and a tolerant parser that
accepts fenced or embedded JSON. An invalid answer is sent back with the error and re-asked,
up to ``max_retries`` times; after that a :class:`StructuredOutputError` says what went wrong.
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

from drpo_agents.calls import CallPlan, ModelCall
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.errors import ModelCallError, StructuredOutputError
from drpo_agents.prompts import render_prompt

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
    """A validated object plus the raw messages it took to get it (for usage accounting)."""

    value: SchemaT
    messages: list[AIMessage] = field(default_factory=list)


# with_structured_output converts the schema to a tool on every call (~7 ms): build it once per
# (model, schema, method). The model is kept in the value so its id stays valid while cached.
_STRUCTURED: dict[tuple[int, type[BaseModel], str], tuple[BaseChatModel, Runnable[Any, Any]]] = {}
_STRUCTURED_MAX = 256


def _structured_runnable(
    model: BaseChatModel, schema: type[BaseModel], kwargs: dict[str, Any]
) -> Runnable[Any, Any]:
    key = (id(model), schema, str(sorted(kwargs.items())))
    cached = _STRUCTURED.get(key)
    if cached is not None and cached[0] is model:
        return cached[1]
    runnable = model.with_structured_output(schema, **kwargs)
    if len(_STRUCTURED) >= _STRUCTURED_MAX:
        _STRUCTURED.pop(next(iter(_STRUCTURED)))
    _STRUCTURED[key] = (model, runnable)
    return runnable


def _supports_tools(model: BaseChatModel) -> bool:
    return type(model).bind_tools is not BaseChatModel.bind_tools


def _message_text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


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
) -> CallPlan[StructuredResult[SchemaT]]:
    """Ask ``model`` for a ``schema`` object, re-asking with the error when the reply is invalid.

    A call plan (see :mod:`drpo_agents.calls`): run it with ``run_plan`` or ``arun_plan``.

    Args:
        model: any LangChain chat model.
        schema: the pydantic class to produce.
        messages: the conversation to send.
        method: ``"auto"`` uses tool calling when the model implements it, else the text path;
            the other values force a ``with_structured_output`` method or the ``"text"`` path.
        max_retries: re-asks after an invalid reply.
        validate: extra check run on the parsed object; raise ``ValueError`` to reject it.
        config: forwarded to the model call (callbacks, tags, metadata).
        prompts_dir: optional template override folder.

    Raises:
        StructuredOutputError: when every attempt produced an invalid object.
    """
    use_text = method == "text" or (method == "auto" and not _supports_tools(model))
    runnable: Runnable[Any, Any] = model
    if not use_text:
        kwargs: dict[str, Any] = {"include_raw": True}
        if method != "auto":
            kwargs["method"] = method
        try:
            runnable = _structured_runnable(model, schema, kwargs)
        except NotImplementedError:
            if method != "auto":
                raise
            use_text = True  # the model has no tool calling after all
    conversation = list(messages)
    if use_text:
        schema_json = json.dumps(schema.model_json_schema(), indent=1)
        conversation.append(
            HumanMessage(render_prompt("structured_output_format", prompts_dir, schema=schema_json))
        )

    raw_messages: list[AIMessage] = []
    raw_outputs: list[str] = []
    errors: list[str] = []
    for _attempt in range(max_retries + 1):
        try:
            output = yield ModelCall(runnable, conversation, config)
        except ModelCallError as exc:
            # The provider's client validated the reply against the schema itself and rejected it
            # (langchain-openai's json_schema method parses with openai's `parse`): an invalid reply
            # like any other, so it is re-asked. The reply's text survives only for invalid JSON.
            if not isinstance(exc.__cause__, ValidationError):
                raise
            reply_text = _rejected_text(exc.__cause__)
            error = _describe_error(exc.__cause__)
        else:
            if use_text:
                raw = output if isinstance(output, AIMessage) else AIMessage(content=str(output))
                parsed: Any = None
                parse_error: BaseException | None = None
            else:
                raw = output["raw"] if isinstance(output["raw"], AIMessage) else AIMessage(content="")
                parsed = output.get("parsed")
                parse_error = output.get("parsing_error")
            raw_messages.append(raw)
            reply_text = _message_text(raw) or json.dumps(_tool_args(raw))
            try:
                if parsed is None:
                    # Tool-less reply or a failed tool parse: fall back to the text of the reply.
                    text = _message_text(raw)
                    if not text.strip() and parse_error is not None:
                        raise ValueError(str(parse_error))
                    parsed = parse_structured_text(text, schema)
                elif not isinstance(parsed, schema):
                    parsed = schema.model_validate(parsed)
                value = validate(parsed) if validate else parsed
                return StructuredResult(value=value, messages=raw_messages)
            except (ValidationError, ValueError) as exc:
                error = _describe_error(exc)
        errors.append(error)
        raw_outputs.append(reply_text)
        conversation = [
            *conversation,
            *([AIMessage(content=reply_text)] if reply_text else []),
            HumanMessage(render_prompt("structured_output_retry", prompts_dir, error=error)),
        ]
    raise StructuredOutputError(
        f"{schema.__name__}: no valid reply after {max_retries + 1} attempt(s); last error: {errors[-1]}",
        raw_outputs=raw_outputs,
        messages=raw_messages,
    )


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
