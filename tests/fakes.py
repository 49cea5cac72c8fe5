"""Test doubles for models only: scripted chat models whose output is a function of their input."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

Reply = dict[str, Any] | str


class ScriptedChatModel(BaseChatModel):
    """Answers with ``script(messages)``: a dict becomes a tool call when a tool is bound
    (else JSON text), a string is plain text. Every call is appended to ``calls``."""

    script: Callable[[list[BaseMessage]], Reply]
    calls: list[list[BaseMessage]]
    tools_supported: bool = True
    bound_tool: str | None = None
    stops: list[list[str] | None]

    @property
    def _llm_type(self) -> str:
        return "scripted-test-model"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        if not self.tools_supported:
            raise NotImplementedError
        return self.model_copy(update={"bound_tool": convert_to_openai_tool(tools[0])["function"]["name"]})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        self.stops.append(stop)
        reply = self.script(list(messages))
        if isinstance(reply, dict) and self.bound_tool:
            message = AIMessage(
                content="", tool_calls=[{"name": self.bound_tool, "args": reply, "id": "call_1"}]
            )
        else:
            message = AIMessage(content=json.dumps(reply) if isinstance(reply, dict) else reply)
        message.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=message)])


def scripted(script: Callable[[list[BaseMessage]], Reply], *, tools: bool = True) -> ScriptedChatModel:
    return ScriptedChatModel(script=script, calls=[], tools_supported=tools, stops=[])


def last_human(messages: Sequence[BaseMessage]) -> str:
    return next(str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage))


def tag(text: str, name: str) -> str:
    match = re.search(rf"<{name}>\s*(.*?)\s*</{name}>", text, re.DOTALL)
    assert match, f"<{name}> missing from prompt"
    return match.group(1)
