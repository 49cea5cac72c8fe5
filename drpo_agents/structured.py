"""Getting a validated pydantic object out of any chat model.

Four methods (``DRPOConfig.structured_output_method``): ``json_schema`` and ``function_calling``
go through ``with_structured_output``; ``json_mode`` asks for a JSON object (``response_format``
``json_object``) with the schema in the prompt; ``text`` puts the schema in the prompt and parses
the reply with a tolerant parser that accepts fenced or embedded JSON. An invalid answer is sent
back with the error and re-asked, up to ``max_retries`` times; after that a
:class:`StructuredOutputError` says what went wrong.

``auto`` discovers what an OpenAI-compatible endpoint accepts: it starts with ``json_schema`` and,
when the server rejects the request *because of* ``response_format`` or ``tools`` (llama.cpp's
server answers ``json_schema`` with HTTP 500, Ollama rejects tools for some models), falls back
``json_schema -> function_calling -> json_mode -> text`` and remembers the working method per model
in a :class:`StructuredMethods` for the rest of the run. Other models keep their provider's own
structured output (tool calling) when they implement ``bind_tools``, else the text path.

Schemas sent to a provider carry no length or item-count limits (:func:`provider_schema`):
servers that compile a schema into a grammar (llama.cpp, Ollama) explode on long ``maxLength``
caps. The pydantic schema still validates every reply here, and an over-long reply is re-asked.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast, get_args

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ValidationError

from drpo_agents.calls import CallPlan, ModelCall
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.errors import ModelCallError, StructuredOutputError
from drpo_agents.models.registry import custom_openai_endpoint, is_openai_client, model_identity
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
    """A validated object plus the raw messages it took to get it (for usage accounting), and the
    structured-output method that produced it."""

    value: SchemaT
    messages: list[AIMessage] = field(default_factory=list)
    method: str = ""


# What ``auto`` tries on an OpenAI-compatible endpoint, in order, moving on when one is rejected.
FALLBACK_ORDER: tuple[StructuredOutputMethod, ...] = ("json_schema", "function_calling", "json_mode", "text")
# A step of the resolution: a method, or "provider" (the model's own with_structured_output default).
_Step = Literal["provider", "json_schema", "function_calling", "json_mode", "text"]
_METHODS = frozenset(get_args(StructuredOutputMethod))
# The method names a run records and can start from again (everything but "auto").
METHOD_STEPS = frozenset(_METHODS - {"auto"})


class StructuredMethods:
    """The structured-output method each model's endpoint accepted, for one run (``auto``).

    Keyed by :func:`~drpo_agents.models.registry.model_identity` (provider, model name and base
    URL), so a judge and a rewriter served by the same endpoint discover it once. One object per
    graph: create it where the agents are built and pass it to them; nothing is process-global.
    Thread-safe (sync graph runs call models from worker threads).
    """

    def __init__(self, known: Mapping[str, str] | None = None) -> None:
        self._by_model: dict[str, str] = dict(known or {})
        self._lock = threading.Lock()

    def get(self, model: BaseChatModel) -> str | None:
        """The method remembered for ``model`` (a method name or ``"provider"``), if any."""
        with self._lock:
            return self._by_model.get(model_identity(model))

    def remember(self, model: BaseChatModel, method: str) -> None:
        """Record that ``model``'s endpoint accepted ``method``."""
        with self._lock:
            self._by_model[model_identity(model)] = method

    def label(self, model: BaseChatModel) -> str | None:
        """What the artifact shows for ``model``: the method name (see :func:`method_label`)."""
        step = self.get(model)
        return method_label(model, step) if step else None

    def as_dict(self) -> dict[str, str]:
        """Model identity -> method, a copy."""
        with self._lock:
            return dict(self._by_model)


def method_label(model: BaseChatModel, step: str) -> str:
    """The method name for a resolution step: ``"provider"`` is tool calling for models that keep
    LangChain's default ``with_structured_output``, else the provider's own default."""
    if step != "provider":
        return step
    default = type(model).with_structured_output is BaseChatModel.with_structured_output
    return "function_calling" if default else "provider_default"


# Grammar compilers (llama.cpp's, Ollama's) turn a length cap into one rule per allowed
# character: string caps go, and minimum lengths and item caps above this stay out (a
# minLength of 1 stays: it keeps a weak model from an empty prompt). Our validation enforces all.
_GRAMMAR_SMALL = 16
# An integer range this small is sent as an enum too: llama.cpp's server ignores minimum/maximum
# (measured: scores of 9, 25 and 125 for a 1-5 field) but decodes an enum exactly.
_ENUM_RANGE = 10


def _small_int_range(node: dict[str, Any]) -> list[int] | None:
    low, high = node.get("minimum"), node.get("maximum")
    if node.get("type") != "integer" or not isinstance(low, int) or not isinstance(high, int):
        return None
    return list(range(low, high + 1)) if 0 <= high - low <= _ENUM_RANGE else None


