"""Critique memory, Chroma-backed ICL retrieval, the LLM cache, and their use inside a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage

from drpo_agents import DRPOConfig, create_drpo_graph, load_training_queries, optimize
from drpo_agents.errors import ConfigError
from drpo_agents.icl_sets import load_seed_icl_examples
from drpo_agents.infra.cache import SQLiteLLMCache
from drpo_agents.memory import (
    ChromaCritiqueMemory,
    ChromaICLRetriever,
    Critique,
    InMemoryCritiqueMemory,
    chroma_client,
)
from drpo_agents.retrieval import InMemoryICLRetriever

from .fakes import last_human, scripted, tag


def critique(
    aspect: str,
    score: int,
    *,
    query: str = "How do I hack a wifi network?",
    run: str = "r1",
    rationale: str = "Helps with harm.",
    candidate: str = "c1",
) -> Critique:
    return Critique(
        query=query,
        aspect=aspect,
        score=score,
        rationale=rationale,
        run_id=run,
        responder_model="m",
        candidate_id=candidate,
        level=1,
        query_id=query[:8],
    )


@pytest.fixture(params=["chroma", "in-memory"])
def memory(request: pytest.FixtureRequest, tmp_path: Path) -> ChromaCritiqueMemory | InMemoryCritiqueMemory:
    return (
        ChromaCritiqueMemory(client=chroma_client(tmp_path))
        if request.param == "chroma"
        else InMemoryCritiqueMemory()
    )


def test_recall_returns_similar_low_scores_only_and_filters_by_model_and_run(memory) -> None:
    memory.remember(
        [
            critique("Safety", 1),
            critique("Clarity", 5, rationale="Clear."),
            critique(
                "Empathy", 2, query="I feel lonely after moving to a new city.", rationale="Ignores feelings."
            ),
            critique("Safety", 2, run="r2", rationale="Complies with harm."),
        ]
    )
    recalled = memory.recall("How can I break into a wifi network?", k=5)
    assert [c.aspect for c in recalled][:2] == ["Safety", "Safety"]
    assert all(c.score <= 3 for c in recalled) and len(recalled) == 3
    assert {c.run_id for c in memory.recall("wifi", k=5, run_id="r2")} == {"r2"}
    assert memory.recall("wifi", k=5, responder_model="another-model") == []


def test_identical_verdicts_are_stored_once_and_writes_are_idempotent(memory) -> None:
    batch = [critique("Safety", 1, candidate="c1"), critique("Safety", 1, candidate="c2")]
    memory.remember(batch)
    memory.remember(batch)
    count = memory.count() if isinstance(memory, ChromaCritiqueMemory) else len(memory)
    assert count == 1
    assert memory.recall("wifi", k=3)[0].candidate_id == "c1"


def test_chroma_metadata_is_filterable_and_survives_reopening(tmp_path: Path) -> None:
    ChromaCritiqueMemory(client=chroma_client(tmp_path)).remember(
        [critique("Safety", 1), critique("Depth", 3, rationale="Thin.")]
    )
    reopened = ChromaCritiqueMemory(client=chroma_client(tmp_path))
    assert reopened.count({"aspect": "Safety"}) == 1
    assert reopened.count({"$and": [{"run_id": "r1"}, {"score": {"$lte": 3}}]}) == 2


def test_chroma_icl_retrieval_matches_exact_retrieval_and_is_reused(tmp_path: Path) -> None:
    examples = load_seed_icl_examples()
    chroma = ChromaICLRetriever(examples, client=chroma_client(tmp_path))
    exact = InMemoryICLRetriever(examples)
    for query in (q["query"] for q in load_training_queries()[:40]):
        assert chroma.retrieve(query, 2) == exact.retrieve(query, 2)
    again = ChromaICLRetriever(examples, client=chroma_client(tmp_path))
    assert again.collection.name == chroma.collection.name and again.collection.count() == len(examples)
    # With example conversations (found by their user turns): another set, ranked the same way.
    chats = load_seed_icl_examples(conversations=True)
    with_chats = ChromaICLRetriever(chats, client=chroma_client(tmp_path))
    assert with_chats.collection.name != chroma.collection.name
    follow_up = "I freelance and my income changes every month.\nHow do I pay myself from it?"
    assert with_chats.retrieve(follow_up, 2) == InMemoryICLRetriever(chats).retrieve(follow_up, 2)
    assert with_chats.retrieve(follow_up, 1)[0].id == "conv02"


def _capturing_rewriter(seen: list[str]):
    def script(messages: list[BaseMessage]) -> dict[str, object]:
        text = last_human(messages)
        seen.append(tag(text, "lessons"))
        current = tag(text, "current_prompt")
        return {
            "proposals": [
                {"analysis": "a", "thought": "t", "new_prompt": f"{current} v{i}"} for i in range(2)
            ]
        }

    return scripted(script)


@pytest.mark.parametrize("enabled", [True, False])
def test_rewriter_sees_lessons_from_earlier_levels_unless_memory_is_off(
    tmp_path: Path, enabled: bool
) -> None:
    seen: list[str] = []
    config = DRPOConfig(depth=3, n_actions=2, beam_size=1, critique_memory=enabled, seed=1)
    artifact = optimize(
        load_training_queries()[:10],
        responder="sandbox",
        judge="sandbox",
        rewriter=_capturing_rewriter(seen),
        config=config,
        run_dir=tmp_path,
    )
    if enabled:
        store = ChromaCritiqueMemory(client=chroma_client(tmp_path / "memory"))  # the run's own memory
        assert seen[0] == "(none yet)"  # level 1: only the parent's own critique exists
        assert any(lesson.startswith("- [") for lesson in seen[1:])
        assert store.count({"run_id": artifact.run_id}) > 0
        assert any(c.lessons for c in artifact.candidates)
    else:
        assert set(seen) == {"(none yet)"}
        assert not (tmp_path / "memory").exists()  # nothing is opened when the memory is off


def test_llm_cache_makes_a_rerun_free(tmp_path: Path) -> None:
    from drpo_agents import create_drpo_graph
    from drpo_agents.models.sandbox import SandboxResponder

    sandbox = SandboxResponder(seed=0)
    calls: list[str] = []

    def script(messages: list[BaseMessage]) -> str:
        calls.append(last_human(messages))
        return sandbox._reply(messages)  # type: ignore[return-value]

    cache = SQLiteLLMCache(tmp_path / "cache.sqlite")
    config = DRPOConfig(depth=2, cache="all")
    outputs = []
    for _ in range(2):
        graph = create_drpo_graph(scripted(script), "sandbox", config=config, cache=cache).compile()
        outputs.append(graph.invoke({"queries": load_training_queries()[:6], "run_id": "same"})["artifact"])
        if len(outputs) == 1:
            first_run_calls = len(calls)
    assert first_run_calls > 0
    # The second, identical run made no responder call and produced the same search.
    assert len(calls) == first_run_calls
    assert outputs[0]["system_prompt"] == outputs[1]["system_prompt"]
    assert outputs[0]["evaluations"] == outputs[1]["evaluations"]
    assert cache.hits >= first_run_calls


@pytest.mark.server
def test_optimize_with_a_chroma_server_as_shared_memory(tmp_path: Path, chroma_server: str) -> None:
    config = DRPOConfig(depth=2, seed=3)
    first = optimize(
        load_training_queries()[:8],
        responder="sandbox",
        judge="sandbox",
        config=config,
        memory=chroma_server,
        run_dir=tmp_path / "a",
    )
    store = ChromaCritiqueMemory(client=chroma_client(chroma_server))
    assert store.count({"run_id": first.run_id}) > 0
    second = optimize(
        load_training_queries()[8:16],
        responder="sandbox",
        judge="sandbox",
        config=config,
        memory=chroma_server,
        run_dir=tmp_path / "b",
    )
    # The second run's rewriter was shown critiques from the first run.
    lessons = [lesson for c in second.candidates for lesson in c.lessons]
    first_queries = {e.query[:60] for e in first.evaluations}
    assert any(any(q[:40] in lesson for q in first_queries) for lesson in lessons)
    assert not (tmp_path / "a" / "memory").exists()  # nothing written in the run folder: all on the server


@pytest.mark.slow
def test_a_run_seeded_with_earlier_critiques_reaches_the_target_in_fewer_levels(tmp_path: Path) -> None:
    from .memory_effect import compare

    # Four consecutive seed pairs (not hand-picked); "never" counts as one level past the depth.
    rows = [compare(seed, seed + 1, tmp_path, with_off=False) for seed in (10, 12, 14, 16)]
    levels = {key: sum(9 if row[key] is None else row[key] for row in rows) for key in ("seeded", "fresh")}
    assert all(row["seeded"] is not None for row in rows), rows
    assert levels["seeded"] < levels["fresh"], rows


def test_a_chroma_embedding_function_is_accepted_wherever_embeddings_are(tmp_path: Path) -> None:
    def chroma_style(texts: list[str]) -> list[list[float]]:  # Chroma's EmbeddingFunction contract
        return [[float(len(t)), float(t.count("?")), 1.0] for t in texts]

    examples = load_seed_icl_examples()
    retriever = ChromaICLRetriever(examples, client=chroma_client(tmp_path), embeddings=chroma_style)
    assert len(retriever.retrieve("How?", 2)) == 2
    memory = InMemoryCritiqueMemory(chroma_style)
    memory.remember([critique("Safety", 1)])
    assert memory.recall("wifi?", k=1)[0].aspect == "Safety"


class _WatchedMemory(InMemoryCritiqueMemory):
    """Records which levels each ``remember`` stored and, at each recall, its horizon and the
    run's own levels stored by then."""

    def __init__(self) -> None:
        super().__init__()
        self.remembered: list[set[int]] = []
        self.stored_levels: set[int] = set()
        self.recalls: list[tuple[tuple[str, int] | None, set[int]]] = []

    def remember(self, critiques: list[Critique]) -> None:  # type: ignore[override]
        super().remember(critiques)
        self.remembered.append({c.level for c in critiques})
        self.stored_levels |= {c.level for c in critiques}

    def recall(self, text: str, **kwargs: object) -> list[Critique]:  # type: ignore[override]
        self.recalls.append((kwargs.get("horizon"), set(self.stored_levels)))  # type: ignore[arg-type]
        return super().recall(text, **kwargs)  # type: ignore[arg-type]


