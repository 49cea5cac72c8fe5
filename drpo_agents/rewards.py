"""Reward statistics: jury aggregation, length normalisation, paired bootstrap and safety scores.

Pure functions over plain records (the dicts kept in graph state), so the search, the
artifact and the experiments compute every number the same way.

Length-normalised reward (``DRPOConfig.length_normalization``). For an answer ``e`` to query
``q`` with ``w_e`` words, judged with reward ``r_e``, among the group ``G`` of answers to the
same query at the same level (the candidates compared with each other)::

    x_e   = ln(max(w_e, 1)) - mean_{g in G} ln(max(w_g, 1))     (log length relative to the group)
    b     = sum_e x_e (r_e - mean_G r) / (sum_e x_e^2 + 0.25)     (pooled within-query slope, ridge)
    r'_e  = r_e - b * x_e

``b`` is estimated from every search answer judged so far (the ridge term keeps it near 0 while
there are few answers, when a slope would be noise), so only the part of the reward
that the judge gives for being longer *than the other candidates' answers to the same query*
is removed; the mean reward of a group is unchanged. It is a linear correction in the spirit of
length-controlled win rates: it cannot tell a verbosity bias from quality that happens to need
more words, so use it when the judge is suspected of the former.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SAFETY_ASPECT = "Safety"
# Ridge on the length slope, in units of squared log length: the data outweigh the prior of "no
# length effect" once about one answer is twice or half as long as its group's typical answer.
LENGTH_SLOPE_RIDGE = 0.25


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (callers guarantee at least one value)."""
    return sum(values) / len(values)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation, or None with fewer than 3 pairs or no variation."""
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    mean_x, mean_y = mean(xs), mean(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    if var_x == 0 or var_y == 0:
        return None
    return float(cov / math.sqrt(var_x * var_y))


# -- jury ------------------------------------------------------------------------------------


def aggregate_jury(verdicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-aspect median of the jurors' scores (aspects in the first verdict's order)."""
    aspects = list(dict.fromkeys(a for verdict in verdicts for a in verdict))
    return {a: float(statistics.median([v[a] for v in verdicts if a in v])) for a in aspects}


def jury_disagreement(verdicts: Sequence[Mapping[str, float]]) -> float | None:
    """Mean over aspects of the jurors' score range (max - min); None for fewer than 2 jurors."""
    if len(verdicts) < 2:
        return None
    aspects = list(dict.fromkeys(a for verdict in verdicts for a in verdict))
    ranges = []
    for aspect in aspects:
        scores = [v[aspect] for v in verdicts if aspect in v]
        if len(scores) >= 2:
            ranges.append(max(scores) - min(scores))
    return mean(ranges) if ranges else 0.0


# -- length normalisation --------------------------------------------------------------------


def answer_length(answer: str) -> int:
    """Words in an answer (at least 1, so its log is defined)."""
    return max(1, len(answer.split()))


def _group_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    # Answers compared with each other: same query, same level, same phase.
    return (record.get("phase", "search"), record["level"], record["query_id"])


def _groups(records: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("reward") is not None and not record.get("error"):
            groups.setdefault(_group_key(record), []).append(record)
    return groups


def centered_log_lengths(records: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], float]]:
    """Each judged record with its log length relative to its group (same query, level and phase)."""
    out: list[tuple[Mapping[str, Any], float]] = []
    for group in _groups(records).values():
        logs = [math.log(answer_length(str(r.get("answer", "")))) for r in group]
        center = mean(logs)
        out.extend((r, log - center) for r, log in zip(group, logs, strict=True))
    return out


def length_slope(records: Iterable[Mapping[str, Any]]) -> float:
    """Pooled within-query slope of reward on log answer length, shrunk toward 0 (ridge)."""
    pairs = centered_log_lengths(records)
    by_group: dict[tuple[Any, ...], list[float]] = {}
    for record, _ in pairs:
        by_group.setdefault(_group_key(record), []).append(float(record["reward"]))
    group_means = {key: mean(values) for key, values in by_group.items()}
    sxy = sxx = 0.0
    for record, x in pairs:
        sxy += x * (float(record["reward"]) - group_means[_group_key(record)])
        sxx += x * x
    return sxy / (sxx + LENGTH_SLOPE_RIDGE)


def length_adjusted_rewards(records: Iterable[Mapping[str, Any]], slope: float) -> dict[int, float]:
    """``id(record) -> r - slope * x`` for every judged record (see the module docstring)."""
    return {id(r): float(r["reward"]) - slope * x for r, x in centered_log_lengths(records)}


def within_query_length_correlation(
    records: Sequence[Mapping[str, Any]], rewards: Mapping[int, float] | None = None
) -> float | None:
    """Correlation of relative log length with reward relative to the group's mean reward.

    ``rewards`` (``id(record) -> reward``) replaces the judged rewards, e.g. with adjusted ones.
    Comparing answers to the same query is what matters for the search: it ranks candidates
    by their answers to the same queries.
    """
    pairs = centered_log_lengths(records)
    values = [(rewards[id(r)] if rewards is not None else float(r["reward"]), x, r) for r, x in pairs]
    by_group: dict[tuple[Any, ...], list[float]] = {}
    for value, _, r in values:
        by_group.setdefault(_group_key(r), []).append(value)
    means = {key: mean(v) for key, v in by_group.items()}
    xs = [x for _, x, _ in values]
    ys = [value - means[_group_key(r)] for value, _, r in values]
    return pearson(xs, ys)


# -- acceptance gate -------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ascending ``sorted_values``, interpolating linearly between ranks."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (position - below)


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded, so reproducible).

    Raises:
        ValueError: for no values, fewer than one resample, or a confidence outside (0, 1).
    """
    if not values:
        raise ValueError("bootstrap of no values")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError("need resamples >= 1 and 0 < confidence < 1")
    rng = random.Random(seed)
    data = list(values)
    n = len(data)
    means = sorted(sum(rng.choices(data, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    return quantile(means, tail), quantile(means, 1 - tail)


def aspect_score(record: Mapping[str, Any], aspect: str) -> float | None:
    """A record's score on one aspect: the jurors' median when a jury judged it, else the judge's."""
    name = aspect.casefold()
    jury = record.get("jury") or []
    verdicts = [{s["aspect"].casefold(): float(s["score"]) for s in juror} for juror in jury if juror]
    if verdicts:
        values = [v[name] for v in verdicts if name in v]
        return float(statistics.median(values)) if values else None
    for score in record.get("scores", []):
        if str(score["aspect"]).casefold() == name:
            return float(score["score"])
    return None


def safety_score(records: Iterable[Mapping[str, Any]]) -> float | None:
    """Mean Safety score over judged records that were scored on Safety (None if none were)."""
    values = [s for r in records if not r.get("error") and (s := aspect_score(r, SAFETY_ASPECT)) is not None]
    return mean(values) if values else None
