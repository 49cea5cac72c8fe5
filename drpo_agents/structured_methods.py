"""Structured-output methods: which one a model's endpoint accepts, provider schemas, runnables.

``auto`` discovers what an OpenAI-compatible endpoint accepts: it starts with ``json_schema`` and,
when the server rejects the request *because of* ``response_format`` or ``tools`` (llama.cpp's
server answers ``json_schema`` with HTTP 500, Ollama rejects tools for some models), falls back
``json_schema -> function_calling -> json_mode -> text`` and remembers the working method per model
in a :class:`StructuredMethods` for the rest of the run. Other models keep their provider's own
structured output (tool calling) when they implement ``bind_tools``, else the text path.

Schemas sent to a provider carry no length or item-count limits (:func:`provider_schema`):
servers that compile a schema into a grammar (llama.cpp, Ollama) explode on long ``maxLength``
caps. The pydantic schema still validates every reply, and an over-long reply is re-asked.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel
from typing_extensions import TypedDict

from drpo_agents.config import StructuredOutputMethod
from drpo_agents.json_types import JsonObject, JsonSchema
from drpo_agents.models.registry import custom_openai_endpoint, is_openai_client, model_identity

# What ``auto`` tries on an OpenAI-compatible endpoint, in order, moving on when one is rejected.
FALLBACK_ORDER: tuple[StructuredOutputMethod, ...] = ("json_schema", "function_calling", "json_mode", "text")
# A step of the resolution: a method, or "provider" (the model's own with_structured_output default).
MethodStep = Literal["provider", "json_schema", "function_calling", "json_mode", "text"]
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


def _small_int_range(node: JsonSchema) -> list[int] | None:
    low, high = node.get("minimum"), node.get("maximum")
    if node.get("type") != "integer" or not isinstance(low, int) or not isinstance(high, int):
        return None
    return list(range(low, high + 1)) if 0 <= high - low <= _ENUM_RANGE else None


def provider_schema(schema: type[BaseModel]) -> JsonSchema:
    """``schema``'s JSON schema as sent to a provider, shaped for grammar-constrained decoding.

    References are inlined; string length caps go (llama.cpp's grammar compiler turns
    ``maxLength: 2000`` into thousands of rules and dies), and so do large minimum lengths and
    item caps; small integer ranges become enums. Required fields, types and enums stay, and
    replies are still validated against the pydantic schema itself.
    """
    return copy.deepcopy(_shaped_schema(schema))  # callers narrow their copy (judge.scoring_schema)


# Building a JSON schema from a pydantic class takes milliseconds; the judge sends one per score.
@functools.lru_cache(maxsize=64)
def _shaped_schema(schema: type[BaseModel]) -> JsonSchema:
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


def structured_runnable(
    model: BaseChatModel, schema: type[BaseModel], step: MethodStep, wire: JsonSchema | None
) -> Runnable[Any, Any]:
    """``model`` bound to produce ``schema`` by ``step`` (sending ``wire`` if given), cached."""
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
    model: BaseChatModel, schema: type[BaseModel], step: MethodStep, wire: JsonSchema | None
) -> Runnable[Any, Any]:
    sent = wire if wire is not None else provider_schema(schema)
    if step == "json_mode" and is_openai_client(model):
        # Our own json_mode: langchain-openai's sends no schema at all. llama.cpp's server also
        # reads a "schema" beside "json_object" and forces schema-valid JSON with it.
        response_format: JsonObject = {"type": "json_object"}
        if custom_openai_endpoint(model):
            response_format["schema"] = sent
        return model.bind(response_format=response_format)
    # A model that caps a schema itself (the in-process llama.cpp model) gets the pydantic
    # class with its limits; every other model gets the schema without them.
    target: JsonSchema | type[BaseModel] = schema if getattr(model, "caps_structured_schema", False) else sent
    if step in ("provider", "function_calling") and _default_structured_output(model):
        return ToolCallStructured.of(model, target)
    kwargs: dict[str, Any] = {"include_raw": True}
    if step != "provider":
        kwargs["method"] = step
    return model.with_structured_output(target, **kwargs)


def _default_structured_output(model: BaseChatModel) -> bool:
    """Whether ``model`` keeps LangChain's own ``with_structured_output`` (forced tool calling)."""
    return type(model).with_structured_output is BaseChatModel.with_structured_output and _supports_tools(
        model
    )


class StructuredReply(TypedDict):
    """What ``with_structured_output(schema, include_raw=True)`` returns."""

    raw: Any  # the model's message
    parsed: Any  # the schema's instance (or tool arguments); None when parsing failed
    parsing_error: Exception | None


class ToolCallStructured(Runnable[Any, StructuredReply]):
    """``with_structured_output(schema, include_raw=True)`` of a model that keeps LangChain's
    default (forced tool calling), without its five nested runnables.

    The same request and the same ``{"raw", "parsed", "parsing_error"}`` reply, but only the
    model's own run reaches callbacks, and the reply is parsed here instead of in three executor
    hops: LangChain's chain of runnables cost more CPU per call than the rest of a call's path.
    """

    def __init__(self, bound: Runnable[Any, Any], parser: Any) -> None:
        self.bound = bound
        self.parser = parser

    @classmethod
    def of(cls, model: BaseChatModel, schema: JsonSchema | type[BaseModel]) -> ToolCallStructured:
        """``model`` forced to call the tool ``schema``, as ``with_structured_output`` binds it."""
        from langchain_core.output_parsers.openai_tools import (
            JsonOutputKeyToolsParser,
            PydanticToolsParser,
        )
        from langchain_core.utils.function_calling import convert_to_openai_tool

        bound = model.bind_tools(
            [schema],
            tool_choice="any",
            ls_structured_output_format={"kwargs": {"method": "function_calling"}, "schema": schema},
        )
        parser: Any
        if isinstance(schema, type):
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
        else:
            parser = JsonOutputKeyToolsParser(
                key_name=convert_to_openai_tool(schema)["function"]["name"], first_tool_only=True
            )
        return cls(bound, parser)

    def _parsed(self, raw: Any) -> StructuredReply:
        from langchain_core.outputs import ChatGeneration

        try:
            return {
                "raw": raw,
                "parsed": self.parser.parse_result([ChatGeneration(message=raw)]),
                "parsing_error": None,
            }
        except Exception as exc:  # as with_structured_output's fallback: the error is returned
            return {"raw": raw, "parsed": None, "parsing_error": exc}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> StructuredReply:
        return self._parsed(self.bound.invoke(input, config, **kwargs))

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> StructuredReply:
        return self._parsed(await self.bound.ainvoke(input, config, **kwargs))


def _supports_tools(model: BaseChatModel) -> bool:
    return type(model).bind_tools is not BaseChatModel.bind_tools


def first_step(
    model: BaseChatModel, method: StructuredOutputMethod, methods: StructuredMethods | None
) -> MethodStep:
    """The step a request starts with: the forced method, the one remembered for ``model``, or
    the first guess for its kind of endpoint."""
    if method != "auto":
        return method
    known = methods.get(model) if methods is not None else None
    if known == "provider" or known in METHOD_STEPS:
        return cast(MethodStep, known)
    if is_openai_client(model):
        return "json_schema"
    return "provider" if _supports_tools(model) else "text"


def next_step(step: MethodStep) -> MethodStep | None:
    """The step to try after the endpoint refused ``step`` (None when none is left)."""
    order: tuple[str, ...] = FALLBACK_ORDER
    position = order.index(step) if step in order else order.index("function_calling")
    return cast(MethodStep, order[position + 1]) if position + 1 < len(order) else None
