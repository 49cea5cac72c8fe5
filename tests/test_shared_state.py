"""Several runs sharing one PostgreSQL checkpointer and one Chroma server (the scale-out topology)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drpo_agents import DRPOConfig, aoptimize, load_training_queries
from drpo_agents.memory import ChromaCritiqueMemory, chroma_client


@pytest.mark.slow
@pytest.mark.server
async def test_concurrent_runs_share_postgres_and_chroma_without_interference(
    tmp_path: Path, postgres_url: str, chroma_server: str
) -> None:
    queries = load_training_queries()
    # Scope "run": each run recalls only its own critiques, so its result cannot depend on timing.
    config = DRPOConfig(depth=3, memory_scope="run", max_concurrency=4)

    async def run(run_id: str, offset: int, directory: Path) -> object:
        return await aoptimize(
            queries[offset : offset + 12],
            responder="sandbox",
            judge="sandbox",
            config=config,
            run_id=run_id,
            run_dir=directory,
            memory=chroma_server,
            checkpointer=postgres_url,
        )

    together = await asyncio.wait_for(
        asyncio.gather(run("shared-a", 0, tmp_path / "a"), run("shared-b", 40, tmp_path / "b")), timeout=240
    )
    # The same runs alone, with their own stores, give the same results: nothing was corrupted.
    # (The same run ids: recall breaks similarity ties by record id, which names the run.)
    alone_a = await aoptimize(
        queries[0:12], responder="sandbox", judge="sandbox", config=config, run_id="shared-a"
    )
    alone_b = await aoptimize(
        queries[40:52], responder="sandbox", judge="sandbox", config=config, run_id="shared-b"
    )
    for shared, alone in zip(together, (alone_a, alone_b), strict=True):
        assert shared.system_prompt == alone.system_prompt  # type: ignore[attr-defined]
        assert [lv.beam for lv in shared.levels] == [lv.beam for lv in alone.levels]  # type: ignore[attr-defined]

    store = ChromaCritiqueMemory(client=chroma_client(chroma_server))
    assert store.count({"run_id": "shared-a"}) > 0 and store.count({"run_id": "shared-b"}) > 0

    # A later run of the same responder model sees both earlier runs' critiques.
    later = await aoptimize(
        queries[80:90],
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=2),
        run_id="later",
        run_dir=tmp_path / "c",
        memory=chroma_server,
        checkpointer=postgres_url,
    )
    earlier_queries = {q["query"][:40] for q in queries[0:12] + queries[40:52]}
    lessons = [lesson for c in later.candidates for lesson in c.lessons]
    assert any(any(q in lesson for q in earlier_queries) for lesson in lessons)
