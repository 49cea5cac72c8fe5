from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from drpo_agents.config import StructuredOutputMethod
from drpo_agents.errors import StructuredOutputError, recoverable_errors
from drpo_agents.infra.calls import arun_plan, run_plan
from drpo_agents.schemas import AnswerEvaluation
from drpo_agents.structured import extract_json, plan_structured

from .fakes import scripted

GOOD = {"scores": [{"aspect": "Clarity", "rationale": "fine", "score": 4}]}


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        'Sure! ```json\n{"a": 1}\n``` hope this helps',
        'Here you go: {"a": 1} -- done',
        '```\n{"a": 1}\n```',
    ],
)
def test_extract_json_finds_the_object(text: str) -> None:
    assert extract_json(text) == {"a": 1}


def test_extract_json_without_json_raises() -> None:
    with pytest.raises(ValueError, match="no JSON"):
        extract_json("I think the answer is good.")


def test_tool_calling_path_returns_validated_object() -> None:
    model = scripted(lambda _: GOOD)
    result = run_plan(plan_structured(model, AnswerEvaluation, [HumanMessage("grade")]))
    assert result.value.reward == 4
    assert model.bound_tool == "AnswerEvaluation" or len(model.calls) == 1


async def test_model_without_tools_uses_text_path_with_schema_in_prompt() -> None:
    # GenericFakeChatModel has no bind_tools: the tolerant text path must handle it.
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content='Result:\n```json\n{"scores": [{"aspect": "Depth", "rationale": "r", "score": "4/5"}]}\n```'
                )
            ]
        )
    )
    result = await arun_plan(plan_structured(model, AnswerEvaluation, [HumanMessage("grade")]))
    assert result.value.scores[0].score == 4


def test_invalid_reply_is_reasked_with_the_error() -> None:
    replies = iter([{"scores": [{"aspect": "Clarity", "rationale": "x", "score": 9}]}, GOOD])
    model = scripted(lambda _: next(replies))
    result = run_plan(plan_structured(model, AnswerEvaluation, [HumanMessage("grade")], max_retries=2))
    assert result.value.reward == 4
    assert len(model.calls) == 2
    feedback = model.calls[1][-1].content
    assert "between 1 and 5" in feedback and "could not be used" in feedback
    assert len(result.messages) == 2  # both calls are accounted for


def test_validator_rejection_triggers_retry_and_final_error() -> None:
    model = scripted(lambda _: GOOD)

    def reject(value: AnswerEvaluation) -> AnswerEvaluation:
        raise ValueError("missing scores for aspect(s): Safety")

    with pytest.raises(StructuredOutputError, match="Safety") as info:
        run_plan(
            plan_structured(model, AnswerEvaluation, [HumanMessage("g")], max_retries=1, validate=reject)
        )
    assert len(model.calls) == 2 and len(info.value.raw_outputs) == 2
    # The replies travel with the error, so the tokens they cost can still be counted.
    assert [m.usage_metadata["total_tokens"] for m in info.value.messages] == [15, 15]


def test_garbage_text_fails_after_retries() -> None:
    model = scripted(lambda _: "I refuse to produce JSON.", tools=False)
    with pytest.raises(StructuredOutputError, match="no JSON object"):
        run_plan(plan_structured(model, AnswerEvaluation, [HumanMessage("g")], max_retries=2))
    assert len(model.calls) == 3


def test_reply_rejected_by_the_client_is_reasked() -> None:
    # langchain-openai's json_schema method validates the reply inside the call (openai's `parse`)
    # and raises pydantic's ValidationError there: that is an invalid reply, not a crash.
    replies = iter(
        ["Looks fine.", '{"scores": [{"aspect": "Clarity", "rationale": "x", "score": 9}]}', json.dumps(GOOD)]
    )
    calls: list[list[BaseMessage]] = []

    def client_parse(messages: list[BaseMessage]) -> dict[str, Any]:
        calls.append(messages)
        text = next(replies)
        return {
            "raw": AIMessage(text),
            "parsed": AnswerEvaluation.model_validate_json(text),
            "parsing_error": None,
        }

    model = scripted(lambda _: GOOD)
    with patch.object(
        type(model), "with_structured_output", lambda self, schema, **kw: RunnableLambda(client_parse)
    ):
        result = run_plan(plan_structured(model, AnswerEvaluation, [HumanMessage("grade")], max_retries=2))
    assert result.value.reward == 4 and len(calls) == 3
    # Invalid JSON survives in the error, so the model sees what it said; a schema error says what is wrong.
    assert calls[1][-2] == AIMessage("Looks fine.") and "Invalid JSON" in calls[1][-1].content
    assert isinstance(calls[2][-2], HumanMessage) and "between 1 and 5" in calls[2][-1].content


def test_a_body_that_is_not_json_is_a_recoverable_model_error() -> None:
    # openai raises json.JSONDecodeError, unretried, for a truncated or garbled response body.
    assert issubclass(json.JSONDecodeError, recoverable_errors())
    assert not issubclass(ValueError, recoverable_errors())


@pytest.mark.parametrize("method", ["auto", "function_calling", "json_schema", "json_mode", "text"])
def test_sandbox_models_answer_every_method_alike(method: StructuredOutputMethod) -> None:
    # The text and json_mode methods append the schema as a last turn; the sandbox must still
    # answer the request itself (it used to select aspects instead: "scores: Field required").
    from drpo_agents.agents import Judge, PromptRewriter, RewriteCase
    from drpo_agents.models.sandbox import sandbox_models

    models = sandbox_models(0)
    judge = Judge(models["judge"], method=method)
    query, answer = "How do tides work?", "The moon pulls the water."
    selection = run_plan(judge.plan_select_aspects(query))
    scored = run_plan(judge.plan_score(query, answer, selection.value.selected_aspects))
    cases = [RewriteCase(query=query, answer=answer, evaluation=scored.value)]
    proposals = run_plan(
        PromptRewriter(models["rewriter"], method=method).plan_propose("Be helpful.", cases, n=2)
    )
    expected = "function_calling" if method == "auto" else method
    assert {selection.method, scored.method, proposals.method} == {expected}
    outcome = (selection.value.selected_aspects, scored.value.reward, proposals.value.proposals)
    reference = Judge(models["judge"], method="function_calling")
    assert outcome[:2] == (
        run_plan(reference.plan_select_aspects(query)).value.selected_aspects,
        run_plan(reference.plan_score(query, answer, selection.value.selected_aspects)).value.reward,
    )
    assert len(outcome[2]) == 2
