"""Local tracing: :class:`JsonlTracer`, the callback that writes a run's JSON-lines trace.

Its values are converted by :mod:`drpo_agents.tracing.values` and scrubbed of secrets by
:mod:`drpo_agents.tracing.secrets`; :mod:`drpo_agents.tracing.file` reads a file back.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run

from drpo_agents.tracing.file import repair_trace
from drpo_agents.tracing.secrets import scrub_json_line
from drpo_agents.tracing.values import TooLarge, TraceValues, redact_keys


def _token_usage(run: Run) -> dict[str, int] | None:
    """Tokens a model run reported (``usage_metadata`` of its messages, else ``llm_output``)."""
    if run.run_type not in ("llm", "chat_model") or not run.outputs:
        return None
    totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    found = False
    for generations in run.outputs.get("generations") or []:
        for generation in generations or []:
            message = generation.get("message") if isinstance(generation, dict) else None
            if isinstance(message, BaseMessage):  # this tracer keeps the message object
                usage = getattr(message, "usage_metadata", None)
            elif isinstance(message, dict):  # LangChain's dumpd form
                usage = (message.get("kwargs") or message).get("usage_metadata")
            else:
                continue
            if isinstance(usage, dict):
                found = True
                for key in totals:
                    totals[key] += int(usage.get(key) or 0)
    if not found:
        llm_output = run.outputs.get("llm_output") or {}
        usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
        if not isinstance(usage, dict) or not usage:
            return None
        totals["input_tokens"] = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
        totals["output_tokens"] = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
        totals["total_tokens"] = int(
            usage.get("total_tokens") or totals["input_tokens"] + totals["output_tokens"]
        )
    return totals


class JsonlTracer(BaseTracer):
    """A LangChain callback that appends one JSON line per finished run to ``path``.

    Each line: ``id``, ``trace_id``, ``parent_id``, ``dotted_order``, ``name``, ``run_type``,
    ``tags``, ``metadata`` (the ``drpo_*`` ids among them), ``start_time``, ``end_time``,
    ``duration_ms``, ``status`` (``ok``/``error``), ``error``, ``usage`` (model runs: input,
    output and total tokens) and, with ``include_io``, ``inputs`` and ``outputs``. Children
    finish before their parents, so the root run (``drpo_optimize``) is the last line of a trace;
    ``parent_id`` rebuilds the tree. Lines are appended as runs finish, each with one ``write``,
    so a crashed run keeps its trace and a resumed run adds to it. A process killed in the
    middle of a line leaves it torn at the end of the file; the next tracer on the file cuts
    it off before appending (see :func:`repair_trace`), and :func:`read_trace` skips it.

    Inputs and outputs are kept compact (:mod:`drpo_agents.tracing.values`): model runs record
    their messages (``{"messages": [[{"type", "content"}, …]]}``) and generations as type and
    content; a text of 200 characters or more is written once per file and referenced after
    that (``{"$text": ID}``; :func:`read_trace` restores it); a LangGraph node run's state
    over ``max_io_chars`` is summarized (small values kept, large ones by size), not serialized.

    Secrets are never written: values under secret-looking keys (``api_key``, ``password``, …),
    the values of environment variables named like ``*_API_KEY``/``*TOKEN``/``*SECRET*``, and
    strings shaped like OpenAI/Anthropic/LangSmith keys become ``[redacted]``. Model
    constructor arguments and invocation parameters are not recorded at all.

    Args:
        path: the JSON-lines file (created with its folder; appended to if it exists).
        include_io: record inputs and outputs (prompts, answers, graph state updates).
        max_io_chars: a graph node's inputs or outputs estimated longer become a summary
            ``{"truncated": true, "summary": {...}}``; other inputs or outputs whose JSON is
            longer become ``{"truncated": true, "chars": N, "preview": "..."}`` (``None``: no
            limit).

    Example:
        >>> tracer = JsonlTracer(Path(run_dir) / TRACE_FILE)
        >>> optimize(queries, responder=..., judge=..., run_dir=run_dir, callbacks=[tracer])
    """

    run_inline: bool = True  # write in the caller's thread: no executor hop, start/end stay ordered

    def __init__(
        self, path: str | Path, *, include_io: bool = True, max_io_chars: int | None = 10_000
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_trace(self.path)
        self.include_io = include_io
        self.max_io_chars = max_io_chars
        self._lock = threading.Lock()
        # Which shared texts this file holds; a new tracer (a resumed run) defines them again.
        self._values = TraceValues()
        # A LangGraph task's run and its node's run under it get equal inputs and outputs: a
        # parent reuses its last children's converted values (a C-speed equality test first).
        self._children: dict[UUID, list[tuple[Any, Any]]] = {}

    # Runs are written as they finish; the tree is not kept in memory.
    @staticmethod
    def _add_child_run(parent_run: Run, child_run: Run) -> None:
        return None

    def _persist_run(self, run: Run) -> None:
        return None

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Run:
        """A model run (``run_type`` ``llm``, as before) that keeps its messages, not LangChain's
        one-string rendering of them; they are converted only when the line is written."""
        run = self.on_llm_start(
            serialized,
            [],
            run_id=run_id,
            tags=tags,
            parent_run_id=parent_run_id,
            metadata=metadata,
            name=name,
            **kwargs,
        )
        run.inputs = {"messages": messages}
        return run

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> Run:
        """End a model run, keeping each generation as its text or message (no ``dumpd``)."""
        run = self._get_run(run_id, run_type={"llm", "chat_model"})
        run.outputs = {
            "generations": [[_generation(g) for g in batch] for batch in response.generations],
            "llm_output": response.llm_output,
        }
        run.end_time = datetime.now(UTC)
        self._end_trace(run)
        self._on_llm_end(run)
        return run

    def _on_run_update(self, run: Run) -> None:
        head = self._head_text(run)
        with self._lock:  # shared texts are defined in the file before a line refers to them
            children = self._children.pop(run.id, [])
            try:
                line, converted = self._line(run, head, self._values, children)
                self._append((self._scrub(line) + "\n").encode("utf-8"))
            except BaseException:
                self._values.undo(0)  # the line is not in the file: nor are its definitions
                raise
            self._values.commit()
            if converted and run.parent_run_id is not None and _is_graph_run(run):
                # The last two children are enough: a node's run is followed by its routing run.
                siblings = self._children.setdefault(run.parent_run_id, [])
                siblings[:] = [*siblings[-2:], *converted]
        self.order_map.pop(run.id, None)

    def _append(self, data: bytes) -> None:
        # One unbuffered O_APPEND write per line: a kill can only tear the last line.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
        finally:
            os.close(descriptor)

    def record(self, run: Run) -> dict[str, Any]:
        """The JSON-able record written for a finished run (its texts in full)."""
        values = TraceValues()  # every text defined in this record, none referenced
        line, _ = self._line(run, self._head_text(run), values, [])
        return dict(json.loads(line))

    def _line(
        self, run: Run, head: str, values: TraceValues, children: list[tuple[Any, Any]]
    ) -> tuple[str, list[tuple[Any, Any]]]:
        """The run's JSON line (the head, then inputs and outputs, each serialized once), and
        the inputs and outputs with their converted values. A value equal to one of
        ``children`` (``(value, converted)`` pairs) is written from its converted value."""
        if not self.include_io:
            return head, []
        graph_run = _is_graph_run(run)
        converted: list[tuple[Any, Any]] = []
        texts: list[str] = []
        for value in (run.inputs, run.outputs):
            done = _converted_before(value, children) if children else None
            if done is None:
                structure, text = self._io(value, values, graph_run)
            else:
                structure, text = done, json.dumps(done, ensure_ascii=False)
            converted.append((value, structure))
            texts.append(text)
        return f'{head[:-1]}, "inputs": {texts[0]}, "outputs": {texts[1]}}}', converted

    def _head_text(self, run: Run) -> str:
        end = run.end_time
        record: dict[str, Any] = {
            "id": str(run.id),
            "trace_id": str(run.trace_id) if run.trace_id else None,
            "parent_id": str(run.parent_run_id) if run.parent_run_id else None,
            "dotted_order": run.dotted_order,
            "name": run.name,
            "run_type": run.run_type,
            "tags": list(run.tags or []),
            "metadata": redact_keys(dict((run.extra or {}).get("metadata") or {})),
            "start_time": run.start_time.isoformat(),
            "end_time": end.isoformat() if end else None,
            "duration_ms": round((end - run.start_time).total_seconds() * 1000, 3) if end else None,
            "status": "error" if run.error else "ok",
            "error": run.error,
            "usage": _token_usage(run),
        }
        return json.dumps(record, default=str, ensure_ascii=False)

    def _io(self, value: Any, values: TraceValues, graph_run: bool) -> tuple[Any, str]:
        """A run's inputs or outputs converted (summarized or truncated past ``max_io_chars``),
        and their JSON."""
        limit = self.max_io_chars
        defined = values.defined
        if graph_run and limit is not None and isinstance(value, Mapping):
            # A node's whole graph state: the conversion stops at the limit, so a large state
            # is summarized without being serialized first.
            try:
                structure = values.convert(value, limit)
            except TooLarge:
                structure = values.summary(value)
            return structure, json.dumps(structure, ensure_ascii=False)
        structure = values.convert(value)
        text = json.dumps(structure, ensure_ascii=False)
        if limit is None or len(text) <= limit:
            return structure, text
        values.undo(defined)  # the preview is a string: its definitions are not usable
        truncated = {"truncated": True, "chars": len(text), "preview": text[:limit]}
        return truncated, json.dumps(truncated, ensure_ascii=False)

    @staticmethod
    def _scrub(line: str) -> str:
        return scrub_json_line(line)

    def __repr__(self) -> str:
        return f"JsonlTracer({str(self.path)!r})"


def _is_graph_run(run: Run) -> bool:
    """A LangGraph graph or node run (its inputs or outputs can be the whole graph state)."""
    metadata = (run.extra or {}).get("metadata") or {}
    return run.run_type == "chain" and (
        "langgraph_node" in metadata or metadata.get("ls_integration") == "langgraph"
    )


def _converted_before(value: Any, children: list[tuple[Any, Any]]) -> Any:
    """The converted value of an equal child value, or None."""
    for child_value, converted in children:
        try:
            if child_value is value or child_value == value:
                return converted
        except Exception:  # a value that cannot be compared (arrays): converted anew
            continue
    return None


def _generation(generation: Any) -> dict[str, Any]:
    """A generation as the trace keeps it: the message of a chat generation, else the text."""
    if isinstance(generation, ChatGeneration):
        return {"message": generation.message}
    return {"text": generation.text}
