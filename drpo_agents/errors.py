"""Exceptions raised by drpo-agents. All derive from :class:`DRPOError`."""

from __future__ import annotations

from typing import Any

from drpo_agents.json_types import JsonObject


def error_text(exc: BaseException) -> str:
    """How a failure is recorded in artifacts and reports: ``"TypeName: message"``."""
    return f"{type(exc).__name__}: {exc}"


class DRPOError(RuntimeError):
    """Base class of every error drpo-agents raises on purpose. Its messages are written for the
    person running the search (they name no secret), so it is a ``RuntimeError``: LangGraph
    Server passes the message of such an error on to the client instead of "An internal error
    occurred"."""


class DRPOWarning(UserWarning):
    """Base class of drpo-agents' warnings: something was done differently from what was asked, and
    the run goes on (the CLI prints each as one ``warning:`` line)."""


class ConfigError(DRPOError, ValueError):
    """Invalid configuration or input, detected before any model is called."""


MAX_ITEM_FAULTS = 20
"""How many bad items one error lists (a line each); the rest are counted."""


def raise_item_faults(faults: list[str], total: int, what: str) -> None:
    """Raise one :class:`ConfigError` naming every bad item of a set, a line each (one fault: that
    line alone), so a file is fixed in one pass; nothing of the set is loaded.

    Args:
        faults: one line per bad item, each naming its item.
        total: how many items the set has.
        what: what the items are, plural ("queries", "ICL examples").
    """
    if len(faults) == 1:
        raise ConfigError(faults[0])
    if faults:
        shown = faults[:MAX_ITEM_FAULTS]
        more = f"\n  ... and {len(faults) - len(shown)} more" if len(faults) > len(shown) else ""
        raise ConfigError(
            f"{len(faults)} of {total} {what} are invalid (nothing was loaded):\n  "
            + "\n  ".join(shown)
            + more
        )


class ResumeRefused(ConfigError):
    """A resume asked for something the run cannot do (a setting it cannot change, another model,
    a level it has no queries for); nothing was written and the run is as it was."""


class PromptTemplateError(DRPOError):
    """A prompt template is missing or was rendered with missing variables."""


class StructuredOutputError(DRPOError):
    """A model's structured answer stayed invalid after every retry.

    Attributes:
        raw_outputs: the raw texts the model produced, last one last, for the record.
        messages: the replies received (``AIMessage``s with their token usage), so the tokens
            spent on a call that failed can still be counted.
    """

    def __init__(
        self, message: str, raw_outputs: list[str] | None = None, messages: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.raw_outputs = raw_outputs or []
        self.messages = messages or []


class ReviewRequired(DRPOError):
    """The run paused for a human decision on its final prompt (``DRPOConfig(review=True)``).

    Attributes:
        request: what to review (candidate id, prompt, initial prompt, rewards).
    """

    def __init__(self, message: str, request: JsonObject) -> None:
        super().__init__(message)
        self.request = request


class ServiceUnavailableError(DRPOError):
    """A service the run needs (a model endpoint, a Chroma server, PostgreSQL) cannot be reached."""


class ArtifactError(DRPOError):
    """An artifact file cannot be read."""


class LocalModelError(ConfigError):
    """A ``local:`` model cannot be used: llama-cpp-python or the GGUF file is missing."""


class LocalGenerationError(DRPOError, RuntimeError):
    """A call the local model cannot make: a prompt longer than its context, an unusable schema."""


class ModelCallError(DRPOError):
    """A model call raised something unexpected (a provider answering an HTML page, a client
    bug): recorded like any failed call, with the original exception as ``__cause__``."""


def recoverable_errors() -> tuple[type[BaseException], ...]:
    """Errors that make one model call fail without making the whole run wrong.

    They are recorded as a failed evaluation or rewrite of that candidate (after the model
    client's own retries) and the search goes on; anything else is a bug and propagates.
    ``json.JSONDecodeError`` is a response body that is not JSON (cut off or garbled on the
    way): the openai client raises it as is and does not retry it.
    """
    import json

    import httpx
    import openai

    return (
        StructuredOutputError,
        ModelCallError,
        LocalGenerationError,  # e.g. a prompt longer than the local model's context
        openai.APIError,
        httpx.HTTPError,
        TimeoutError,
        ConnectionError,
        json.JSONDecodeError,
    )
