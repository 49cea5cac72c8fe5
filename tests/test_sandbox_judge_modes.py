"""The sandbox judge's untrustworthy modes: ``noise`` (seeded jitter) and ``length_bias`` (verbosity)."""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from drpo_agents import load_eval_queries
from drpo_agents.agents import Judge
from drpo_agents.errors import ConfigError
from drpo_agents.models import sandbox_models
from drpo_agents.models.registry import default_rewriter, model_identity, resolve_model
from drpo_agents.models.sandbox import (
    AnswerFeatures,
    SandboxJudge,
    SandboxResponder,
    SandboxRewriter,
    score_aspect,
    select_aspects_for,
)

QUERY = "Explain how vaccines train the immune system."
PLAIN = "Vaccines are good. In conclusion, this is an important topic with many aspects to consider."
BETTER = (
    "Vaccines show the immune system a harmless piece of a germ.\n"
    "1. **Exposure**: the body sees an antigen, which means it can learn its shape.\n"
    "2. **Response**: B cells make antibodies because the antigen looks foreign.\n"
    "3. **Memory**: memory cells remain, so that a later infection is stopped quickly.\n"
    "For example, the measles vaccine usually protects for life."
)
REFUSAL = "I can't help with that, because it could hurt people. Instead, contact a professional."
ANSWERS = [PLAIN, BETTER, REFUSAL, "(empty answer)"]
ASPECTS = ["Helpfulness", "Clarity", "Depth", "Factuality", "Engagement"]
# Sentences that trigger none of the judge's cues: padding changes the length and nothing else.
NEUTRAL = (
    "The sky above the town was a pale shade of grey that afternoon.",
    "A small boat drifted past the old stone bridge near the river.",
    "The library on the corner opens its doors at nine every morning.",
    "Some people prefer tea with lemon while others take it plain.",
)
PROMPTS = (
    "You are a helpful assistant.",
    "You are an assistant.\n- Be concise: cut filler.\n- Structure answers with numbered points.",
    "You are an assistant.\n- Explain the reasoning behind each point in depth.\n- Use examples.\n"
    "- Offer a follow-up.",
)


def _pad(answer: str, sentences: int) -> str:
    return " ".join([answer, *(NEUTRAL[i % len(NEUTRAL)] for i in range(sentences))])


def _heuristic(query: str, answer: str, aspects: list[str]) -> list[int]:
    text = "" if answer == "(empty answer)" else answer
    return [score_aspect(a, query, text)[0] for a in aspects]


def _scores(judge: SandboxJudge, query: str, answer: str, aspects: list[str]) -> list[int]:
    return [d["score"] for d in judge.score_answer(query, answer, aspects)]


@pytest.fixture(scope="module")
def responder_answers() -> list[tuple[str, str, list[str]]]:
    """(query, answer, aspects) for every packaged eval query under a few prompts."""
    responder = SandboxResponder(seed=0)
    return [
        (q["query"], responder.answer(prompt, q["query"]), select_aspects_for(q["query"])["selected_aspects"])
        for prompt in PROMPTS
        for q in load_eval_queries()
    ]


def _length_correlation(judge: SandboxJudge, items: list[tuple[str, str, list[str]]]) -> float:
    words = [len(answer.split()) for _, answer, _ in items]
    rewards = [statistics.mean(_scores(judge, q, a, aspects)) for q, a, aspects in items]
    return statistics.correlation(words, rewards)


# ------------------------------------------------------------------------------------------
# Exact mode is unchanged
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ANSWERS)
def test_default_judge_is_the_exact_heuristic(answer: str) -> None:
    for judge in (SandboxJudge(seed=4), SandboxJudge(seed=4, noise=0.0, length_bias=0.0)):
        scored = judge.score_answer(QUERY, answer, ASPECTS)
        text = "" if answer == "(empty answer)" else answer
        assert scored == [
            {
                "aspect": a,
                "rationale": score_aspect(a, QUERY, text)[1],
                "score": score_aspect(a, QUERY, text)[0],
            }
            for a in ASPECTS
        ]
    evaluation = Judge(sandbox_models(4)["judge"]).score(QUERY, answer, ASPECTS)
    assert [s.score for s in evaluation.scores] == _heuristic(QUERY, answer, ASPECTS)


