"""A local OpenAI-compatible chat-completions server for tests, backed by the sandbox models.

``FakeOpenAIServer`` listens on 127.0.0.1 (a free port) in a background thread and answers
``POST /v1/chat/completions`` the way ``langchain_openai.ChatOpenAI`` expects:

* the request's ``model`` picks the sandbox role: ``sandbox-responder``, ``sandbox-judge`` or
  ``sandbox-rewriter`` (all seeded with the server's ``seed``);
* plain chat replies with text; ``tools`` + ``tool_choice`` (function calling) replies with a
  ``tool_calls`` message and ``finish_reason="tool_calls"``; ``response_format`` (json_schema or
  json_object) replies with the JSON object as content; every reply carries ``usage``;
* ``stream: true`` is answered as server-sent events (with a usage chunk when
  ``stream_options.include_usage`` is set).

The sandbox models read the *last* user message as their task, so a re-ask (the structured
layer appends the bad reply and a "Your previous reply could not be used" turn) is answered as
a model that corrects itself would: from the conversation without the re-ask turns.

Server kinds: ``rejects`` names structured-output mechanisms the server refuses, as real servers
do (``json_schema``: llama-cpp-python's HTTP 500 "Input should be 'text' or 'json_object'";
``tools``: Ollama's HTTP 400 "does not support tools"; ``json_object``: HTTP 400), and
``dies_on_length_limits`` makes a request whose tool or response schema carries ``maxLength`` or
a large ``maxItems`` reset the connection (llama.cpp's grammar compiler fails on them and the server
process dies). :meth:`FakeOpenAIServer.llama_cpp` is a server with llama.cpp's behaviours.

Faults are queued with :meth:`FakeOpenAIServer.add_fault` and each applies to the next
``times`` requests it matches (by role and step): HTTP errors with retry headers, a reset
connection, a response held back until the test releases it (client timeouts), a truncated
or cut-off body, an HTML page instead of JSON, and edits of the model's reply (prose instead of JSON, a missing aspect, bad
scores, an empty or query-echoing prompt). Every request is recorded, with the usage the
server reported, for counting and for scanning for secrets.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.runnables import Runnable

from drpo_agents.models.sandbox import sandbox_models
from drpo_agents.prompts import render_prompt

ROLES = ("responder", "judge", "rewriter")
# How a re-ask from drpo_agents.structured starts (the retry template up to its $error).
_REASK_PREFIX = render_prompt("structured_output_retry", error="\x00").split("\x00", 1)[0]
# How the JSON format turn of the text and json_mode methods starts (up to its $schema).
_FORMAT_PREFIX = render_prompt("structured_output_format", schema="\x00").split("\x00", 1)[0]
Mechanism = Literal["json_schema", "json_object", "tools"]
# What llama-cpp-python's server answers to response_format json_schema (measured, 0.3.36).
LLAMA_CPP_JSON_SCHEMA_ERROR = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}"
)

FaultKind = Literal["status", "reset", "slow", "truncate", "cut", "html", "edit"]
# An edit gets the reply's structured value (a dict) and the task messages; it returns a new dict,
# or a string to send as plain content instead (e.g. prose where JSON was asked for).
Edit = Callable[[dict[str, Any], list[BaseMessage]], dict[str, Any] | str]


@dataclass
class Fault:
    """Something to do instead of (or to) the normal reply for the next ``times`` matching requests.

    Attributes:
        kind: ``status`` (an HTTP error), ``reset`` (close the socket with no response),
            ``slow`` (hold the response until ``release`` is set), ``truncate`` (a JSON body cut
            in half, with a matching Content-Length), ``cut`` (the connection closes halfway
            through the announced body), ``html`` (200 with an HTML page, as a misconfigured proxy
            sends), ``edit`` (change the model's reply with ``edit``).
        role, step: only requests for this role / step match (None matches any); steps are
            ``respond``, ``select_aspects``, ``score`` and ``rewrite``.
        after: let this many matching requests through first (e.g. to spare level 0).
        times: then apply to this many matching requests.
    """

    kind: FaultKind
    role: str | None = None
    step: str | None = None
    after: int = 0
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    edit: Edit | None = None
    release: threading.Event = field(default_factory=threading.Event)
    applied: int = 0
    seen: int = 0

    def matches(self, role: str | None, step: str | None) -> bool:
        return (self.role is None or self.role == role) and (self.step is None or self.step == step)


def http_error(status: int, headers: dict[str, str] | None = None, **match: Any) -> Fault:
    """Answer with HTTP ``status`` and an OpenAI-style error body (e.g. 429 with ``retry-after-ms``)."""
    return Fault("status", status=status, headers=headers or {}, **match)


def reset(**match: Any) -> Fault:
    """Close the connection (RST) without sending a response."""
    return Fault("reset", **match)


def slow(**match: Any) -> Fault:
    """Hold the response until ``fault.release`` is set (the server releases it when it stops)."""
    return Fault("slow", **match)


def truncated(**match: Any) -> Fault:
    """Send half of the JSON body, with a Content-Length that matches (a well-framed, invalid body)."""
    return Fault("truncate", **match)


def cut(**match: Any) -> Fault:
    """Announce the whole body but close the connection halfway through it."""
    return Fault("cut", **match)


def html_page(**match: Any) -> Fault:
    """Answer 200 with an HTML page instead of JSON (a captive portal or proxy error page)."""
    return Fault("html", **match)


def edit_reply(edit: Edit, **match: Any) -> Fault:
    """Change the model's structured reply (see :data:`Edit`)."""
    return Fault("edit", edit=edit, **match)


@dataclass
class RecordedRequest:
    """One request as the server saw it, and what it did with it."""

    path: str
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any]
    role: str | None
    step: str | None
    fault: str | None = None
    usage: dict[str, int] | None = None  # the usage the server reported (successful replies only)
    at: float = 0.0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def _task_messages(messages: list[BaseMessage]) -> list[BaseMessage]:
    """The conversation without trailing re-ask turns (the bad reply, if sent, and "could not be used")."""
    task = list(messages)
    while task and isinstance(task[-1], HumanMessage) and _text(task[-1].content).startswith(_REASK_PREFIX):
        task.pop()
        if task and isinstance(task[-1], AIMessage):
            task.pop()
    if task and isinstance(task[-1], HumanMessage) and _text(task[-1].content).startswith(_FORMAT_PREFIX):
        task.pop()  # the schema in the prompt (text and json_mode methods)
    return task


