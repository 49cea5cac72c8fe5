"""Local tracing: a JSON-lines trace file, and OpenTelemetry/OpenInference export (Arize Phoenix).

Every node and model call of a run carries a run name (``drpo_respond``, ``drpo_score``, …),
tags (``drpo``, ``drpo:<role>``) and ``drpo_*`` metadata (run id, level, candidate id, query id,
role), so any LangChain tracer shows the search as it is. Besides LangSmith
(``LANGSMITH_TRACING=true``), two offline routes (docs/TRACING.md):

- :class:`JsonlTracer`, a callback writing one JSON line per finished run, e.g. into the run
  directory: ``optimize(..., callbacks=[JsonlTracer(run_dir / TRACE_FILE)])``. No extra needed.
- :func:`instrument_opentelemetry`, which turns every LangChain run into an OpenTelemetry span
  with OpenInference attributes, exported over OTLP to a local collector such as Phoenix.
  Needs the ``otel`` extra: ``pip install 'drpo-agents[otel]'``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.load import dumpd
from langchain_core.load.serializable import Serializable
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from pydantic import BaseModel

from drpo_agents.run_files import TRACE_FILE as TRACE_FILE  # re-exported: its old home

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


OTEL_EXTRA_HINT = (
    "OpenTelemetry export needs the 'otel' extra: pip install 'drpo-agents[otel]' "
    "(openinference-instrumentation-langchain, opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http)"
)
PHOENIX_ENDPOINT = "http://localhost:6006/v1/traces"
"""Where a local Arize Phoenix (``phoenix serve``) receives OTLP over HTTP."""

REDACTED = "[redacted]"
# Keys whose values are never written, wherever they appear (metadata, inputs, outputs).
_SECRET_KEY = re.compile(
    r"api[_-]?key|secret|passw(or)?d|authorization|credential|(access|auth|bearer)[_-]?token", re.I
)
# Environment variables holding secrets: their values are scrubbed from every line.
_SECRET_ENV = re.compile(r"API_?KEY|SECRET|TOKEN|PASSW(OR)?D|CREDENTIAL", re.I)
# Well-known key shapes (OpenAI, Anthropic, LangSmith), scrubbed even when not in the environment.
_KEY_SHAPE = re.compile(r"\b(?:sk-(?:ant-)?|lsv2_)[A-Za-z0-9_\-]{16,}")


def _jsonable(value: Any) -> Any:
    """``json.dumps`` fallback: LangChain objects, pydantic models, dataclasses, then ``repr``."""
    if isinstance(value, Serializable):
        return dumpd(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def _redact_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _redact_keys(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_keys(v) for v in value]
    return value


def _secret_values() -> list[str]:
    values = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*):[^@/\s]*@", re.I)


def scrub_secrets(text: str) -> str:
    """``text`` without secrets: values of secret environment variables, key-shaped strings and
    the password of any ``scheme://user:password@host`` URL become ``[redacted]``."""
    for secret in _secret_values():
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    return _KEY_SHAPE.sub(REDACTED, text)