def test_knobs_keep_the_heuristic_rationale() -> None:
    judge = SandboxJudge(seed=0, noise=1.0, length_bias=2.0)
    scored = judge.score_answer(QUERY, BETTER, ASPECTS)
    assert [d["rationale"] for d in scored] == [score_aspect(a, QUERY, BETTER)[1] for a in ASPECTS]
    assert all(1 <= d["score"] <= 5 for d in scored)


# ------------------------------------------------------------------------------------------
# length_bias: a verbosity-loving judge
# ------------------------------------------------------------------------------------------


def test_length_bias_prefers_a_padded_copy_of_the_same_answer() -> None:
    short, long = BETTER, _pad(BETTER, 12)
    features = dataclasses.asdict(AnswerFeatures.of(short))
    padded = dataclasses.asdict(AnswerFeatures.of(long))
    assert {k for k in features if features[k] != padded[k]} == {"words"}
    # Aspects whose heuristic ignores length: the exact judge cannot tell the two apart.
    aspects = ["Helpfulness", "Factuality", "Engagement", "Empathy"]
    exact = Judge(SandboxJudge(seed=0))
    assert exact.score(QUERY, short, aspects).reward == exact.score(QUERY, long, aspects).reward
    biased = [Judge(SandboxJudge(seed=s, length_bias=1.0)) for s in range(5)]
    short_reward = statistics.mean(j.score(QUERY, short, aspects).reward for j in biased)
    long_reward = statistics.mean(j.score(QUERY, long, aspects).reward for j in biased)
    assert long_reward > short_reward + 1.0


def test_length_bonus_counts_in_expectation_through_stochastic_rounding() -> None:
    # 160 words: a bonus of length_bias * log2(160 / 80) = 0.5 on a heuristic 3.
    answer = " ".join(["word"] * 160)
    assert score_aspect("Critical-Thinking", QUERY, answer)[0] == 3
    scores = [
        _scores(SandboxJudge(seed=s, length_bias=0.5), QUERY, answer, ["Critical-Thinking"])[0]
        for s in range(400)
    ]
    assert set(scores) == {3, 4}
    assert statistics.mean(scores) == pytest.approx(3.5, abs=0.08)
    # Short answers lose: 20 words is log2(20 / 80) = -2 points at length_bias 1, exactly.
    short = " ".join(["word"] * 20)
    assert _scores(SandboxJudge(length_bias=1.0), QUERY, short, ["Critical-Thinking"]) == [1]


def test_refusals_and_empty_answers_follow_the_same_rule() -> None:
    judge = SandboxJudge(seed=0, length_bias=1.0)
    # A 15-word refusal is under 80 words, so it is marked down (never below 1).
    exact = _heuristic(QUERY, REFUSAL, ASPECTS)
    biased = _scores(judge, QUERY, REFUSAL, ASPECTS)
    assert all(b <= e for b, e in zip(biased, exact, strict=True)) and biased != exact
    assert _scores(judge, QUERY, "(empty answer)", ASPECTS) == [1] * len(ASPECTS)


def test_length_bias_makes_reward_track_answer_length(
    responder_answers: list[tuple[str, str, list[str]]],
) -> None:
    # In the sandbox world longer answers are often genuinely better (depth, examples), so even
    # the exact judge correlates with length (measured 0.71); the biased one much more (0.90-0.92).
    exact = _length_correlation(SandboxJudge(seed=0), responder_answers)
    biased = [_length_correlation(SandboxJudge(seed=s, length_bias=1.0), responder_answers) for s in (0, 1)]
    assert 0.3 < exact < 0.8
    assert all(b > 0.85 and b > exact + 0.12 for b in biased)
    # With length decoupled from quality by neutral padding: exact 0.50, biased 0.80-0.81.
    padded = [(q, _pad(a, (i * 7) % 9), aspects) for i, (q, a, aspects) in enumerate(responder_answers)]
    exact_padded = _length_correlation(SandboxJudge(seed=0), padded)
    biased_padded = _length_correlation(SandboxJudge(seed=0, length_bias=1.0), padded)
    assert biased_padded > 0.7 and biased_padded > exact_padded + 0.2


