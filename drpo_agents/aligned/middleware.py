"""The agent-native hooks: alignment for an agent that keeps its own, unaligned model object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda

from drpo_agents.aligned.messages import AlignmentApplier


class AlignmentMiddleware(AgentMiddleware):
    """``langchain.agents.create_agent`` middleware that aligns every model call of the agent.

    Use it when the agent keeps its own model (``create_agent(llm, tools, middleware=[...])``);
    passing ``with_alignment(llm, artifact)`` as the model does the same. The request's system
    prompt follows the optimized one, and the relevant ICL examples are placed before the
    conversation. Build it with :func:`drpo_agents.aligned.alignment_middleware`.
    """

    def __init__(self, applier: AlignmentApplier) -> None:
        super().__init__()
        self.applier = applier

    @property
    def name(self) -> str:
        return "DRPOAlignment"

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage:
        return handler(self._aligned(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse | AIMessage:
        return await handler(self._aligned(request))

    def _aligned(self, request: ModelRequest) -> ModelRequest:
        own = [request.system_message] if request.system_message is not None else []
        system, *rest = self.applier.apply([*own, *request.messages])
        assert isinstance(system, SystemMessage)
        return request.override(system_message=system, messages=cast(list[AnyMessage], rest))


def alignment_prompt_runnable(
    applier: AlignmentApplier, system_prompt: str | None = None
) -> Runnable[Any, list[BaseMessage]]:
    """A ``prompt=`` for ``langgraph.prebuilt.create_react_agent``: the agent state's messages
    after the app's ``system_prompt`` (if any), aligned (see :func:`drpo_agents.aligned.alignment_prompt`)."""
    own: list[BaseMessage] = [SystemMessage(system_prompt)] if system_prompt else []

    def prompt(state: Any) -> list[BaseMessage]:
        messages = (
            state.get("messages", []) if isinstance(state, Mapping) else getattr(state, "messages", state)
        )
        return applier.apply([*own, *messages])

    return RunnableLambda(prompt, name="drpo_apply_alignment")
