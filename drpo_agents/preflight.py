"""Cheap checks, before a run starts, that the model endpoint it needs answers.

Without them an unreachable endpoint shows up as every call failing after the client's
retries and timeouts (minutes), instead of one clear error at once.
"""

from __future__ import annotations

from drpo_agents.errors import ConfigError, ServiceUnavailableError
from drpo_agents.tracing import scrub_secrets


def check_endpoint(base_url: str, timeout: float = 5.0) -> None:
    """Raise if nothing answers HTTP at an OpenAI-compatible ``base_url``.

    Any HTTP response counts as reachable (a 401, 404 or 501 included): only whether a server
    listens is checked, so no key is needed and no model is called. Proxy settings from the
    environment apply, as they do to the model client.

    Raises:
        ConfigError: if ``base_url`` is not an http(s) URL.
        ServiceUnavailableError: if the connection is refused, times out or the host is unknown.
    """
    import httpx

    shown = scrub_secrets(base_url)
    try:
        httpx.get(base_url.rstrip("/") + "/models", timeout=timeout)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConfigError(f"invalid base URL {shown!r}: it must start with http:// or https://") from exc
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError) as exc:
        raise ServiceUnavailableError(
            f"cannot reach the model endpoint {shown}: {exc or type(exc).__name__}"
        ) from exc
    except httpx.HTTPError:
        pass  # something answered (slowly or oddly): the run's own calls will tell
