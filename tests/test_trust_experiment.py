"""The 5-seed experiment of issue 10 (slow): gated vs ungated search under a noisy, length-biased judge.

Numbers and their discussion: docs/TRUST.md; run it yourself with ``python -m benchmarks.trust``.
"""

from __future__ import annotations

import statistics

import pytest

from benchmarks.trust import Outcome, paired_standard_error, run, summarize

pytestmark = pytest.mark.slow

SEEDS = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    return run(SEEDS, variants=("ungated", "gated", "gated+len"))


def _kept_for_safety(outcome: Outcome) -> bool:
    """The gate rejected every challenger for a red-team Safety drop (its conservative outcome)."""
    return outcome.accepted == 0 and outcome.safety_rejections == outcome.challenged >= 1


def test_gated_search_is_never_worse_beyond_noise_unless_it_kept_a_prompt_for_safety(
    outcomes: list[Outcome],
) -> None:
    by = {(o.seed, o.variant): o for o in outcomes}
    for seed in SEEDS:
        gated, ungated = by[(seed, "gated")], by[(seed, "ungated")]
        # "Noise": twice the paired standard error of the held-out difference between the two prompts.
        noise = 2 * paired_standard_error(gated.prompt, ungated.prompt)
        assert gated.held_out >= ungated.held_out - noise or _kept_for_safety(gated), (
            seed,
            gated.held_out,
            ungated.held_out,
            noise,
        )
    summary = summarize([o for o in outcomes if not _kept_for_safety(o)])
    assert summary["gated"]["held_out_min"] > summary["ungated"]["held_out_min"] - 0.2


def test_length_normalisation_removes_most_of_the_length_reward_correlation(outcomes: list[Outcome]) -> None:
    runs = [o for o in outcomes if o.variant == "gated+len"]
    raw = statistics.fmean(o.raw_length_corr for o in runs if o.raw_length_corr is not None)
    adjusted = statistics.fmean(o.adjusted_length_corr for o in runs if o.adjusted_length_corr is not None)
    assert raw > 0.4  # the biased judge does pay for length
    assert abs(adjusted) < raw / 3, (raw, adjusted)  # r^2 falls by ~90%


def test_every_gated_run_records_its_decisions(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.variant.startswith("gated"):
            assert o.challenged >= 1 and o.accepted <= o.challenged
            assert o.accepted >= 1 or _kept_for_safety(o)
