"""Test doubles for models only: scripted chat models whose output is a function of their input."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
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


ToolScript = Callable[[list[BaseMessage], dict[str, Any]], AIMessage]


class ToolCallingChatModel(BaseChatModel):
    """A provider-like chat model: ``bind_tools`` binds OpenAI-format tools as call arguments (as
    real providers do), the reply is ``script(messages, call_kwargs)``, and streaming yields the
    reply word by word. Every call's messages and arguments are appended to ``calls``."""

    script: ToolScript
    calls: list[tuple[list[BaseMessage], dict[str, Any]]]
    model_name: str = "tool-tester"

    @property
    def _llm_type(self) -> str:
        return "tool-calling-test-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.calls.append((list(messages), dict(kwargs)))
        reply = self.script(list(messages), kwargs)
        reply.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        reply.response_metadata = {"model_name": "tool-tester"}
        return reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages, kwargs)
        words = re.findall(r"\S+\s*", str(reply.content))
        for word in words:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        if reply.tool_calls:
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                        for i, c in enumerate(reply.tool_calls)
                    ],
                )
            )
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata=reply.usage_metadata, response_metadata=reply.response_metadata
            )
        )


def tool_calling(script: ToolScript) -> ToolCallingChatModel:
    return ToolCallingChatModel(script=script, calls=[])
