"""Conversations as training and held-out data: the forms apps export, one clear line per bad item,
the history in front of the responder and the judge, and a sandbox search that learns to use it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from drpo_agents import DRPOConfig, optimize
from drpo_agents.datasets import load_eval_conversations, load_queries, normalize_queries
from drpo_agents.errors import ConfigError
from drpo_agents.evaluation import EvaluationReport, evaluate
from drpo_agents.search.estimate import estimate_run
from drpo_agents.tracing import read_trace

from .test_cli_errors import drpo, one_error

DATA = Path(__file__).parent / "data" / "conversations"
TRAIN, HELD_OUT = DATA / "train.jsonl", DATA / "held_out.jsonl"
MESSAGES = [
    {"role": "system", "content": "You are the travel desk of Acme Tours."},
    {"role": "user", "content": "I'm flying to Lisbon on 14 May with my two kids."},
    {"role": "assistant", "content": "Lovely, May is a good month for Lisbon."},
    {"role": "user", "content": "What should we pack?"},
]
EXPECTED = {
    "id": "c1",
    "query": "What should we pack?",
    "history": MESSAGES[1:3],
    "system": "You are the travel desk of Acme Tours.",
}


def test_the_forms_apps_export_read_as_one_conversation() -> None:
    openai = {"id": "c1", "messages": MESSAGES}
    langsmith = {"id": "c1", "inputs": {"messages": MESSAGES}}
    langchain = [
        SystemMessage(MESSAGES[0]["content"]),
        HumanMessage(MESSAGES[1]["content"]),
        AIMessage(MESSAGES[2]["content"]),
        HumanMessage(MESSAGES[3]["content"]),
    ]
    assert normalize_queries([openai]) == [EXPECTED]
    assert normalize_queries([langsmith]) == [EXPECTED]
    assert normalize_queries([langchain]) == [{**EXPECTED, "id": "q0001"}]
    # A query record as normalize_queries returns it reads back the same (the search re-reads them).
    assert normalize_queries([EXPECTED]) == [EXPECTED]
    # Content blocks and LangChain's role names are read too; a single-turn item is unchanged.
    blocks = [{"type": "human", "content": [{"type": "text", "text": "Hi"}]}]
    assert normalize_queries([blocks, "How do tides work?"]) == [
        {"id": "q0001", "query": "Hi"},
        {"id": "q0002", "query": "How do tides work?"},
    ]


@pytest.mark.parametrize(
    ("messages", "fault"),
    [
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "last message must be the user's",
        ),
        ([{"role": "tool", "content": "x"}], "tool calls and tool results are not supported"),
        ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
        ([{"role": "user", "content": "  "}], "the user message is empty"),
        ([], "non-empty list of messages"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "b"},
                {"role": "user", "content": "c"},
            ],
            "system message after the conversation began",
        ),
    ],
)
def test_a_bad_conversation_is_one_line_naming_the_item_and_the_fault(
    tmp_path: Path, messages: list[Any], fault: str
) -> None:
    good = {"id": "ok", "messages": MESSAGES}
    path = tmp_path / "conversations.jsonl"
    path.write_text(
        "\n".join(json.dumps(x) for x in (good, {"id": "bad", "messages": messages})), encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_queries(path)  # nothing partially loaded: the file is refused whole
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "query #2" in message and fault in message


def _consistency(artifact: dict[str, Any], level: int) -> float:
    scores = [
        s["score"]
        for e in artifact["evaluations"]
        if e["level"] == level
        for s in e["scores"]
        if s["aspect"] == "Consistency"
    ]
    assert scores, f"no Consistency score at level {level}"
    return sum(scores) / len(scores)


@pytest.mark.slow
def test_cli_optimizes_and_evaluates_on_conversations(tmp_path: Path) -> None:
    run = drpo(
        "optimize",
        "--sandbox",
        "--queries",
        str(TRAIN),
        "--depth",
        "4",
        "--run-dir",
        "run",
        "--quiet",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    artifact = json.loads((tmp_path / "run" / "artifact.json").read_text(encoding="utf-8"))
    # The judge chose Consistency for conversations, and the search learned to use earlier turns.
    last = max(e["level"] for e in artifact["evaluations"])
    assert _consistency(artifact, 0) < 3 <= 4 <= _consistency(artifact, last)
    assert "earlier" in artifact["system_prompt"]
    # The history reached the responder (as the turns before the query) and the judge (in its prompt).
    first_turns = {json.loads(line)["messages"][0]["content"] for line in TRAIN.read_text().splitlines()}
    responder_saw, judge_saw = set(), 0
    for record in read_trace(tmp_path / "run" / "trace.jsonl"):
        if record["run_type"] != "llm":
            continue
        messages = record["inputs"]["messages"][0]
        texts = [str(m["content"]) for m in messages]
        if "drpo:responder" in record["tags"] and len(messages) >= 4:
            responder_saw |= first_turns & set(texts[1:-1])
        if "drpo:judge" in record["tags"]:
            judge_saw += any("<earlier_turns>" in t and t.count("user: ") for t in texts)
    assert len(responder_saw) >= 4 and judge_saw >= 4, (len(responder_saw), judge_saw)

    # inspect and the report show the conversations, their earlier turns folded.
    inspected = drpo("inspect", "run", cwd=tmp_path)
    assert inspected.returncode == 0 and "Conversations (24 of the training queries" in inspected.stdout
    assert json.loads(drpo("inspect", "run", "--json", cwd=tmp_path).stdout)["conversations"]["t001"] == 2
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert '<details class="history"><summary>2 earlier turns</summary>' in report
    assert "I&#x27;m visiting Rome for 3 days in October" in report or "visiting Rome for 3 days" in report

    evaluated = drpo(
        "evaluate", "--sandbox", "--artifact", "run", "--queries", str(HELD_OUT), "--json", cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text(encoding="utf-8"))
    assert "Consistency" in report["aspects"]
    by_setup = {s["name"]: s for s in report["setups"]}
    drpo_score, base = by_setup["drpo"], by_setup["base"]
    assert drpo_score["aspects"]["Consistency"]["mean"] > base["aspects"]["Consistency"]["mean"] + 1
    assert drpo_score["overall"]["low"] > base["overall"]["high"]  # held-out multi-turn gain over base


def test_python_optimize_and_evaluate_take_langchain_message_lists() -> None:
    conversations = [
        [HumanMessage(f"I'm planning a trip to {city} for {n} days."), AIMessage("Nice."), HumanMessage(ask)]
        for city, n, ask in [
            ("Oslo", 3, "What should I pack?"),
            ("Seville", 4, "Where should I eat?"),
            ("Krakow", 2, "What should I see first?"),
            ("Bergen", 5, "Is a day trip worth it?"),
            ("Porto", 3, "How do I get around?"),
            ("Vienna", 4, "What is a good budget per day?"),
        ]
    ]
    artifact = optimize(
        conversations,
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=2, beam_size=1, n_actions=2, queries_per_step=2, seed=0),
    )
    consistency = [s.score for e in artifact.evaluations for s in e.scores if s.aspect == "Consistency"]
    assert consistency, "the judge never scored Consistency"
    report = evaluate(load_queries(HELD_OUT)[:4], responder="sandbox", judge="sandbox", artifact=artifact)
    assert "Consistency" in report.aspects


def test_a_bad_conversation_file_is_one_cli_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}), encoding="utf-8")
    result = drpo("optimize", "--sandbox", "--queries", str(bad), "--run-dir", "run", cwd=tmp_path)
    one_error(result, 2, "query #1", "last message must be the user's")


def test_the_estimate_counts_the_earlier_turns() -> None:
    conversations = load_queries(TRAIN)
    last_turns = [{"id": q["id"], "query": q["query"]} for q in conversations]
    config = DRPOConfig(depth=2, beam_size=1, n_actions=2, queries_per_step=2)
    with_history = estimate_run(config, conversations).roles
    without = estimate_run(config, last_turns).roles
    for role in ("responder", "judge"):
        assert with_history[role]["calls"] == without[role]["calls"]
        assert with_history[role]["input_tokens"] > without[role]["input_tokens"], role


def test_user_turns_are_for_held_out_sets_only() -> None:
    item = {"id": "m1", "turns": ["I'm in Oslo for 3 days.", "What should I pack?"]}
    with pytest.raises(
        ConfigError, match=r"query #1 \(id 'm1'\) gives only the user's turns .* for held-out sets"
    ):
        normalize_queries([item])
    assert normalize_queries([item], user_turns=True) == [
        {"id": "m1", "query": "What should I pack?", "turns": item["turns"]}
    ]
    with pytest.raises(ConfigError, match="query #1, turn 2: must be a non-empty string"):
        normalize_queries([{"turns": ["hi", " "]}], user_turns=True)


@pytest.mark.slow
def test_evaluate_answers_conversations_turn_by_turn_and_reports_them_apart(tmp_path: Path) -> None:
    run = drpo("optimize", "--sandbox", "--queries", str(TRAIN), "--run-dir", "run", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    evaluated = drpo("evaluate", "--sandbox", "--artifact", "run", "--conversations", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = EvaluationReport.load(tmp_path / "run" / "evaluation.json")
    kinds = {r.kind for r in report.records}
    assert kinds == {"single-turn", "multi-turn"} and len(load_eval_conversations()) == 30
    conversation = next(r for r in report.records if r.query_id == "m001")
    turns = conversation.answer_of("drpo").turns  # type: ignore[union-attr]
    assert turns is not None and len(turns) == 4 and all(t.mean is not None for t in turns)
    # Each reply came after the setup's own earlier replies: the transcript holds them in order.
    assert conversation.answer_of("drpo").answer.count("assistant: ") == 4  # type: ignore[union-attr]
    drpo_result, base = report.setup("drpo"), report.setup("base")
    assert set(drpo_result.by_kind) == {"single-turn", "multi-turn"} and len(drpo_result.per_turn) == 4
    assert drpo_result.by_kind["multi-turn"].low > base.by_kind["multi-turn"].high  # type: ignore[operator]
    assert drpo_result.aspects["Consistency"].mean > base.aspects["Consistency"].mean + 1  # type: ignore[operator]
    markdown = (tmp_path / "run" / "evaluation.md").read_text(encoding="utf-8")
    assert "Single-turn and multi-turn queries apart" in markdown and "| turn 4 |" in markdown
    print(markdown)


def test_a_held_out_conversation_overlaps_only_when_it_is_the_same_conversation() -> None:
    training = load_queries(TRAIN)[:6]
    artifact = optimize(
        training,
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=1, beam_size=1, n_actions=1, queries_per_step=2, seed=0),
    )
    seen = next(q for q in training if q["id"] in artifact.histories)
    assert artifact.histories[seen["id"]] == seen["history"]
    same_ending = {
        "id": "h1",
        "messages": [
            {"role": "user", "content": "I'm in Tokyo alone."},
            {"role": "user", "content": seen["query"]},
        ],
    }
    evaluate([same_ending], responder="sandbox", judge="sandbox", artifact=artifact)  # not an overlap
    same = {"id": "h2", "messages": [*seen["history"], {"role": "user", "content": seen["query"]}]}
    with pytest.raises(ConfigError, match="used to optimise the artifact"):
        evaluate([same], responder="sandbox", judge="sandbox", artifact=artifact)


@pytest.mark.parametrize(
    ("queries", "fault"),
    [
        ([HumanMessage("a"), AIMessage("b"), HumanMessage("c")], "queries is one conversation"),
        (
            [{"id": "t7", "messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "r"}]}],
            "query #1 (id 't7'), message 2: tool calls",
        ),
        ([{"query": "a", "messages": [{"role": "user", "content": "a"}]}], "both a 'query' and 'messages'"),
        ([{"messages": [{"role": "user"}]}], "has no 'content'"),
    ],
)
def test_what_apps_get_wrong_is_said_plainly(queries: list[Any], fault: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fault)):
        normalize_queries(queries)


def test_the_same_words_under_another_system_message_are_another_item() -> None:
    items = [
        {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "Hello?"}]}
        for system in ("Talk like a pirate.", "Talk like a lawyer.")
    ]
    assert len(normalize_queries(items)) == 2
    assert normalize_queries([[("user", "hi"), ("assistant", "hello"), ("user", "bye")]])[0]["history"][
        1
    ] == {
        "role": "assistant",
        "content": "hello",
    }


def test_the_aligned_sandbox_model_uses_earlier_turns_in_an_app(tmp_path: Path) -> None:
    from drpo_agents import with_alignment
    from drpo_agents.models.sandbox import SandboxResponder

    artifact = optimize(
        load_queries(TRAIN),
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=4, seed=0),
    )
    assert "earlier" in artifact.system_prompt
    aligned = with_alignment(SandboxResponder(seed=0), artifact)
    reply = aligned.invoke(
        [
            HumanMessage("I bought a Gazelle e-bike in Utrecht for 2,400 euros."),
            AIMessage("Nice."),
            HumanMessage("The battery dies fast. What are my options?"),
        ]
    )
    assert "Gazelle" in reply.text and "Utrecht" in reply.text