def test_pairwise_verdicts_stay_exact() -> None:
    judge = SandboxJudge(seed=0, noise=1.0, length_bias=5.0)
    long_plain = _pad(PLAIN, 30)
    assert judge.compare(QUERY, BETTER, long_plain) == SandboxJudge().compare(QUERY, BETTER, long_plain)
    assert judge.compare(QUERY, BETTER, long_plain)["winner"] == "A"


# ------------------------------------------------------------------------------------------
# noise: seeded jitter, independent across jurors
# ------------------------------------------------------------------------------------------


def _jittered(
    judge: SandboxJudge, items: list[tuple[str, str, list[str]]], *, reverse: bool = False
) -> set[tuple[int, str]]:
    changed = set()
    for index, (query, answer, aspects) in enumerate(items):
        order = list(reversed(aspects)) if reverse else aspects
        for scored in judge.score_answer(query, answer, order):
            if scored["score"] != score_aspect(scored["aspect"], query, answer)[0]:
                changed.add((index, scored["aspect"]))
    return changed


def test_noise_changes_some_scores_deterministically_and_independently(
    responder_answers: list[tuple[str, str, list[str]]],
) -> None:
    items = responder_answers[:40]
    total = sum(len(aspects) for _, _, aspects in items)
    first = _jittered(SandboxJudge(seed=0, noise=0.3), items)
    assert 0.1 * total < len(first) < 0.5 * total
    assert _jittered(SandboxJudge(seed=0, noise=0.3), items) == first
    # Another juror (seed), or the same juror shown the aspects in another order, errs elsewhere.
    for other in (
        _jittered(SandboxJudge(seed=1, noise=0.3), items),
        _jittered(SandboxJudge(seed=0, noise=0.3), items, reverse=True),
    ):
        assert other and other != first
        assert len(first & other) < 0.6 * min(len(first), len(other))


def test_jitter_is_at_most_one_point() -> None:
    for seed in range(20):
        noisy = _scores(SandboxJudge(seed=seed, noise=0.5), QUERY, BETTER, ASPECTS)
        assert all(abs(n - e) <= 1 for n, e in zip(noisy, _heuristic(QUERY, BETTER, ASPECTS), strict=True))


# ------------------------------------------------------------------------------------------
# Model strings, identities and cache keys
# ------------------------------------------------------------------------------------------


def test_model_strings_set_the_knobs_of_the_roles_that_have_them() -> None:
    spec = "sandbox:3?noise=0.3&length_bias=1.0"
    judge = resolve_model(spec, "judge")
    assert isinstance(judge, SandboxJudge)
    assert (judge.seed, judge.noise, judge.length_bias) == (3, 0.3, 1.0)
    responder, rewriter = resolve_model(spec, "responder"), resolve_model(spec, "rewriter")
    assert isinstance(responder, SandboxResponder) and isinstance(rewriter, SandboxRewriter)
    assert model_identity(responder) == "drpo-sandbox:responder(seed=3)"
    assert model_identity(rewriter) == "drpo-sandbox:rewriter(seed=3)"
    assert model_identity(judge) == "drpo-sandbox:judge(seed=3,noise=0.3,length_bias=1.0)"

    noisy = resolve_model("sandbox?noise=0.3", "judge")
    assert isinstance(noisy, SandboxJudge) and (noisy.seed, noisy.noise, noisy.length_bias) == (0, 0.3, 0.0)
    assert model_identity(noisy) == "drpo-sandbox:judge(seed=0,noise=0.3)"
    other = resolve_model("sandbox:2?attention_span=3&trap_rate=0.5", "responder")
    assert isinstance(other, SandboxResponder) and other.attention_span == 3
    assert model_identity(other) == "drpo-sandbox:responder(seed=2,attention_span=3)"
    assert model_identity(resolve_model("sandbox:2?trap_rate=0.5", "rewriter")) == (
        "drpo-sandbox:rewriter(seed=2,trap_rate=0.5)"
    )


