"""Tracing a run: LangSmith-style traces without a server.

Every node and model call of a run carries a run name (``drpo_respond``, ``drpo_score``, …),
tags (``drpo``, ``drpo:<role>``) and ``drpo_*`` metadata (run id, level, candidate id, query id,
role), so any LangChain tracer shows the search as it is. Besides LangSmith
(``LANGSMITH_TRACING=true``), two offline routes (docs/TRACING.md):

- :class:`JsonlTracer` (``tracer``), a callback writing one JSON line per finished run, e.g. into
  the run directory: ``optimize(..., callbacks=[JsonlTracer(run_dir / TRACE_FILE)])``; its values
  are converted by ``values`` and scrubbed by ``secrets``; ``file`` reads a trace back
  (``read_trace``, ``iter_tree``) and repairs a torn last line;
- :func:`instrument_opentelemetry` (``otel``), which turns every LangChain run into an
  OpenTelemetry span with OpenInference attributes, exported over OTLP to a local collector such
  as Phoenix. Needs the ``otel`` extra: ``pip install 'drpo-agents[otel]'``.
"""

from __future__ import annotations

from drpo_agents.infra.run_files import TRACE_FILE
from drpo_agents.tracing.file import iter_tree, read_trace, repair_trace
from drpo_agents.tracing.otel import (
    OTEL_EXTRA_HINT,
    PHOENIX_ENDPOINT,
    instrument_opentelemetry,
    uninstrument_opentelemetry,
)
from drpo_agents.tracing.secrets import scrub_secrets
from drpo_agents.tracing.tracer import JsonlTracer
from drpo_agents.tracing.values import REDACTED

__all__ = [
    "OTEL_EXTRA_HINT",
    "PHOENIX_ENDPOINT",
    "REDACTED",
    "TRACE_FILE",
    "JsonlTracer",
    "instrument_opentelemetry",
    "iter_tree",
    "read_trace",
    "repair_trace",
    "scrub_secrets",
    "uninstrument_opentelemetry",
]