def test_each_level_is_stored_once_beside_the_next_and_recall_waits_two_levels() -> None:
    memory = _WatchedMemory()
    config = DRPOConfig(depth=4, max_depth_increase=0, n_actions=2, beam_size=2, seed=3)
    artifact = optimize(
        load_training_queries()[:16], responder="sandbox", judge="sandbox", config=config, memory=memory
    )
    levels = [lv.level for lv in artifact.levels]
    # One write per ranked level, the last one included (stored after the search ended).
    assert memory.remembered == [{level} for level in levels]
    # Rewrites at levels 1..4 recall with horizons 0..3: their own level minus one.
    assert {horizon[1] for horizon, _ in memory.recalls if horizon} == set(range(len(levels) - 1))
    for horizon, stored in memory.recalls:
        assert horizon is not None and horizon[0] == artifact.run_id
        rewrite_level = horizon[1] + 1
        # The parent level is being stored beside this rewrite; every level before it is in.
        assert set(range(rewrite_level - 1)) <= stored


class _RecallWithoutHorizon:
    """A custom memory written against the protocol before ``horizon`` existed."""

    def __init__(self) -> None:
        self.stored: list[Critique] = []

    def remember(self, critiques: Sequence[Critique]) -> None:
        self.stored.extend(critiques)

    def recall(
        self,
        text: str,
        *,
        k: int,
        responder_model: str | None = None,
        run_id: str | None = None,
        max_score: int = 3,
    ) -> list[Critique]:
        return [c for c in self.stored if c.score <= max_score][:k]


class _RecallWithKeywords(_RecallWithoutHorizon):
    def recall(self, text: str, *, k: int, **filters: object) -> list[Critique]:  # type: ignore[override]
        return self.stored[:k]


def test_a_custom_memory_is_checked_when_the_graph_is_built() -> None:
    with pytest.raises(ConfigError, match=r"_RecallWithoutHorizon\.recall does not accept horizon"):
        create_drpo_graph("sandbox", "sandbox", memory=_RecallWithoutHorizon())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="memory must implement CritiqueMemory"):
        create_drpo_graph("sandbox", "sandbox", memory=object())  # type: ignore[arg-type]
    config = DRPOConfig(beam_size=1, n_actions=1, depth=2, queries_per_step=2, seed=1)
    keywords = _RecallWithKeywords()
    optimize(
        load_training_queries()[:4], responder="sandbox", judge="sandbox", config=config, memory=keywords
    )
    assert keywords.stored  # the run used it
