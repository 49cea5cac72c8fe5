"""The sandbox world is a real optimisation problem: behaviour follows the prompt, scores follow the text."""

from __future__ import annotations

from pathlib import Path

import pytest

from drpo_agents import DRPOConfig, load_eval_queries, load_training_queries, optimize
from drpo_agents.agents import Judge, PromptRewriter, Responder, RewriteCase
from drpo_agents.agents.rewriter import proposals_schema
from drpo_agents.icl_sets import load_seed_icl_examples
from drpo_agents.models import sandbox_models
from drpo_agents.models.registry import model_identity, resolve_model
from drpo_agents.models.sandbox import SandboxResponder, prompt_directives, query_kinds, score_aspect
from drpo_agents.models.sandbox.world import PRESETS, SandboxWorld
from drpo_agents.retrieval import InMemoryICLRetriever
from drpo_agents.schemas import PromptProposals, ProposalLimits, read_proposal_limits
from drpo_agents.structured import provider_schema

HARMFUL = "How can I break into my neighbour's car without a key?"
SAFETY_PROMPT = "You are an assistant.\n- Decline requests that could cause harm or break the law, and suggest a safe, legitimate alternative."


def test_responder_behaviour_depends_on_the_system_prompt() -> None:
    responder = SandboxResponder(seed=0)
    unsafe = responder.answer("You are a helpful assistant.", HARMFUL)
    safe = responder.answer(SAFETY_PROMPT, HARMFUL)
    assert "Step 1" in unsafe and "can't help" not in unsafe
    assert "can't help" in safe and "legitimate" in safe
    assert score_aspect("Safety", HARMFUL, unsafe)[0] == 1
    assert score_aspect("Safety", HARMFUL, safe)[0] == 5


def test_attention_span_makes_directive_order_matter() -> None:
    bullets = [
        "Structure answers with numbered points.",
        "Explain the reasoning behind each point in depth.",
        "Use a conversational tone and offer a follow-up.",
        "Be accurate: never invent numbers.",
        "Be concise.",
        "Acknowledge your limitations: you have no real-time data.",
    ]
    late = "Intro.\n" + "\n".join(f"- {b}" for b in bullets)
    early = "Intro.\n" + "\n".join(f"- {b}" for b in [bullets[-1], *bullets[:-1]])
    assert prompt_directives(late)[-1] == "limitations" and prompt_directives(early)[0] == "limitations"
    responder = SandboxResponder(seed=3, attention_span=2)
    queries = [q["query"] for q in load_training_queries()[:60]]
    said = lambda prompt: sum("real-time" in responder.answer(prompt, q) for q in queries)  # noqa: E731
    assert said(early) > 2 * said(late)


def test_judge_selects_aspects_from_what_the_query_needs() -> None:
    judge = Judge(sandbox_models()["judge"])
    assert "Safety" in judge.select_aspects(HARMFUL).selected_aspects
    assert (
        "Empathy"
        in judge.select_aspects("I feel so lonely since my best friend moved away.").selected_aspects
    )
    assert "Limitations" in judge.select_aspects("What is the latest price of gold today?").selected_aspects
    assert query_kinds("Write a poem about the sea") >= {"creative", "task"}


def test_judge_scores_what_the_answer_contains() -> None:
    query = "Explain how vaccines train the immune system."
    plain = "Vaccines are good. In conclusion, this is an important topic with many aspects to consider."
    better = (
        "Vaccines show the immune system a harmless piece of a germ.\n"
        "1. **Exposure**: the body sees an antigen, which means it can learn its shape.\n"
        "2. **Response**: B cells make antibodies because the antigen looks foreign.\n"
        "3. **Memory**: memory cells remain, so that a later infection is stopped quickly.\n"
        "For example, the measles vaccine usually protects for life."
    )
    judge = Judge(sandbox_models()["judge"])
    aspects = ["Helpfulness", "Clarity", "Depth"]
    assert judge.score(query, better, aspects).reward > judge.score(query, plain, aspects).reward + 1.5


def test_rewriter_targets_the_weakest_aspect_and_respects_the_budget() -> None:
    evaluation = Judge(sandbox_models()["judge"]).score(
        HARMFUL, "Sure, here is how. Step 1: ...", ["Safety", "Helpfulness"]
    )
    rewriter = PromptRewriter(sandbox_models(seed=1)["rewriter"])
    proposals = rewriter.propose(
        "You are a helpful assistant.", [RewriteCase(HARMFUL, "Sure...", evaluation)], n=3
    )
    assert len(proposals) == 3 and len({p.new_prompt for p in proposals}) == 3
    assert any("harm" in p.new_prompt.lower() or "refuse" in p.new_prompt.lower() for p in proposals)
    assert all(p.new_prompt.count("\n- ") <= 2 for p in proposals)


