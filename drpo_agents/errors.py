"""Exceptions raised by drpo-agents. All derive from :class:`DRPOError`."""

from __future__ import annotations


class DRPOError(Exception):
    """Base class of every error drpo-agents raises on purpose."""


class ConfigError(DRPOError, ValueError):
    """Invalid configuration or input, detected before any model is called."""


class PromptTemplateError(DRPOError):
    """A prompt template is missing or was rendered with missing variables."""


class StructuredOutputError(DRPOError):
    """A model's structured answer stayed invalid after every retry.

    Attributes:
        raw_outputs: the raw texts the model produced, last one last, for the record.
    """

    def __init__(self, message: str, raw_outputs: list[str] | None = None) -> None:
        super().__init__(message)
        self.raw_outputs = raw_outputs or []


class ArtifactError(DRPOError):
    """An artifact file cannot be read."""


def recoverable_errors() -> tuple[type[BaseException], ...]:
    """Errors that make one model call fail without making the whole run wrong.

    They are recorded as a failed evaluation or rewrite of that candidate (after the model
    client's own retries) and the search goes on; anything else is a bug and propagates.
    """
    import httpx
    import openai

    return (StructuredOutputError, openai.APIError, httpx.HTTPError, TimeoutError, ConnectionError)
