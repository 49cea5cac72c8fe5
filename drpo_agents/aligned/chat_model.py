"""A chat model that runs another one under an alignment artifact."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableLambda
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field

from drpo_agents.aligned.messages import AlignmentApplier
from drpo_agents.errors import ConfigError


class AlignedChatModel(BaseChatModel):
    """``inner`` under an alignment: every request gets the optimized system prompt and the
    relevant ICL examples (see :class:`AlignmentApplier`), and is then ``inner``'s own call.

    It is a ``BaseChatModel``, so it goes wherever LangChain takes a chat model: LCEL, a
    LangGraph node, ``create_react_agent`` / ``create_agent`` with tools. ``bind_tools`` binds
    the tools the way ``inner`` does (its provider's tool format) and keeps the alignment;
    ``with_structured_output`` supports every method ``inner`` supports. Calls, tokens and
    streaming are ``inner``'s: one model run per call, whose recorded input is the aligned
    request, with ``inner``'s provider and model name (LangSmith cost tracking) and its cache,
    rate limiter, callbacks, tags and metadata. Build it with :func:`drpo_agents.with_alignment`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel = Field(..., description="The chat model being aligned.")
    applier: AlignmentApplier = Field(..., exclude=True, description="Builds the aligned request.")
    alignment_id: str = Field("", description="Which artifact and prompt (run id and candidate id).")

    @property
    def _llm_type(self) -> str:
        return f"drpo-aligned:{self.inner._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Part of the LLM cache key: the same inner model under another alignment is another model.
        return {**self.inner._identifying_params, "drpo_alignment": self.alignment_id}

    @property
    def model_name(self) -> str | None:
        """The inner model's name (agents read it, e.g. to choose a structured-output strategy)."""
        name = getattr(self.inner, "model_name", None) or getattr(self.inner, "model", None)
        return name if isinstance(name, str) else None

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.inner._get_ls_params(stop=stop, **kwargs)

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        return {**self.inner._get_invocation_params(stop=stop, **kwargs), "_type": self._llm_type}

    def _convert_input(self, model_input: LanguageModelInput) -> PromptValue:
        # Every public entry point (invoke, stream, batch, events) converts its input here, before
        # the run starts: the trace records the aligned request, as the provider receives it.
        state: object = model_input
        if isinstance(state, Mapping) and isinstance(state.get("messages"), Sequence):
            model_input = list(state["messages"])  # a graph state, as earlier versions accepted
        return ChatPromptValue(messages=self.applier.apply(super()._convert_input(model_input).to_messages()))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self.inner._generate
        if _takes_run_manager(call):
            kwargs["run_manager"] = run_manager
        return call(self.applier.apply(messages), stop=stop, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self.inner._agenerate
        if _takes_run_manager(call):
            kwargs["run_manager"] = run_manager
        return await call(self.applier.apply(messages), stop=stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self.inner._stream(
            self.applier.apply(messages), stop=stop, run_manager=run_manager, **kwargs
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self.inner._astream(
            self.applier.apply(messages), stop=stop, run_manager=run_manager, **kwargs
        ):
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind ``tools`` as the inner model does; the alignment still applies to every call."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self._rebind(self.inner.bind_tools(tools, **kwargs), "bind_tools")

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """The inner model's structured output (any method it supports) on the aligned request."""
        structured = self.inner.with_structured_output(schema, include_raw=include_raw, **kwargs)
        align = RunnableLambda(self._aligned_request, name="drpo_apply_alignment")
        return (align | structured).with_config(
            run_name="drpo_aligned_structured_output",
            tags=list(self.tags or []),
            metadata=dict(self.metadata or {}),
        )

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        return self.inner.get_num_tokens_from_messages(messages, tools)

    def _aligned_request(self, value: LanguageModelInput) -> list[BaseMessage]:
        return self._convert_input(value).to_messages()

    def _rebind(self, bound: Runnable[Any, Any], method: str) -> Runnable[LanguageModelInput, AIMessage]:
        """The aligned twin of what ``inner.<method>`` returned: its bound arguments on this model."""
        if isinstance(bound, RunnableBinding) and bound.bound is self.inner:
            rebound = self.bind(**bound.kwargs)
            return rebound.with_config(bound.config) if bound.config else rebound
        if isinstance(bound, BaseChatModel):  # a model that binds by returning a new model
            return self.model_copy(update={"inner": bound})
        raise ConfigError(
            f"{type(self.inner).__name__}.{method} returned a {type(bound).__name__}, which an aligned "
            "model cannot wrap; align the result yourself with with_alignment(...)"
        )


def _takes_run_manager(method: Callable[..., Any]) -> bool:
    return "run_manager" in inspect.signature(method).parameters
