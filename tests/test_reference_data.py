"""The official DRPO data parses with our schemas (compatibility with the reference implementation)."""

from __future__ import annotations

import json
from pathlib import Path

from drpo_agents.aspects import AspectCatalog
from drpo_agents.icl_sets import load_icl_examples
from drpo_agents.schemas import AnswerEvaluation, AspectSelection


def test_reference_aspect_selections_validate(reference_dir: Path) -> None:
    selections = json.loads((reference_dir / "metrics_cache.json").read_text(encoding="utf-8"))
    catalog = AspectCatalog.default()
    assert len(selections) == 55
    for query, raw in selections.items():
        selection = AspectSelection.model_validate(raw)
        assert 2 <= len(selection.selected_aspects) <= 5, query
        assert selection.query_analysis is not None and selection.query_analysis.user_intent
        # Every aspect GPT-4 chose is in our catalog.
        assert all(catalog.resolve(name) == name for name in selection.selected_aspects), (
            selection.selected_aspects
        )


def test_reference_prompt_evaluations_validate(reference_dir: Path) -> None:
    files = sorted((reference_dir / "optimized-prompts").glob("*.json"))
    assert len(files) == 9
    levels = 0
    for path in files:
        trace = json.loads(path.read_text(encoding="utf-8"))
        for name, level in trace.items():
            evaluation = AnswerEvaluation.model_validate(level["Evaluation of the prompt"])
            assert 1.0 <= evaluation.reward <= 5.0, (path.name, name)
            levels += 1
    assert levels == 268


def test_reference_icl_examples_load(reference_dir: Path) -> None:
    examples = load_icl_examples(reference_dir / "ICL_examples.json")
    assert len(examples) == 16
    assert all(not e.answer.startswith("<START>") and not e.answer.endswith("<END>") for e in examples)
    assert all(e.query and len(e.answer) > 100 for e in examples)