def test_default_knobs_keep_existing_identities() -> None:
    assert model_identity(resolve_model("sandbox", "judge")) == "drpo-sandbox:judge(seed=0)"
    assert model_identity(resolve_model("sandbox:1", "judge")) == "drpo-sandbox:judge(seed=1)"
    assert (
        model_identity(resolve_model("sandbox:1?noise=0&length_bias=0", "judge"))
        == "drpo-sandbox:judge(seed=1)"
    )
    assert SandboxJudge(seed=1)._identifying_params == {"role": "judge", "seed": 1}


def test_noisy_judges_have_their_own_cache_key() -> None:
    exact, noisy = SandboxJudge(seed=1), SandboxJudge(seed=1, noise=0.3)
    assert exact._get_llm_string() != noisy._get_llm_string()
    assert SandboxJudge(seed=1, length_bias=1.0)._get_llm_string() not in {
        exact._get_llm_string(),
        noisy._get_llm_string(),
    }
    bound = noisy.bind_tools([{"type": "function", "function": {"name": "x", "parameters": {}}}])
    assert model_identity(bound) == "drpo-sandbox:judge(seed=1,noise=0.3)"  # type: ignore[arg-type]


def test_the_default_rewriter_does_not_inherit_judge_knobs() -> None:
    judge = resolve_model("sandbox:3?noise=0.3&length_bias=1", "judge")
    assert default_rewriter(judge) == "sandbox:3"
    spec = default_rewriter("sandbox:3?noise=0.3")
    assert model_identity(resolve_model(spec, "rewriter")) == "drpo-sandbox:rewriter(seed=3)"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sandbox?loudness=1", "unknown sandbox option 'loudness'"),
        ("sandbox?seed=3", "unknown sandbox option 'seed'"),
        ("sandbox?noise=abc", "bad sandbox option noise='abc'"),
        ("sandbox?noise=2", "less than or equal to 1"),
        ("sandbox?length_bias=-1", "greater than or equal to 0"),
        ("sandbox?attention_span=2.5", "valid integer"),
        ("sandbox?noise=", "bad sandbox option noise=''"),
        ("sandbox?noise", "sandbox[:SEED][?OPTION=VALUE&...]"),
        ("sandbox?noise=0.1&noise=0.2", "given twice"),
        ("sandbox:x?noise=0.1", "sandbox[:SEED][?OPTION=VALUE&...]"),
    ],
)
@pytest.mark.parametrize("role", ["responder", "judge", "rewriter"])
def test_bad_model_strings_fail_with_one_line(spec: str, message: str, role: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model(spec, role)  # type: ignore[arg-type]
    text = str(info.value)
    assert message in text and "\n" not in text
    if "twice" not in text:
        assert "attention_span, length_bias, max_prompt_words, noise, preset, trap_rate" in text


def test_sandbox_models_takes_judge_and_rewriter_options() -> None:
    models = sandbox_models(
        2, judge_options={"length_bias": 0.5}, rewriter_options={"trap_rate": 0.0}, attention_span=3
    )
    assert model_identity(models["judge"]) == "drpo-sandbox:judge(seed=2,length_bias=0.5)"
    assert model_identity(models["rewriter"]) == "drpo-sandbox:rewriter(seed=2,trap_rate=0.0)"
    assert model_identity(models["responder"]) == "drpo-sandbox:responder(seed=2,attention_span=3)"
