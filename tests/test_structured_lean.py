"""The lean tool-calling structured runnable answers exactly as ``with_structured_output(include_raw=True)``."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from drpo_agents.schemas import AnswerEvaluation
from drpo_agents.structured_methods import ToolCallStructured, provider_schema, structured_runnable

from .fakes import scripted

GOOD = {"scores": [{"aspect": "Clarity", "rationale": "fine", "score": 4}]}


def _same(lean: dict[str, Any], chain: dict[str, Any]) -> None:
    # The message ids name the run that made them; the rest is the same.
    assert lean["raw"].content == chain["raw"].content
    calls = [[(c["name"], c["args"]) for c in out["raw"].tool_calls] for out in (lean, chain)]
    assert calls[0] == calls[1]
    assert lean["parsed"] == chain["parsed"]
    assert type(lean["parsing_error"]) is type(chain["parsing_error"])


@pytest.mark.parametrize("reply", [GOOD, "no tool call, just text"])
@pytest.mark.parametrize("pydantic_target", [False, True])
async def test_lean_runnable_matches_with_structured_output(reply: Any, pydantic_target: bool) -> None:
    target: Any = AnswerEvaluation if pydantic_target else provider_schema(AnswerEvaluation)
    prompt = [HumanMessage("grade")]
    lean = ToolCallStructured.of(scripted(lambda _: reply), target)
    chain = scripted(lambda _: reply).with_structured_output(target, include_raw=True)
    _same(await lean.ainvoke(prompt), await chain.ainvoke(prompt))
    _same(lean.invoke(prompt), chain.invoke(prompt))


def test_models_with_langchains_default_get_the_lean_runnable() -> None:
    runnable = structured_runnable(scripted(lambda _: GOOD), AnswerEvaluation, "provider", None)
    assert isinstance(runnable, ToolCallStructured)


def test_provider_schema_is_a_fresh_copy_each_time() -> None:
    first = provider_schema(AnswerEvaluation)
    first["properties"].clear()  # a caller narrowing its copy (judge.scoring_schema)
    assert provider_schema(AnswerEvaluation)["properties"]
