"""Names for the JSON-shaped values that have no fixed record type.

Records with known fields are TypedDicts (:mod:`drpo_agents.search.records`) or pydantic models
(:mod:`drpo_agents.artifact`, :mod:`drpo_agents.schemas`). What remains is JSON whose shape is
open by nature, and these names say which kind a value is.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JsonSchema: TypeAlias = dict[str, Any]
"""A JSON Schema document or one of its nodes (``{"type": "object", "properties": ...}``): what
structured output sends to a provider and what the local model's grammar is compiled from."""

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object before validation (a model's parsed reply, a file just read), or a pydantic
model's dump kept as plain JSON (graph state stores only JSON-ready values)."""
