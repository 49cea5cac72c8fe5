"""Grammar caps for local structured output: the longest JSON a schema allows must fit the token budget.

The capped schema becomes a llama.cpp grammar (:func:`json_grammar`), checked before sampling.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable
from typing import Any

from drpo_agents.errors import LocalGenerationError
from drpo_agents.json_types import JsonSchema
from drpo_agents.models.gguf import require_llama_cpp

_DEFAULT_STRING_CAP = 200  # strings the schema leaves uncapped (e.g. aspect names)
_MAX_STRING_CAP = 1000  # llama.cpp refuses grammars with much longer bounded strings (measured: 1500 fails)
_MAX_ITEMS = 8
_FEW_ITEMS = 4  # arrays of objects, when the longest reply would not fit
_MIN_STRING_CAP = 16
_SEPARATOR = 4  # quotes, colon, comma, a space around them
CHARS_PER_TOKEN = 3  # budget for English text (~4 characters a token), with a margin


def _resolve(node: JsonSchema, defs: JsonSchema) -> JsonSchema:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.split("/")[-1], {})
        return target if isinstance(target, dict) else {}
    return node


def _walk(node: Any, visit: Callable[[JsonSchema], None]) -> None:
    """Call ``visit`` on every string and array node of a schema, ``$defs`` included."""
    if isinstance(node, dict):
        if node.get("type") in ("string", "array"):
            visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for item in node:
            _walk(item, visit)


def _worst_case_chars(node: Any, defs: JsonSchema, depth: int = 0) -> int:
    """An upper bound on the characters of a JSON value the (capped) schema allows, escapes aside."""
    if depth > 20 or not isinstance(node, dict):
        return 64
    node = _resolve(node, defs)
    options = node.get("anyOf") or node.get("oneOf")
    if isinstance(options, list) and options:
        return max(_worst_case_chars(o, defs, depth + 1) for o in options)
    if "enum" in node:
        return max((len(json.dumps(v)) for v in node["enum"]), default=8)
    if "const" in node:
        return len(json.dumps(node["const"]))
    kind = node.get("type")
    if kind == "string":
        return int(node.get("maxLength", _DEFAULT_STRING_CAP)) + _SEPARATOR
    if kind == "array":
        items = node.get("items", {})
        count = int(node.get("maxItems", _MAX_ITEMS))
        return 2 + count * (_worst_case_chars(items, defs, depth + 1) + _SEPARATOR)
    if kind == "object" or "properties" in node:
        properties = node.get("properties", {})
        return 2 + sum(
            len(name) + _SEPARATOR + _worst_case_chars(value, defs, depth + 1)
            for name, value in properties.items()
        )
    if kind in ("integer", "number"):
        return 24
    return 8  # boolean, null


def capped_schema(schema: JsonSchema, budget_chars: int) -> JsonSchema:
    """A copy of ``schema`` whose longest allowed JSON is at most about ``budget_chars`` characters.

    Strings get a cap (at most :data:`_MAX_STRING_CAP`, about the most llama.cpp's grammar parser
    accepts) and arrays at most :data:`_MAX_ITEMS` items. If the longest JSON is still over
    budget, arrays of objects keep at most :data:`_FEW_ITEMS` items and every string cap shrinks
    in proportion to the schema's own cap (a prompt keeps more room than a remark), never below
    its ``minLength`` or :data:`_MIN_STRING_CAP`. Caps only ever get smaller, so any value valid
    under the result is valid under ``schema``.
    """
    result = copy.deepcopy(schema)
    defs = result.get("$defs", {})
    strings: list[tuple[JsonSchema, int, int]] = []  # node, schema's own cap, floor
    nested_arrays: list[JsonSchema] = []

    def visit(node: JsonSchema) -> None:
        if node["type"] == "string":
            if any(key in node for key in ("enum", "const", "pattern", "format")):
                return
            own = int(node.get("maxLength", _DEFAULT_STRING_CAP))
            floor = min(own, max(_MIN_STRING_CAP, int(node.get("minLength", 0))))
            node["maxLength"] = min(own, _MAX_STRING_CAP)
            strings.append((node, own, floor))
        else:
            node["maxItems"] = max(
                int(node.get("minItems", 0)), min(int(node.get("maxItems", _MAX_ITEMS)), _MAX_ITEMS)
            )
            items = _resolve(node.get("items", {}), defs) if isinstance(node.get("items"), dict) else {}
            if items.get("type") in ("object", "array") or "properties" in items:
                nested_arrays.append(node)

    _walk(result, visit)
    if _worst_case_chars(result, defs) <= budget_chars:
        return result
    for node in nested_arrays:
        node["maxItems"] = max(int(node.get("minItems", 0)), min(node["maxItems"], _FEW_ITEMS))

    def apply(scale: float) -> int:
        for node, own, floor in strings:
            node["maxLength"] = max(floor, min(int(own * scale), own, _MAX_STRING_CAP))
        return _worst_case_chars(result, defs)

    low, high = 0.0, 1.0
    if apply(high) > budget_chars:
        for _ in range(30):  # the largest scale that fits
            middle = (low + high) / 2
            low, high = (middle, high) if apply(middle) <= budget_chars else (low, middle)
        apply(low)
    return result


def json_grammar(llm: Any, schema: JsonSchema) -> Any:
    """A llama.cpp grammar forcing JSON valid under ``schema``, checked before use.

    llama.cpp crashes the process when it samples with a grammar it could not parse, so the
    grammar is compiled once here first and refused with an error if it does not parse.
    """
    llama_cpp = require_llama_cpp()
    grammars = importlib.import_module("llama_cpp.llama_grammar")
    gbnf: str = grammars.json_schema_to_gbnf(json.dumps(schema))
    # llama-cpp-python's string rule lets raw control characters (a newline) into strings,
    # which strict JSON forbids; allow them only escaped, as llama.cpp's own converter does.
    gbnf = gbnf.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise LocalGenerationError(f"llama.cpp cannot compile the grammar of this JSON schema: {schema}")
    llama_cpp.llama_sampler_free(sampler)
    return grammars.LlamaGrammar.from_string(gbnf, verbose=False)