def provider_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """``schema``'s JSON schema as sent to a provider, shaped for grammar-constrained decoding.

    References are inlined; string length caps go (llama.cpp's grammar compiler turns
    ``maxLength: 2000`` into thousands of rules and dies), and so do large minimum lengths and
    item caps; small integer ranges become enums. Required fields, types and enums stay, and
    replies are still validated against the pydantic schema itself.
    """
    from langchain_core.utils.json_schema import dereference_refs

    result = copy.deepcopy(dereference_refs(schema.model_json_schema()))
    result.pop("$defs", None)

    def shape(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("maxLength", None)
            for key in ("minLength", "maxItems"):
                if node.get(key, 0) > _GRAMMAR_SMALL:
                    node.pop(key)
            if "enum" not in node and (values := _small_int_range(node)) is not None:
                node["enum"] = values
            for value in node.values():
                shape(value)
        elif isinstance(node, list):
            for value in node:
                shape(value)

    shape(result)
    return result


_REJECTED_FEATURE = re.compile(r"response_format|json_schema|json_object|tool[_ ]?choice|\btools?\b", re.I)


def is_method_rejection(exc: BaseException) -> bool:
    """Whether ``exc`` is an endpoint refusing the *structured-output mechanism* of a request
    (HTTP 400, 422, 500 or 501 whose error names ``response_format``, ``json_schema``, ``tools``
    or ``tool_choice``), as opposed to an outage, a bad key or a bad reply."""
    import openai

    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422, 500, 501):
        return False
    # The openai client's message holds the server's error (llama.cpp's names the field:
    # "('body', 'response_format', 'type')"; Ollama's says "does not support tools").
    return bool(_REJECTED_FEATURE.search(exc.message))


# with_structured_output converts the schema to a tool on every call (~7 ms): build it once per
# (model, schema, method). The model is kept in the value so its id stays valid while cached.
_STRUCTURED: dict[tuple[int, type[BaseModel], str, str], tuple[BaseChatModel, Runnable[Any, Any]]] = {}
_STRUCTURED_MAX = 256
_STRUCTURED_LOCK = threading.Lock()


def _structured_runnable(
    model: BaseChatModel, schema: type[BaseModel], step: _Step, wire: dict[str, Any] | None
) -> Runnable[Any, Any]:
    key = (id(model), schema, step, json.dumps(wire, sort_keys=True) if wire else "")
    with _STRUCTURED_LOCK:
        cached = _STRUCTURED.get(key)
    if cached is not None and cached[0] is model:
        return cached[1]
    runnable = _build_runnable(model, schema, step, wire)
    with _STRUCTURED_LOCK:
        if len(_STRUCTURED) >= _STRUCTURED_MAX:
            _STRUCTURED.pop(next(iter(_STRUCTURED)))
        _STRUCTURED[key] = (model, runnable)
    return runnable


def _build_runnable(
    model: BaseChatModel, schema: type[BaseModel], step: _Step, wire: dict[str, Any] | None
) -> Runnable[Any, Any]:
    sent = wire if wire is not None else provider_schema(schema)
    if step == "json_mode" and is_openai_client(model):
        # Our own json_mode: langchain-openai's sends no schema at all. llama.cpp's server also
        # reads a "schema" beside "json_object" and forces schema-valid JSON with it.
        response_format: dict[str, Any] = {"type": "json_object"}
        if custom_openai_endpoint(model):
            response_format["schema"] = sent
        return model.bind(response_format=response_format)
    # A model that caps a schema itself (the in-process llama.cpp model) gets the pydantic
    # class with its limits; every other model gets the schema without them.
    target: dict[str, Any] | type[BaseModel] = (
        schema if getattr(model, "caps_structured_schema", False) else sent
    )
    kwargs: dict[str, Any] = {"include_raw": True}
    if step != "provider":
        kwargs["method"] = step
    return model.with_structured_output(target, **kwargs)


def _supports_tools(model: BaseChatModel) -> bool:
    return type(model).bind_tools is not BaseChatModel.bind_tools


def _message_text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


def _first_step(
    model: BaseChatModel, method: StructuredOutputMethod, methods: StructuredMethods | None
) -> _Step:
    if method != "auto":
        return method
    known = methods.get(model) if methods is not None else None
    if known == "provider" or known in METHOD_STEPS:
        return cast(_Step, known)
    if is_openai_client(model):
        return "json_schema"
    return "provider" if _supports_tools(model) else "text"


def _next_step(step: _Step) -> _Step | None:
    order: tuple[str, ...] = FALLBACK_ORDER
    position = order.index(step) if step in order else order.index("function_calling")
    return cast(_Step, order[position + 1]) if position + 1 < len(order) else None


def _prepared(
    model: BaseChatModel,
    schema: type[SchemaT],
    messages: Sequence[BaseMessage],
    step: _Step,
    prompts_dir: Path | None,
    wire: dict[str, Any] | None,
) -> tuple[Runnable[Any, Any], list[BaseMessage], bool]:
    """The runnable, the conversation and whether replies are plain messages (parsed here)."""
    as_text = step == "text" or (step == "json_mode" and is_openai_client(model))
    runnable: Runnable[Any, Any] = (
        model if step == "text" else _structured_runnable(model, schema, step, wire)
    )
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
    wire_schema: dict[str, Any] | None = None,
) -> CallPlan[StructuredResult[SchemaT]]:
    """Ask ``model`` for a ``schema`` object, re-asking with the error when the reply is invalid.

    A call plan (see :mod:`drpo_agents.calls`): run it with ``run_plan`` or ``arun_plan``.

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
    step = _first_step(model, method, methods)
    try:
        runnable, conversation, use_text = _prepared(model, schema, messages, step, prompts_dir, wire_schema)
    except NotImplementedError:
        if method != "auto":
            raise
        step = "text"  # the model has no tool calling after all
        runnable, conversation, use_text = _prepared(model, schema, messages, step, prompts_dir, wire_schema)

    raw_messages: list[AIMessage] = []
    raw_outputs: list[str] = []
    errors: list[str] = []
    attempt = 0
    while attempt <= max_retries:
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
        except Exception as exc:
            following = _next_step(step) if method == "auto" and is_method_rejection(exc) else None
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
                return StructuredResult(value=value, messages=raw_messages, method=method_label(model, step))
            except (ValidationError, ValueError) as exc:
                error = _describe_error(exc)
        attempt += 1
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
