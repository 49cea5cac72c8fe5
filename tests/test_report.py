"""The HTML run report: content and escaping (fast), and a real headless Chromium render (slow)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drpo_agents import (
    AlignmentArtifact,
    DRPOConfig,
    create_drpo_graph,
    load_eval_queries,
    load_training_queries,
    optimize,
)
from drpo_agents.artifact import CandidateRecord, EvaluationRecord, LevelRecord, TokenUsage
from drpo_agents.evaluation import evaluate
from drpo_agents.models.sandbox import SandboxJudge
from drpo_agents.report import render_report, reward_curve_svg, write_report, write_run_report
from drpo_agents.schemas import AspectScore, ICLExample

XSS = '</pre><script>document.title="pwned"</script><img src=x onerror="alert(1)">'


class Page(HTMLParser):
    """Every start tag with its attributes, and the text of script elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data

    def count(self, tag: str, **attrs: str) -> int:
        return sum(1 for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def scores(*pairs: tuple[str, int]) -> list[AspectScore]:
    return [AspectScore(aspect=a, score=s, rationale=f"{a} rationale {XSS}") for a, s in pairs]


def crafted_artifact() -> AlignmentArtifact:
    """A small search with a carried candidate, a failed evaluation and injection attempts everywhere."""
    base = "You are a helpful assistant."
    grown = base + "\n- Use numbered steps.\n- Be kind."
    reordered = base + "\n- Be kind.\n- Use numbered steps.\n- Explain why."
    candidates = [
        CandidateRecord(id="c0", parent_id=None, prompt=base, level=0, rewards=[2.0]),
        CandidateRecord(id="c1-0-0", parent_id="c0", prompt=grown, level=1, rewards=[2.0, 4.0]),
        CandidateRecord(id="c1-0-1", parent_id="c0", prompt=base + "\n- " + XSS, level=1, rewards=[2.0]),
        CandidateRecord(
            id="c2-0-0", parent_id="c1-0-0", prompt=reordered, level=2, rewards=[2.0, 4.0, 4.5], analysis=XSS
        ),
        CandidateRecord(
            id="c2-0-1", parent_id="c1-0-0", prompt=grown, level=2, rewards=[2.0, 4.0, 4.0], carried=True
        ),
    ]
    evaluations = [
        EvaluationRecord(
            candidate_id="c0",
            level=0,
            query_id="q1",
            query=f"How do I bake bread? {XSS}",
            answer=f"Mix flour. {XSS}",
            aspects=["Helpfulness", "Clarity"],
            scores=scores(("Helpfulness", 2), ("Clarity", 2)),
            reward=2.0,
        ),
        EvaluationRecord(
            candidate_id="c1-0-0",
            level=1,
            query_id="q2",
            query="Is it safe to mix bleach and ammonia?",
            answer="No.",
            aspects=["Safety", "Helpfulness", "Factuality"],
            scores=scores(("Safety", 5), ("Helpfulness", 3), ("Factuality", 4)),
            reward=4.0,
        ),
        EvaluationRecord(
            candidate_id="c1-0-1",
            level=1,
            query_id="q2",
            query="Is it safe to mix bleach and ammonia?",
            error=f"model error {XSS}",
        ),
        EvaluationRecord(
            candidate_id="c2-0-0",
            level=2,
            query_id="q3",
            query="Tell me a joke",
            answer="Why did...",
            aspects=["Engagement", "Clarity"],
            scores=scores(("Engagement", 5), ("Clarity", 4)),
            reward=4.5,
        ),
        EvaluationRecord(
            candidate_id="c2-0-1",
            level=2,
            query_id="q3",
            query="Tell me a joke",
            answer="Knock knock.",
            aspects=["Engagement", "Clarity"],
            scores=scores(("Engagement", 4), ("Clarity", 4)),
            reward=4.0,
        ),
    ]
    levels = [
        LevelRecord(
            level=0,
            query_ids=["q1"],
            beam=["c0"],
            beam_mean_rewards=[2.0],
            level_rewards=[2.0],
            depth_limit=2,
        ),
        LevelRecord(
            level=1,
            query_ids=["q2"],
            beam=["c1-0-0"],
            beam_mean_rewards=[3.0],
            level_rewards=[4.0],
            depth_limit=2,
            failures=[f"evaluate c1-0-1: model error {XSS}"],
        ),
        LevelRecord(
            level=2,
            query_ids=["q3"],
            beam=["c2-0-0", "c2-0-1"],
            beam_mean_rewards=[3.5, 3.33],
            level_rewards=[4.5, 4.0],
            depth_limit=3,
        ),
    ]
    return AlignmentArtifact(
        run_id="r-test",
        system_prompt=reordered,
        icl_examples=[ICLExample(id="icl1", query=f"Query {XSS}", answer=f"Answer {XSS}")],
        best_candidate_id="c2-0-0",
        candidates=candidates,
        evaluations=evaluations,
        levels=levels,
        config={"depth": 2, "note": XSS},
        models={"responder": "sandbox", "judge": "sandbox"},
        usage={
            "responder": TokenUsage(calls=4, input_tokens=1000, output_tokens=300),
            "judge": TokenUsage(calls=6, input_tokens=2000, output_tokens=150),
        },
        notes=["SIMULATION: not a language model.", f"a note {XSS}"],
    )


def test_report_has_every_section_and_a_plot_for_each_view() -> None:
    text = render_report(crafted_artifact())
    page = parse(text)
    for section in ("rewards", "tree", "diffs", "aspects", "cost", "final", "notes", "config"):
        assert page.count("section", id=section) == 1, section
    assert page.count("section", id="evaluation") == 0  # no evaluation given
    # reward plot, tree, score distribution, aspect frequency, tokens, prompt size
    assert page.count("svg", **{"class": "chart"}) == 6
    assert "<b>Simulation.</b>" in text
    assert page.count("g", **{"class": "node mark"}) == 5  # one per candidate
    assert "c1-0-1 failed" in text and "↻" in text  # failed and carried candidates are marked
    assert "evaluate c1-0-1: model error" in text  # failures are listed
    assert '<span class="tag moved">↕1</span>' in text  # reordered bullets are moves, not edits
    assert "<ins>- Explain why.</ins>" in text
    assert "1,300 tok · 4 calls" in text  # token usage per role


def test_every_text_from_the_run_is_escaped() -> None:
    text = render_report(crafted_artifact())
    page = parse(text)
    assert page.count("script") == 1 and page.count("img") == 0
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in text
    assert 'document.title="pwned"' not in text
    # Nothing is loaded from anywhere: only in-page links.
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "data", "srcset"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    # The page's only script is allowed by its hash; nothing else may run or load.
    csp = next(
        a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert (
        csp is not None and "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1]
    )
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_write_report_includes_an_evaluation_found_next_to_the_artifact(tmp_path: Path) -> None:
    artifact = crafted_artifact()
    artifact.save(tmp_path / "artifact.json")
    report = evaluate(
        load_eval_queries()[:3], responder="sandbox", judge="sandbox", artifact=artifact, resamples=50
    )
    report.save(tmp_path / "evaluation.json")

    path = write_run_report(tmp_path)
    assert path == tmp_path / "report.html"
    page = parse(path.read_text(encoding="utf-8"))
    assert page.count("section", id="evaluation") == 1
    assert "win rate" in path.read_text(encoding="utf-8")

    # Given explicitly, it is used wherever the report goes; a damaged file is reported, not fatal.
    out = write_report(artifact, tmp_path / "elsewhere" / "r.html", evaluation=report)
    assert parse(out.read_text(encoding="utf-8")).count("section", id="evaluation") == 1
    (tmp_path / "evaluation.json").write_text("{broken", encoding="utf-8")
    text = write_report(tmp_path / "artifact.json", tmp_path / "report.html").read_text(encoding="utf-8")
    assert parse(text).count("section", id="evaluation") == 0
    assert "evaluation.json next to the run could not be read" in text


def test_an_artifact_without_search_records_still_renders() -> None:
    bare = AlignmentArtifact(run_id="import", system_prompt="Be good.")
    text = render_report(bare)
    assert "No levels were recorded." in text and "Be good." in text
    assert reward_curve_svg(bare).startswith('<p class="empty">')


def test_reward_curve_svg_draws_both_series() -> None:
    svg = reward_curve_svg(crafted_artifact())
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    paths = re.findall(r'<path class="mark" d="([^"]+)"', svg)
    assert len(paths) == 2 and all(d.count("L") == 2 for d in paths)  # three levels each


class Tables(HTMLParser):
    """Every table of a page fragment as rows of cell texts (header rows included)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_after(fragment: str, heading: str) -> list[list[str]]:
    """The first table after the ``<h3>`` named ``heading``: header row, then body rows."""
    start = fragment.index(f"<h3>{heading}</h3>")
    parser = Tables()
    parser.feed(fragment[start:])
    parser.close()
    return parser.tables[0]


def test_trust_section_shows_gate_decisions_red_team_safety_and_jury_disagreement() -> None:
    config = DRPOConfig(
        beam_size=2,
        n_actions=2,
        depth=3,
        seed=0,
        validation_size=4,
        red_team_validation_size=2,
        acceptance_gate=True,
        jury_size=2,
        length_normalization=True,
        bootstrap_samples=200,
        critique_memory=False,
    )
    training = load_training_queries()
    queries = [q for q in training if q.get("category") != "red_team"][:10]
    queries += [q for q in training if q.get("category") == "red_team"][:3]
    graph = create_drpo_graph("sandbox", SandboxJudge(seed=0, noise=0.5), "sandbox", config=config)
    artifact = AlignmentArtifact.model_validate(graph.compile().invoke({"queries": queries})["artifact"])
    assert [d.level for d in artifact.gate_decisions] == [lvl.level for lvl in artifact.levels]
    assert any(d.challenger_id for d in artifact.gate_decisions)
    # Text from the run that reaches this section: model identities and the gate's reasons.
    decisions = [
        d.model_copy(update={"reason": f"{d.reason} {XSS}"}) if i == len(artifact.gate_decisions) - 1 else d
        for i, d in enumerate(artifact.gate_decisions)
    ]
    artifact = artifact.model_copy(
        update={"gate_decisions": decisions, "models": {**artifact.models, "judge": f"noisy {XSS}"}}
    )

    text = render_report(artifact)
    match = re.search(r'<section class="card" id="trust">(.*?)</section>', text, re.S)
    assert match is not None
    trust = match.group(1)
    assert "<h2>Can the reward be trusted?</h2>" in text
    assert (
        "after length normalisation" in trust and "This run ranked by the length-normalised reward" in trust
    )

    # One gate row per level: level, challenger, incumbent, gain, interval, safety, decision, why.
    gate = table_after(trust, "Acceptance gate")
    assert gate[0] == [
        "level",
        "challenger",
        "incumbent",
        "gain",
        "interval",
        "red-team safety",
        "decision",
        "why",
    ]
    assert [row[0] for row in gate[1:]] == [str(d.level) for d in artifact.gate_decisions]
    for row, d in zip(gate[1:], artifact.gate_decisions, strict=True):
        assert row[1] == (d.challenger_id or "–") and row[2] == d.incumbent_id
        assert row[6] == ("accepted" if d.accepted else "kept incumbent")
        assert row[7].startswith(d.reason.split(":")[0])
    assert gate[1][7] == "the initial prompt is the first incumbent"  # level 0 has no challenger
    accepted = sum(d.accepted for d in artifact.gate_decisions)
    challenged = sum(1 for d in artifact.gate_decisions if d.challenger_id)
    assert f"{accepted} of {challenged} new best prompts replaced the incumbent" in trust

    # Validation: every prompt the gate compared, with its Safety on the red-team queries.
    validation = table_after(trust, "Validation (held-out training queries)")
    assert validation[0][:5] == ["candidate", "mean", "std", "red-team safety", "failed"]
    judged = {d.incumbent_id for d in artifact.gate_decisions} | {
        d.challenger_id for d in artifact.gate_decisions if d.challenger_id
    }
    assert {row[0].removesuffix(" (chosen)") for row in validation[1:]} == judged
    assert all(re.fullmatch(r"\d\.\d\d", row[3]) for row in validation[1:])  # a score for every one
    chosen = [row for row in validation[1:] if row[0].endswith(" (chosen)")]
    assert [row[0] for row in chosen] == [f"{artifact.best_candidate_id} (chosen)"]

    # Jury disagreement per level (two jurors: the noisy judge asked twice, aspects rotated).
    jury = table_after(trust, "Jury disagreement")
    assert jury[0] == ["level", "mean disagreement"]
    assert [row[0] for row in jury[1:]] == [str(lvl.level) for lvl in artifact.levels]
    assert [row[1] for row in jury[1:]] == [f"{lvl.jury_disagreement:.2f}" for lvl in artifact.levels]

    # Everything from the run is escaped.
    page = parse(text)
    assert page.count("script") == 1 and page.count("img") == 0
    assert 'document.title="pwned"' not in text
    assert trust.count("&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;") == 2


# --------------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------------


def chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(
        "no chromium binary (Debian: apt-get install chromium); the report is not rendered in a browser"
    )


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        # No network at all: names do not resolve and any request would go to a closed port.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.slow
def test_report_of_a_real_sandbox_run_renders_in_headless_chromium(tmp_path: Path) -> None:
    binary = chromium()
    run_dir = tmp_path / "run"
    artifact = optimize(
        load_training_queries(),
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=3),
        run_dir=run_dir,
    )
    evaluate(load_eval_queries()[:6], responder="sandbox", judge="sandbox", artifact=artifact).save(
        run_dir / "evaluation.json"
    )
    report = write_run_report(run_dir)
    url = report.resolve().as_uri()

    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stdout[:500]
    charts = re.search(r'data-charts="(\d+)"', body.group(0))
    drawn = re.search(r'data-charts-drawn="(\d+)"', body.group(0))
    # The page's script ran (so the CSP hash matched) and measured every plot as drawn:
    # reward curve, tree, aspect scores, aspect frequency, tokens, prompt size, evaluation (+ win bars).
    assert charts is not None and drawn is not None, body.group(0)
    assert int(charts.group(1)) >= 7 and drawn.group(1) == charts.group(1)
    reward_paths = re.findall(r'<path class="mark" d="(M[^"]+)"', dom.stdout)
    assert len(reward_paths) >= 2 and all(d.count("L") == 3 for d in reward_paths[:2])  # levels 0-3
    assert dom.stdout.count('class="node mark"') == len(artifact.candidates)
    assert "Refused to" not in dom.stderr and "Content Security Policy" not in dom.stderr

    shot = tmp_path / "shot.png"
    result = run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        "--hide-scrollbars",
        url,
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 60_000  # a blank page of that size compresses to a few kilobytes
