from __future__ import annotations

import pytest
from pydantic import ValidationError

from drpo_agents.schemas import AnswerEvaluation, AspectSelection, ICLExample, PromptProposals, parse_score


@pytest.mark.parametrize(
    ("raw", "expected"), [(4, 4), ("4", 4), (" 5 ", 5), ("4/5", 4), ("3 / 5", 3), (2.0, 2), ("1.0", 1)]
)
def test_parse_score_reads_common_shapes(raw: object, expected: int) -> None:
    assert parse_score(raw) == expected


@pytest.mark.parametrize("raw", [7, 0, "7", "8/10", "four", None, True, 4.5, "", "4/6"])
def test_parse_score_rejects_everything_else(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_score(raw)


def test_aspect_selection_accepts_flat_and_nested_shapes() -> None:
    flat = AspectSelection.model_validate({"reasoning": "r", "selected_aspects": ["Safety", "Empathy"]})
    nested = AspectSelection.model_validate(
        {
            "query_analysis": {"main_topic": "t"},
            "aspects_selection": {"reasoning": "r", "selected_aspects": ["Safety", "Empathy"]},
        }
    )
    assert flat.selected_aspects == nested.selected_aspects == ["Safety", "Empathy"]
    assert nested.query_analysis is not None and nested.query_analysis.main_topic == "t"


@pytest.mark.parametrize(
    "aspects", [["Safety"], ["A", "B", "C", "D", "E", "F"], ["Safety", " safety "], ["Safety", " "]]
)
def test_aspect_selection_needs_two_to_five_distinct_names(aspects: list[str]) -> None:
    with pytest.raises(ValidationError):
        AspectSelection.model_validate({"reasoning": "r", "selected_aspects": aspects})


def test_evaluation_accepts_reference_mapping_and_computes_mean() -> None:
    evaluation = AnswerEvaluation.model_validate(
        {"Helpfulness": {"rationale": "ok", "score": "5"}, "Clarity": {"rationale": "meh", "score": "2"}}
    )
    assert [s.aspect for s in evaluation.scores] == ["Helpfulness", "Clarity"]
    assert evaluation.reward == pytest.approx(3.5)
    assert evaluation.score_of("clarity") == 2 and evaluation.score_of("Depth") is None


def test_evaluation_out_of_range_score_is_an_error_not_a_default() -> None:
    with pytest.raises(ValidationError, match="between 1 and 5"):
        AnswerEvaluation.model_validate({"scores": [{"aspect": "Depth", "rationale": "x", "score": 7}]})


def test_blank_prompt_proposal_is_rejected() -> None:
    with pytest.raises(ValidationError):
        PromptProposals.model_validate({"proposals": [{"analysis": "", "thought": "", "new_prompt": "   "}]})


def test_icl_example_strips_reference_markers() -> None:
    example = ICLExample(query="q", answer="<START>\nHello there.\n<END>")
    assert example.answer == "Hello there."
