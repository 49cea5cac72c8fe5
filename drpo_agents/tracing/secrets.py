"""Secrets kept out of every line drpo-agents writes or prints: environment values, key shapes, URL passwords."""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

from drpo_agents.tracing.values import REDACTED

# Environment variables holding secrets: their values are scrubbed from every line.
_SECRET_ENV = re.compile(r"API_?KEY|SECRET|TOKEN|PASSW(OR)?D|CREDENTIAL", re.I)
# Well-known key shapes (OpenAI, Anthropic, LangSmith), scrubbed even when not in the environment.
_KEY_SHAPE = re.compile(r"\b(?:sk-(?:ant-)?|lsv2_)[A-Za-z0-9_\-]{16,}")


@functools.lru_cache(maxsize=1024)
def _is_secret_env(name: str) -> bool:
    return _SECRET_ENV.search(name) is not None


# The environment as last read (its raw items) and the secret values found in it.
_secrets_seen: dict[str, Any] = {"environment": None, "values": []}


def _secret_values() -> list[str]:
    # Read at every line (a variable set mid-run is scrubbed too), but only secret-named values;
    # decoding the environment costs more than a line, so it is redone only when it changed
    # (comparing CPython's raw snapshot of it is cheap).
    raw = getattr(os.environ, "_data", None)
    snapshot = tuple(raw.items()) if isinstance(raw, dict) else None
    if snapshot is not None and snapshot == _secrets_seen["environment"]:
        return list(_secrets_seen["values"])
    found = {v for k, v in os.environ.items() if len(v) >= 8 and _is_secret_env(k)}
    values = sorted(found, key=len, reverse=True)
    _secrets_seen.update(environment=snapshot, values=values)
    return list(values)


def _scrub_key_shapes(text: str) -> str:
    # The plain substring test first: the regex costs more than most lines take to build.
    if "sk-" in text or "lsv2_" in text:
        return _KEY_SHAPE.sub(REDACTED, text)
    return text


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*):[^@/\s]*@", re.I)


def scrub_secrets(text: str) -> str:
    """``text`` without secrets: values of secret environment variables, key-shaped strings and
    the password of any ``scheme://user:password@host`` URL become ``[redacted]``."""
    for secret in _secret_values():
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    return _scrub_key_shapes(text)


def scrub_json_line(line: str) -> str:
    """A trace line without secret values (each also in its JSON-escaped spelling, as it appears
    inside a JSON string) or key-shaped strings."""
    for secret in _secret_values():
        for spelling in {secret, json.dumps(secret, ensure_ascii=False)[1:-1]}:
            line = line.replace(spelling, REDACTED)
    return _scrub_key_shapes(line)
