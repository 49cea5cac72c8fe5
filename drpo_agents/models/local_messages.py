"""Between LangChain and llama.cpp's chat API: tool schemas, messages in, tool-call messages out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from drpo_agents.json_types import JsonSchema


def tool_schema(tool: dict[str, Any] | type | Callable[..., Any] | BaseTool) -> tuple[str, JsonSchema]:
    """A tool's name and the JSON schema of its arguments (a pydantic class keeps its length caps)."""
    name = convert_to_openai_tool(tool)["function"]["name"]
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        return name, tool.model_json_schema()
    parameters = convert_to_openai_tool(tool)["function"].get("parameters") or {"type": "object"}
    return name, dict(parameters)


def to_chat_dict(message: BaseMessage) -> dict[str, str]:
    text: str = str(message.text) if isinstance(message.text, str) else str(message.content)
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": text}
    if isinstance(message, AIMessage):
        if not text and message.tool_calls:
            text = json.dumps(message.tool_calls[0]["args"])
        return {"role": "assistant", "content": text}
    if isinstance(message, ToolMessage):
        return {"role": "user", "content": f"Tool result: {text}"}
    return {"role": "user", "content": text}


def tool_message(name: str, text: str, usage: UsageMetadata, metadata: dict[str, Any]) -> AIMessage:
    """A tool-call message from constrained JSON text (an invalid tool call if it was cut off)."""
    call_id = "call_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    try:
        args = json.loads(text, strict=False)  # a raw newline in a string is still readable
    except json.JSONDecodeError as exc:
        return AIMessage(
            content=text,
            invalid_tool_calls=[
                {"name": name, "args": text, "id": call_id, "error": str(exc), "type": "invalid_tool_call"}
            ],
            usage_metadata=usage,
            response_metadata=metadata,
        )
    if not isinstance(args, dict):
        args = {"value": args}
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}],
        usage_metadata=usage,
        response_metadata={**metadata, "finish_reason": "tool_calls"},
    )