def _step(role: str | None, messages: list[BaseMessage]) -> str | None:
    if role == "responder":
        return "respond"
    if role == "rewriter":
        return "rewrite"
    if role == "judge":
        last = next((_text(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        return "score" if "<answer>" in last else "select_aspects"
    return None


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAIServer:
    """The server; use as a context manager (``with FakeOpenAIServer() as server:``).

    Attributes:
        requests: every request received, in arrival order.
        base_url: ``http://127.0.0.1:PORT/v1`` (for ``ChatOpenAI(base_url=...)``).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        rejects: Collection[Mechanism] = (),
        dies_on_length_limits: bool = False,
    ) -> None:
        self.rejects = frozenset(rejects)
        self.dies_on_length_limits = dies_on_length_limits
        self.models: dict[str, BaseChatModel] = sandbox_models(seed)
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ids = 0
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None

    @classmethod
    def llama_cpp(cls, seed: int = 0) -> FakeOpenAIServer:
        """A server that behaves like llama-cpp-python's: json_schema refused with HTTP 500, and
        length limits in a schema kill it."""
        return cls(seed, rejects={"json_schema"}, dies_on_length_limits=True)

    def refusal(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | Literal["die"] | None:
        """What this server kind does instead of answering ``body``, if anything."""
        response_format = body.get("response_format") or {}
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if self.dies_on_length_limits and _has_length_limits([body.get("tools"), response_format]):
            return "die"
        if kind == "json_schema" and "json_schema" in self.rejects:
            error = {"message": LLAMA_CPP_JSON_SCHEMA_ERROR, "type": "internal_server_error"}
            return 500, {"error": error | {"param": None, "code": None}}
        if kind == "json_object" and "json_object" in self.rejects:
            error = {
                "message": "response_format json_object is not supported",
                "type": "invalid_request_error",
            }
            return 400, {"error": error | {"param": "response_format", "code": None}}
        if body.get("tools") and "tools" in self.rejects:
            message = f"registry.ollama.ai/library/{body.get('model')} does not support tools"
            return 400, {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
        return None

    def bodies(self, role: str | None = None) -> list[dict[str, Any]]:
        """Request bodies received for ``role`` (None: any)."""
        return [r.body for r in self.requests if role is None or r.role == role]

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.01,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for fault in self.faults:
                fault.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and records -----------------------------------------------------------------

    def add_fault(self, *faults: Fault) -> None:
        """Queue faults; the first queued fault that matches a request (and has uses left) applies."""
        with self._lock:
            self.faults.extend(faults)

    def _take_fault(self, role: str | None, step: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.applied < fault.times and fault.matches(role, step):
                    fault.seen += 1
                    if fault.seen > fault.after:
                        fault.applied += 1
                        return fault
        return None

    def count(self, role: str | None = None, step: str | None = None) -> int:
        """Requests received for ``role`` / ``step`` (None: any)."""
        return sum(
            1 for r in self.requests if (role is None or r.role == role) and (step is None or r.step == step)
        )

    def usage_by_role(self) -> dict[str, dict[str, int]]:
        """Calls and tokens the server reported per role, as ``AlignmentArtifact.usage`` counts them."""
        totals: dict[str, dict[str, int]] = {}
        for record in self.requests:
            if record.usage is None or record.role is None:
                continue
            role = totals.setdefault(record.role, {"calls": 0, "input_tokens": 0, "output_tokens": 0})
            role["calls"] += 1
            role["input_tokens"] += record.usage["prompt_tokens"]
            role["output_tokens"] += record.usage["completion_tokens"]
        return totals

    # -- replies ----------------------------------------------------------------------------

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-{self._ids}"

    def completion(self, body: dict[str, Any], fault: Fault | None) -> tuple[dict[str, Any], dict[str, int]]:
        """The chat.completion object for ``body`` (a sandbox reply, edited by an ``edit`` fault)."""
        role = _role(body.get("model"))
        if role is None:
            raise LookupError(f"unknown model {body.get('model')!r}; use sandbox-{{{','.join(ROLES)}}}")
        messages = _task_messages(convert_to_messages(body.get("messages", [])))
        tool = _forced_tool(body)
        model: Runnable[Any, Any] = self.models[role]
        if tool is not None:
            offered = [t for t in body["tools"] if t["function"]["name"] == tool]
            model = self.models[role].bind_tools(offered, tool_choice=tool)
        elif (schema := _response_schema(body)) is not None:
            model = self.models[role].with_response_schema(schema)  # type: ignore[attr-defined]
        stop = body.get("stop")
        reply = model.invoke(messages, stop=[stop] if isinstance(stop, str) else stop)
        assert isinstance(reply, AIMessage)
        content: str | None = _text(reply.content)
        tool_args = reply.tool_calls[0]["args"] if reply.tool_calls else None
        if fault is not None and fault.kind == "edit" and fault.edit is not None:
            value = tool_args if tool_args is not None else json.loads(content or "{}")
            edited = fault.edit(json.loads(json.dumps(value)), messages)
            if isinstance(edited, str):
                content, tool_args = edited, None
            elif tool_args is not None:
                tool_args = edited
            else:
                content = json.dumps(edited)
        completion_id = self._next_id()
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        out_text = content or ""
        if tool_args is not None:
            arguments = json.dumps(tool_args)
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{completion_id}",
                    "type": "function",
                    "function": {"name": tool, "arguments": arguments},
                }
            ]
            out_text = arguments
        prompt_text = "".join(_text(m.get("content")) for m in body.get("messages", []))
        usage = {"prompt_tokens": _tokens(prompt_text), "completion_tokens": _tokens(out_text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_args is not None else "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
        return completion, usage

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body: dict[str, Any] = json.loads(raw or b"{}")
                role = _role(body.get("model"))
                try:
                    messages = _task_messages(convert_to_messages(body.get("messages", [])))
                except (ValueError, TypeError, KeyError):
                    messages = []
                step = _step(role, messages)
                record = RecordedRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    raw=raw,
                    body=body,
                    role=role,
                    step=step,
                    at=time.monotonic(),
                )
                with server._lock:
                    server.requests.append(record)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                refusal = server.refusal(body)
                if refusal == "die":
                    record.fault = "died"
                    self._reset()
                    return
                if refusal is not None:
                    record.fault = "rejected"
                    self._send_json(*refusal)
                    return
                fault = server._take_fault(role, step)
                record.fault = fault.kind if fault else None
                if fault is not None and fault.kind == "status":
                    error = {"message": f"injected HTTP {fault.status}", "type": "server_error", "code": None}
                    self._send_json(fault.status, {"error": error}, fault.headers)
                    return
                if fault is not None and fault.kind == "reset":
                    self._reset()
                    return
                if fault is not None and fault.kind == "html":
                    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                    self._send_raw(200, page, content_type="text/html")
                    return
                if fault is not None and fault.kind == "slow":
                    fault.release.wait(timeout=30)
                try:
                    completion, usage = server.completion(body, fault)
                except LookupError as exc:
                    self._send_json(404, {"error": {"message": str(exc), "type": "invalid_request_error"}})
                    return
                if fault is not None and fault.kind in ("truncate", "cut"):
                    data = json.dumps(completion).encode()
                    half = data[: len(data) // 2]
                    self._send_raw(
                        200, half, content_length=len(half) if fault.kind == "truncate" else len(data)
                    )
                    if fault.kind == "cut":
                        self._reset()
                    return
                if fault is None or fault.kind == "edit":  # a held-back reply reaches no client
                    record.usage = usage
                with suppress(OSError):
                    if body.get("stream"):
                        self._send_sse(
                            completion, bool((body.get("stream_options") or {}).get("include_usage"))
                        )
                    else:
                        self._send_json(200, completion)

            # -- writing --------------------------------------------------------------------

            def _send_raw(
                self,
                status: int,
                data: bytes,
                headers: dict[str, str] | None = None,
                content_length: int | None = None,
                content_type: str = "application/json",
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header(
                    "Content-Length", str(len(data) if content_length is None else content_length)
                )
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(payload).encode(), headers)

            def _send_sse(self, completion: dict[str, Any], include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for chunk in _stream_chunks(completion, include_usage):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _reset(self) -> None:
                # SO_LINGER 0: close with a TCP RST, as a crashed proxy or server would.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

        return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (timeouts, retries) reset their connections: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _has_length_limits(node: Any) -> bool:
    """A string length cap, or an item cap too large for a grammar (llama.cpp expands both)."""
    if isinstance(node, dict):
        return (
            "maxLength" in node
            or node.get("maxItems", 0) > 16
            or any(_has_length_limits(v) for v in node.values())
        )
    if isinstance(node, list):
        return any(_has_length_limits(v) for v in node)
    return False


def _role(model: Any) -> str | None:
    name = str(model or "")
    return name.removeprefix("sandbox-") if name.removeprefix("sandbox-") in ROLES else None


def _response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema a ``response_format`` asks the reply to follow (``json_schema``, or llama.cpp's
    ``schema`` beside ``json_object``), as a sandbox model reads a bound tool's."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    schema = (response_format.get("json_schema") or {}).get("schema") or response_format.get("schema")
    return schema if isinstance(schema, dict) else None


def _forced_tool(body: dict[str, Any]) -> str | None:
    """The function the client asks for: ``tool_choice``'s, else the only tool offered."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return str(choice.get("function", {}).get("name"))
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return choice
    if tools and choice != "none":
        return str(tools[0]["function"]["name"])
    return None


def _stream_chunks(completion: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """A chat.completion as the chat.completion.chunk events an OpenAI stream would send."""
    head = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return head | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""})
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        arguments = call["function"]["arguments"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        middle = len(arguments) // 2
        for part in (arguments[:middle], arguments[middle:]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
    else:
        text = message.get("content") or ""
        size = max(1, len(text) // 4)
        for start in range(0, len(text), size):
            yield chunk({"content": text[start : start + size]})
    yield chunk({}, choice["finish_reason"])
    if include_usage:
        yield head | {"choices": [], "usage": completion["usage"]}