def _token_usage(run: Run) -> dict[str, int] | None:
    """Tokens a model run reported (``usage_metadata`` of its messages, else ``llm_output``)."""
    if run.run_type not in ("llm", "chat_model") or not run.outputs:
        return None
    totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    found = False
    for generations in run.outputs.get("generations") or []:
        for generation in generations or []:
            message = generation.get("message") if isinstance(generation, dict) else None
            if isinstance(message, dict):
                usage = (message.get("kwargs") or message).get("usage_metadata")
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
    ``parent_id`` rebuilds the tree. Lines are appended and flushed as runs finish, so a
    crashed run keeps its trace and a resumed run adds to it.

    Secrets are never written: values under secret-looking keys (``api_key``, ``password``, …),
    the values of environment variables named like ``*_API_KEY``/``*TOKEN``/``*SECRET*``, and
    strings shaped like OpenAI/Anthropic/LangSmith keys become ``[redacted]``. Model
    constructor arguments and invocation parameters are not recorded at all.

    Args:
        path: the JSON-lines file (created with its folder; appended to if it exists).
        include_io: record inputs and outputs (prompts, answers, graph state updates).
        max_io_chars: inputs or outputs whose JSON is longer are replaced by
            ``{"truncated": true, "chars": N, "preview": "..."}`` (``None``: no limit). Node
            runs receive the whole graph state, which grows with the search.

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
        self.include_io = include_io
        self.max_io_chars = max_io_chars
        self._lock = threading.Lock()

    # Runs are written as they finish; the tree is not kept in memory.
    @staticmethod
    def _add_child_run(parent_run: Run, child_run: Run) -> None:
        return None

    def _persist_run(self, run: Run) -> None:
        return None

    def _on_run_update(self, run: Run) -> None:
        line = self._scrub(json.dumps(self.record(run), default=_jsonable, ensure_ascii=False))
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
        self.order_map.pop(run.id, None)

    def record(self, run: Run) -> dict[str, Any]:
        """The JSON-able record written for a finished run."""
        end = run.end_time
        record: dict[str, Any] = {
            "id": str(run.id),
            "trace_id": str(run.trace_id) if run.trace_id else None,
            "parent_id": str(run.parent_run_id) if run.parent_run_id else None,
            "dotted_order": run.dotted_order,
            "name": run.name,
            "run_type": run.run_type,
            "tags": list(run.tags or []),
            "metadata": _redact_keys(dict((run.extra or {}).get("metadata") or {})),
            "start_time": run.start_time.isoformat(),
            "end_time": end.isoformat() if end else None,
            "duration_ms": round((end - run.start_time).total_seconds() * 1000, 3) if end else None,
            "status": "error" if run.error else "ok",
            "error": run.error,
            "usage": _token_usage(run),
        }
        if self.include_io:
            record["inputs"] = self._io(run.inputs)
            record["outputs"] = self._io(run.outputs)
        return record

    def _io(self, value: Any) -> Any:
        value = _redact_keys(value)
        if self.max_io_chars is None:
            return value
        text = json.dumps(value, default=_jsonable, ensure_ascii=False)
        if len(text) <= self.max_io_chars:
            return value
        return {"truncated": True, "chars": len(text), "preview": text[: self.max_io_chars]}

    @staticmethod
    def _scrub(line: str) -> str:
        for secret in _secret_values():
            # A secret appears JSON-escaped in the line; scrub both spellings.
            for spelling in {secret, json.dumps(secret, ensure_ascii=False)[1:-1]}:
                line = line.replace(spelling, REDACTED)
        return _KEY_SHAPE.sub(REDACTED, line)

    def __repr__(self) -> str:
        return f"JsonlTracer({str(self.path)!r})"


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    """The records of a :class:`JsonlTracer` file, in the order the runs finished."""
    with Path(path).open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def iter_tree(records: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(depth, record)`` for every record, parents before children, siblings by start time."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    ids = {r["id"] for r in records}
    for record in records:
        parent = record["parent_id"] if record["parent_id"] in ids else None
        children.setdefault(parent, []).append(record)

    def walk(parent: str | None, depth: int) -> Iterator[tuple[int, dict[str, Any]]]:
        for record in sorted(children.get(parent, []), key=lambda r: r["dotted_order"] or r["start_time"]):
            yield depth, record
            yield from walk(record["id"], depth + 1)

    yield from walk(None, 0)


# -- OpenTelemetry / OpenInference ---------------------------------------------------------------


def instrument_opentelemetry(
    tracer_provider: TracerProvider | None = None,
    *,
    endpoint: str | None = None,
    project_name: str = "drpo-agents",
) -> TracerProvider:
    """Export every LangChain/LangGraph run in this process as OpenTelemetry spans (OpenInference).

    Uses ``openinference-instrumentation-langchain``: each run becomes a span named like the
    run (``drpo_optimize``, ``evaluate``, ``drpo_respond``, …) with ``openinference.span.kind``
    (``CHAIN``/``LLM``), ``metadata`` (JSON, with the ``drpo_*`` ids), ``tag.tags``, input and
    output values and token counts. The instrumentation is process-wide; calling this again
    re-instruments with the new provider, :func:`uninstrument_opentelemetry` stops it.

    Args:
        tracer_provider: where spans go. Default: a new provider (not made global) whose
            batch processor exports over OTLP/HTTP to ``endpoint``.
        endpoint: the OTLP/HTTP traces endpoint for the default provider. Default: the
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``/``OTEL_EXPORTER_OTLP_ENDPOINT`` environment
            variables if set, else a local Phoenix (:data:`PHOENIX_ENDPOINT`).
        project_name: the service name and Phoenix project of the default provider.

    Returns:
        The tracer provider in use: call ``force_flush()`` before reading results, and
        ``shutdown()`` when done (the default provider also flushes at process exit).

    Raises:
        ImportError: without the ``otel`` extra (``pip install 'drpo-agents[otel]'``).
    """
    try:
        from openinference.instrumentation.langchain import LangChainInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError as exc:
        raise ImportError(OTEL_EXTRA_HINT) from exc

    if tracer_provider is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise ImportError(OTEL_EXTRA_HINT) from exc
        if endpoint is None and not (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        ):
            endpoint = PHOENIX_ENDPOINT
        tracer_provider = TracerProvider(
            resource=Resource.create(
                {"service.name": project_name, "openinference.project.name": project_name}
            )
        )
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))

    instrumentor = LangChainInstrumentor()  # a process-wide singleton
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=tracer_provider)
    return tracer_provider


def uninstrument_opentelemetry() -> None:
    """Stop exporting LangChain runs as spans (a no-op when not instrumented)."""
    try:
        from openinference.instrumentation.langchain import LangChainInstrumentor
    except ImportError:
        return
    instrumentor = LangChainInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
