"""Plumbing shared by the sandbox roles: a seeded, tool-calling chat model and request parsing."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Self

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from drpo_agents.errors import ConfigError
from drpo_agents.json_types import JsonObject, JsonSchema
from drpo_agents.prompts import approx_tokens, render_prompt


class SandboxChatModel(BaseChatModel):
    """Common parts: seeded, tool-calling capable, reports token usage like a real provider."""

    seed: int = 0
    bound_tool: str | None = Field(None, description="Name of the tool bound for structured output.")
    tool_forced: bool = Field(False, description="The bound tool must be called (structured output).")
    response_schema: JsonSchema | None = Field(
        None, description="JSON schema of the requested reply (a bound tool's parameters, or a JSON mode's)."
    )

    @property
    def _llm_type(self) -> str:
        return "drpo-sandbox"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Knobs appear only when changed, so the exact models keep their identity and cache keys.
        return {"role": self.role_name, "seed": self.seed, **self.knobs()}

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """The role-specific settings of this class (its fields beyond the seed), in field order."""
        common = set(SandboxChatModel.model_fields)
        return tuple(name for name in cls.model_fields if name not in common)

    def knobs(self) -> dict[str, object]:
        """This model's knobs that differ from their defaults (empty for the default model)."""
        fields = type(self).model_fields
        return {
            name: getattr(self, name)
            for name in self.knob_names()
            if getattr(self, name) != fields[name].default
        }

    @property
    def role_name(self) -> str:
        raise NotImplementedError

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        function = convert_to_openai_tool(tools[0])["function"] if tools else {}
        return self.model_copy(
            update={
                "bound_tool": function.get("name"),
                "response_schema": function.get("parameters"),
                "tool_forced": tool_choice not in (None, "auto", "none"),
            }
        )

    def with_response_schema(self, schema: JsonSchema | None) -> Self:
        """This model answering requests whose reply must follow ``schema`` (JSON mode, no tool):
        how an OpenAI-compatible server passes on a ``response_format`` schema."""
        return self.model_copy(update={"response_schema": schema})

    def _reply(self, messages: list[BaseMessage]) -> JsonObject | str:
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._reply(messages)
        if self.tool_forced and not isinstance(reply, dict):
            # A text reply where a tool call was required would parse as None, silently.
            raise ConfigError(
                f"the sandbox {self.role_name} cannot fill the {self.bound_tool!r} schema: it answers in text "
                "(sandbox models only produce DRPO's own structured replies); use a chat model that "
                "supports structured output"
            )
        prompt_text = "".join(str(m.content) for m in messages)
        if isinstance(reply, dict) and self.bound_tool:
            digest = hashlib.sha256(json.dumps(reply, sort_keys=True).encode()).hexdigest()[:12]
            out = json.dumps(reply)
            message = AIMessage(
                content="",
                tool_calls=[
                    {"name": self.bound_tool, "args": reply, "id": f"call_{digest}", "type": "tool_call"}
                ],
            )
        else:
            out = json.dumps(reply) if isinstance(reply, dict) else reply
            if stop:
                for marker in stop:
                    out = out.split(marker, 1)[0]
            message = AIMessage(content=out)
        message.usage_metadata = {
            "input_tokens": approx_tokens(prompt_text),
            "output_tokens": approx_tokens(out),
            "total_tokens": approx_tokens(prompt_text) + approx_tokens(out),
        }
        return ChatResult(generations=[ChatGeneration(message=message)])


def tagged(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>\s*(.*?)\s*</{name}>", text, re.DOTALL)
    return match.group(1) if match else None


def earlier_user_turns(request: str) -> str:
    """What the user said in the ``<earlier_turns>`` block of a request (the ``user: ...`` turns
    of ``conversations.conversation_block``), a line each; "" without one."""
    turns = re.split(r"\n\n(?=(?:user|assistant): )", (tagged(request, "earlier_turns") or "").strip())
    return "\n".join(t.removeprefix("user: ") for t in turns if t.startswith("user: "))


# The structured-output re-ask turn (prompts/structured_output_retry.md) starts with this.
_RETRY_TURN = "Your previous reply could not be used"


@functools.cache
def _format_turn() -> str:
    """How the text/json_mode format turn (prompts/structured_output_format.md) starts."""
    return render_prompt("structured_output_format", schema="\x00").split("\x00", 1)[0][:60]


def last_request(messages: Sequence[BaseMessage]) -> str:
    # The request itself, not a re-ask turn nor the JSON format turn of the text and json_mode
    # methods: a sandbox model answers the original request, in any structured-output method.
    format_turn = _format_turn()
    for message in reversed(messages):
        text = str(message.content)
        if isinstance(message, HumanMessage) and not text.startswith((_RETRY_TURN, format_turn)):
            return text
    return ""