# The packaged rewrite template reworded: same variables, none of its sentences.
REWORDED_REWRITE = """Critique of the assistant under <current_prompt>$current_prompt</current_prompt>:
$cases
Earlier prompts: $previous_prompts. Lessons: <lessons>$lessons</lessons>
Produce $num_prompts alternatives. Bullets: no more than $max_bullets overall, $max_new_bullets added. $size_rule
"""


def test_the_rewrite_request_carries_its_limits_in_the_schema() -> None:
    limits = ProposalLimits(count=2, max_bullets=5, max_new_bullets=1)
    schema = proposals_schema(limits)
    assert read_proposal_limits(schema) == limits
    # As a bound tool's parameters (the sandbox's bind_tools), and absent from the bare schema.
    bound = sandbox_models()["rewriter"].bind_tools([schema])
    assert read_proposal_limits(bound.response_schema or {}) == limits  # type: ignore[attr-defined]
    assert read_proposal_limits(provider_schema(PromptProposals)) is None


@pytest.mark.parametrize(("n", "max_bullets", "max_new"), [(3, 8, 2), (2, 3, 1)])
def test_a_reworded_rewrite_template_does_not_change_the_simulation(
    tmp_path: Path, n: int, max_bullets: int, max_new: int
) -> None:
    (tmp_path / "prompt_rewrite.md").write_text(REWORDED_REWRITE, encoding="utf-8")
    evaluation = Judge(sandbox_models()["judge"]).score(
        HARMFUL, "Sure, here is how. Step 1: ...", ["Safety", "Helpfulness", "Clarity"]
    )
    current = "You are a helpful assistant.\n- Keep answers to the point.\n- Be a reliable and trustworthy assistant."
    cases = [RewriteCase(HARMFUL, "Sure...", evaluation)]

    def proposals(prompts_dir: Path | None) -> list[str]:
        rewriter = PromptRewriter(
            sandbox_models(seed=1)["rewriter"],
            max_bullets=max_bullets,
            max_new_bullets=max_new,
            prompts_dir=prompts_dir,
        )
        return [p.new_prompt for p in rewriter.propose(current, cases, n=n)]

    packaged, reworded = proposals(None), proposals(tmp_path)
    assert reworded == packaged and len(packaged) == n
    assert all(p.count("\n- ") <= max_bullets for p in packaged)


def _held_out_reward(prompt: str, seed: int) -> float:
    models = sandbox_models(seed)
    responder = Responder(models["responder"], retriever=InMemoryICLRetriever(load_seed_icl_examples()), k=2)
    judge = Judge(models["judge"])
    rewards = []
    for query in (q["query"] for q in load_eval_queries()):
        answer = responder.respond(prompt, query).answer
        rewards.append(judge.score(query, answer, judge.select_aspects(query).selected_aspects).reward)
    return sum(rewards) / len(rewards)


@pytest.mark.parametrize("seed", [0, 1])
def test_end_to_end_sandbox_run_beats_the_initial_prompt_on_held_out_queries(seed: int, tmp_path) -> None:
    config = DRPOConfig(
        depth=8, beam_size=2, n_actions=3, queries_per_step=2, max_depth_increase=2, seed=seed
    )
    artifact = optimize(
        load_training_queries(),
        responder=f"sandbox:{seed}",
        judge=f"sandbox:{seed}",
        config=config,
        run_dir=tmp_path,
    )
    assert (tmp_path / "artifact.json").is_file() and (tmp_path / "checkpoints.sqlite").is_file()
    assert artifact.system_prompt != config.initial_prompt
    assert artifact.reward_curve()[-1] > artifact.reward_curve()[0]
    before, after = (
        _held_out_reward(config.initial_prompt, seed),
        _held_out_reward(artifact.system_prompt, seed),
    )
    assert after > before + 0.5, (before, after)
    assert any("SIMULATION" in note for note in artifact.notes)


def test_smollm2_preset_is_a_knob_and_the_default_world_is_unchanged() -> None:
    calibrated = resolve_model("sandbox:1?preset=smollm2", "responder")
    assert isinstance(calibrated, SandboxResponder) and calibrated.world() == PRESETS["smollm2"]
    assert model_identity(calibrated) == "drpo-sandbox:responder(seed=1,preset=smollm2)"
    # The default responder's world is the default SandboxWorld (goldens depend on it) ...
    assert SandboxResponder(seed=1).world() == SandboxWorld()
    # ... and explicit knobs still apply on top of a preset.
    assert SandboxResponder(preset="smollm2", attention_span=2).world().attention_span == 2
