"""OpenTelemetry/OpenInference export of every LangChain run (Arize Phoenix), with the ``otel`` extra."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

OTEL_EXTRA_HINT = (
    "OpenTelemetry export needs the 'otel' extra: pip install 'drpo-agents[otel]' "
    "(openinference-instrumentation-langchain, opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http)"
)
PHOENIX_ENDPOINT = "http://localhost:6006/v1/traces"
"""Where a local Arize Phoenix (``phoenix serve``) receives OTLP over HTTP."""


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
