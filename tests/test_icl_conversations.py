"""ICL examples that are conversations: read in the forms apps export, retrieved on the
conversation, shown as turns (in the search and in ``with_alignment``), optimized with their
history, and carried into a chat's follow-ups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from drpo_agents import DRPOConfig, optimize, with_alignment
from drpo_agents.agents.responder import build_chat_messages, build_completion_prompt
from drpo_agents.config import DEFAULT_INITIAL_PROMPT
from drpo_agents.conversations import is_icl_example
from drpo_agents.datasets import load_queries
from drpo_agents.errors import ConfigError
from drpo_agents.evaluation import evaluate
from drpo_agents.icl_sets import icl_example, load_icl_examples, load_seed_icl_examples, parse_icl_examples
from drpo_agents.retrieval import InMemoryICLRetriever, example_key, fit_icl_budget
from drpo_agents.schemas import ICLExample
from drpo_agents.search.icl_stage import optimize_icl_examples
from drpo_agents.tracing import read_trace

from .test_cli_errors import drpo

DATA = Path(__file__).parent / "data" / "conversations"
TRAIN, HELD_OUT = DATA / "train.jsonl", DATA / "held_out.jsonl"
TURNS = [
    {"role": "user", "content": "I'm moving to Oslo in January with my cat Pixel."},
    {"role": "assistant", "content": "Exciting! January in Oslo is cold and dark."},
    {"role": "user", "content": "What should I buy for her first?"},
    {
        "role": "assistant",
        "content": "For Pixel's first Oslo winter: a warm bed away from drafts, and a humidifier.",
    },
]
EXPECTED = ICLExample(
    id="pixel",
    query=TURNS[2]["content"],
    answer=TURNS[3]["content"],
    history=TURNS[:2],  # type: ignore[arg-type]
)


def test_an_example_conversation_reads_the_same_in_every_form(tmp_path: Path) -> None:
    forms: list[Any] = [
        {"id": "pixel", "messages": TURNS},
        {"id": "pixel", "inputs": {"messages": TURNS[:3]}, "outputs": {"messages": TURNS[3:]}},
        {"id": "pixel", "inputs": {"messages": TURNS[:3]}, "outputs": {"message": TURNS[3]}},
        {"id": "pixel", "query": TURNS[2]["content"], "answer": TURNS[3]["content"], "history": TURNS[:2]},
    ]
    for form in forms:
        assert icl_example(form, "example") == EXPECTED
    for number, form in enumerate(forms):
        path = tmp_path / f"examples{number}.json"
        path.write_text(json.dumps([form, {"query": "q?", "answer": "a."}]), encoding="utf-8")
        assert load_icl_examples(path) == [EXPECTED, ICLExample(query="q?", answer="a.")]
    # JSON Lines, as chat exports come, and LangSmith's other answer shapes.
    lines = tmp_path / "examples.jsonl"
    rows = [forms[0], {"inputs": {"messages": TURNS[:3]}, "outputs": {"output": "A heated bed."}}]
    lines.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    assert load_icl_examples(lines) == [
        EXPECTED,
        EXPECTED.model_copy(update={"id": None, "answer": "A heated bed."}),
    ]
    langchain = [
        HumanMessage(TURNS[0]["content"]),
        AIMessage(TURNS[1]["content"]),
        HumanMessage(TURNS[2]["content"]),
        AIMessage(TURNS[3]["content"]),
    ]
    assert icl_example(langchain, "example") == EXPECTED.model_copy(update={"id": None})
    # The artifact's own form reads back unchanged.
    assert ICLExample.model_validate(EXPECTED.model_dump()) == EXPECTED


def test_every_bad_example_is_named_on_its_own_line_and_nothing_is_loaded(tmp_path: Path) -> None:
    examples = [
        {"id": "ok", "messages": TURNS},
        {"id": "ends-with-user", "messages": TURNS[:3]},
        {"id": "own-system", "messages": [{"role": "system", "content": "Be brief."}, *TURNS]},
        {"id": "empty-turn", "query": "q", "answer": "a", "history": [{"role": "user", "content": " "}]},
        {"id": "no-answer", "query": "q"},
        {"id": "tool", "messages": [*TURNS[:2], {"role": "tool", "content": "42"}, *TURNS[2:]]},
        {"id": "blank-answer", "query": "q", "answer": "   "},
        {"id": "ok", "query": "Another question?", "answer": "Another answer."},
        {"id": "same-turns", "messages": TURNS},
    ]
    path = tmp_path / "examples.json"
    path.write_text(json.dumps(examples), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_icl_examples(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 8 of 9 ICL examples are invalid (nothing was loaded):"
    faults = {
        "'ends-with-user'": "must end with a user turn and the assistant's answer",
        "'own-system'": "cannot carry a system or developer message",
        "'empty-turn'": "an earlier turn (history) is empty",
        "'no-answer'": "has no 'answer'",
        "'tool'": "tool calls and tool results are not supported",
        "'blank-answer'": "the answer is empty",
        "#8": "repeats the id 'ok' of ICL example #1",
        "#9": "repeats ICL example #1",
    }
    assert len(lines) == 1 + len(faults)
    for line, (name, fault) in zip(lines[1:], faults.items(), strict=True):
        assert name in line and fault in line, line
    # From the CLI: exit 2, and every bad example named on its own line.
    result = drpo("optimize", "--sandbox", "--icl", str(path), "--run-dir", "run", cwd=tmp_path)
    shown = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(shown) == len(lines), result.stderr
    assert shown[0].startswith("error: ") and all(
        name in line for line, name in zip(shown[1:], faults, strict=True)
    )
    assert not (tmp_path / "run").exists()
    # From Python: a file name, or one conversation, where a list of examples belongs.
    with pytest.raises(ConfigError, match="to read a file, pass load_icl_examples"):
        parse_icl_examples("examples.json", "icl_examples")
    with pytest.raises(ConfigError, match=r"is one conversation \(a list of messages\); pass a list"):
        parse_icl_examples(TURNS, "icl_examples")
    with pytest.raises(ConfigError, match=r"is one example \(a dict\); pass a list of examples"):
        parse_icl_examples({"query": "q", "answer": "a"}, "icl_examples")
    with pytest.raises(
        ConfigError, match=r"^icl_examples must be a list of examples, not str 'examples\.jsonl'"
    ):
        optimize(["a?", "b?"], responder="sandbox", judge="sandbox", icl_examples="examples.jsonl")


def test_every_bad_query_of_a_file_is_named_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    items = [
        {"id": "ok", "query": "How do tides work?"},
        {"id": "a", "messages": [{"role": "assistant", "content": "hi"}]},
        {"id": "b", "query": " "},
        {"id": "c", "messages": [{"role": "robot", "content": "x"}]},
        {"id": "ok", "query": "Why is the sky blue?"},
    ]
    path.write_text("\n".join(json.dumps(i) for i in items), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_queries(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 4 of 5 queries are invalid (nothing was loaded):"
    assert ["query #2" in lines[1], "query #3" in lines[2], "query #4" in lines[3]] == [True] * 3
    assert "the id 'ok' is used twice" in lines[4]
    result = drpo("optimize", "--sandbox", "--queries", str(path), "--run-dir", "run", cwd=tmp_path)
    shown = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(shown) == 5 and shown[1].strip().startswith("query #2"), (
        result.stderr
    )
    # Every line that is not JSON is named, a line each.
    path.write_text('{"query": "ok?"}\nnot json\n{"query": "fine?"}\n{broken\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_queries(path)
    assert str(caught.value).splitlines()[1:] == [
        f"  {path}:2: not valid JSON: Expecting value",
        f"  {path}:4: not valid JSON: Expecting property name enclosed in double quotes",
    ]


def test_an_example_conversation_is_found_by_its_user_turns() -> None:
    follow_up = ICLExample(query="And what does it cost?", answer="About 40 euros.", history=TURNS[:2])  # type: ignore[arg-type]
    assert example_key(follow_up) == f"{TURNS[0]['content']}\nAnd what does it cost?"
    alone = ICLExample(query="How do tides work?", answer="The moon's pull.", history=TURNS[:2])  # type: ignore[arg-type]
    assert example_key(alone) == alone.query  # a question that stands alone is its own key
    # The seed conversations are retrieved for a chat's follow-up about the same kind of thing.
    retriever = InMemoryICLRetriever(load_seed_icl_examples(conversations=True), "minilm")
    found = retriever.retrieve("Our API runs on Node.js 20 and it is slow.\nHow do I fix it?", 2)
    assert found and found[0].id == "conv04"
    # The token budget counts an example's earlier turns.
    assert fit_icl_budget([EXPECTED], 20) == [] and fit_icl_budget([EXPECTED], 60) == [EXPECTED]


def test_the_responder_sees_an_example_conversation_as_marked_turns() -> None:
    single = ICLExample(query="How do tides work?", answer="The moon's pull.")
    messages = build_chat_messages("Be kind.", "Thanks! Anything else?", [EXPECTED, single])
    texts = [m.text for m in messages]
    # The system message says which messages are samples: providers are not sent message ids.
    note = "Note on the messages that follow: the first 6 of them are sample conversations"
    assert texts[0].startswith(f"Be kind.\n\n{note}") and "not part of this chat" in texts[0]
    assert build_chat_messages("Be kind.", "Hi", [single])[0].text == "Be kind."  # single-turn: no note
    assert texts[1:] == [
        *(t["content"] for t in TURNS),
        single.query,
        single.answer,
        "Thanks! Anything else?",
    ]
    assert [is_icl_example(m) for m in messages] == [False, *[True] * 6, False]
    prompt = build_completion_prompt("Be kind.", "Thanks!", [EXPECTED])
    assert f"user: {TURNS[0]['content']}" in prompt and TURNS[3]["content"] in prompt


def test_the_icl_stage_rewrites_an_example_answer_to_use_its_earlier_turns() -> None:
    careless = EXPECTED.model_copy(update={"answer": "Buy a bed and some toys."})
    (optimized,), (record,) = optimize_icl_examples([careless], judge="sandbox", rewriter="sandbox")
    assert record.aspects[0] == "Consistency" and record.history == careless.history
    first, best = record.rounds[0].scores[0], record.rounds[record.best_round].scores[0]
    assert first.aspect == best.aspect == "Consistency" and first.score < 3 < best.score == 5
    assert (
        optimized.history == careless.history and "Pixel" in optimized.answer and "Oslo" in optimized.answer
    )


def test_a_conversation_run_starts_from_the_example_conversations(tmp_path: Path) -> None:
    chats = [
        ("Our backend is a Node.js 20 API on one small server.", "Is it slow? Why would it be?"),
        ("I'm a freelance illustrator and my income changes a lot.", "How do I pay myself a salary from it?"),
        ("I'm baking for 10 people on Saturday; three are gluten-free.", "What cake would work for them?"),
        ("We're cycling from Passau to Vienna next May.", "How fit do we need to be for it?"),
    ]
    train = tmp_path / "chats.jsonl"
    train.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": a},
                        {"role": "assistant", "content": "OK."},
                        {"role": "user", "content": b},
                    ]
                }
            )
            for a, b in chats
        ),
        encoding="utf-8",
    )
    run = drpo(
        "optimize",
        "--sandbox",
        "--queries",
        str(train),
        "--depth",
        "1",
        "--queries-per-step",
        "2",
        "--run-dir",
        "run",
        "--quiet",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    artifact = json.loads((tmp_path / "run" / "artifact.json").read_text(encoding="utf-8"))
    conversations = [e for e in artifact["icl_examples"] if e["history"]]
    assert [e["id"] for e in conversations] == [f"conv0{n}" for n in range(1, 6)]
    assert all(r["history"] for r in artifact["icl_optimization"] if r["example_id"].startswith("conv"))
    inspected = drpo("inspect", "run", cwd=tmp_path)
    assert inspected.returncode == 0 and "ICL examples (17; up to 2 placed per request)" in inspected.stdout
    listed = json.loads(drpo("inspect", "run", "--json", cwd=tmp_path).stdout)["icl_examples"]
    assert [(e["id"], e["earlier_turns"]) for e in listed[-5:]] == [(f"conv0{n}", 2) for n in range(1, 6)]
    # The responder got example conversations' turns, marked, before each training conversation.
    shown = []
    for record in read_trace(tmp_path / "run" / "trace.jsonl"):
        if record["run_type"] == "llm" and "drpo:responder" in record["tags"]:
            messages = record["inputs"]["messages"][0]
            ids = [str(m.get("id") or "") for m in messages]
            shown.append(
                any(i.endswith("-turn0") for i in ids) and messages[-3]["content"] in {a for a, _ in chats}
            )
    assert shown and all(shown), shown
    # A single-turn run keeps the single-turn seed set.
    single = optimize(
        ["How do tides work?", "What is DNA?", "Why is the sky blue?", "What is rust?"],
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=1, queries_per_step=2, icl_iters=0),
    )
    assert not any(e.history for e in single.icl_examples)


def test_example_conversations_carry_the_use_of_earlier_turns_to_held_out_chats() -> None:
    """Under the same unoptimized prompt, the optimized example conversations retrieved for a
    chat's follow-ups make the sandbox responder reuse what the user said earlier more often."""
    artifact = optimize(
        load_queries(TRAIN), responder="sandbox", judge="sandbox", config=DRPOConfig(depth=1, seed=0)
    )
    held_out = load_queries(HELD_OUT)

    def consistency(examples: list[ICLExample]) -> float:
        setup = artifact.model_copy(
            update={"system_prompt": DEFAULT_INITIAL_PROMPT, "icl_examples": examples}
        )
        report = evaluate(held_out, responder="sandbox", judge="sandbox", artifact=setup)
        return {s.name: s for s in report.setups}["drpo"].aspects["Consistency"].mean

    with_conversations = consistency(artifact.icl_examples)
    single_turn_only = consistency([e for e in artifact.icl_examples if not e.history])
    assert with_conversations > single_turn_only + 0.2, (with_conversations, single_turn_only)


def test_with_alignment_places_example_conversations_for_a_follow_up() -> None:
    from drpo_agents.models.sandbox import SandboxResponder

    artifact = optimize(
        load_queries(TRAIN), responder="sandbox", judge="sandbox", config=DRPOConfig(depth=1, seed=0)
    )
    aligned = with_alignment(SandboxResponder(seed=0), artifact)
    request = aligned.applier.apply(
        [
            HumanMessage("Our API runs on Node.js 20 with 4 GB of memory."),
            AIMessage("OK."),
            HumanMessage("It is slow. Why?"),
        ]
    )
    example_turns = [m for m in request if is_icl_example(m)]
    note = f"the first {len(example_turns)} of them are sample conversations"
    assert request[0].text.startswith(artifact.system_prompt) and note in request[0].text
    assert [m.id for m in example_turns[:3]] == ["drpo-icl-0-turn0", "drpo-icl-0-turn1", "drpo-icl-0-query"]
    assert "Node.js 20" in example_turns[0].text
    with pytest.raises(ConfigError):
        parse_icl_examples([{"messages": TURNS[:1]}], "inline")


def test_the_demo_after_a_run_on_conversations_is_a_held_out_conversation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from drpo_agents.cli.summary import show_before_after
    from drpo_agents.models.sandbox import SandboxResponder

    artifact = optimize(
        load_queries(TRAIN), responder="sandbox", judge="sandbox", config=DRPOConfig(depth=3, seed=0)
    )
    show_before_after(SandboxResponder(seed=0), DEFAULT_INITIAL_PROMPT, artifact)
    shown = capsys.readouterr().out
    assert "Held-out conversation" in shown and "user: I'm flying to Lisbon on 14 May" in shown
    before, after = shown.split("after (optimized prompt + ICL)")
    # The second turn's answer: only the aligned model carries over what the first turn said.
    assert "Lisbon" not in before.split("before (initial prompt)")[1] and "Lisbon" in after


def test_python_takes_example_conversations_in_the_forms_apps_export() -> None:
    queries = ["How do tides work?", "What is DNA?", "Why is the sky blue?", "What is rust?"]
    config = DRPOConfig(depth=1, queries_per_step=2, icl_iters=0)
    artifact = optimize(
        queries,
        responder="sandbox",
        judge="sandbox",
        config=config,
        icl_examples=[{"id": "pixel", "messages": TURNS}],
    )
    assert artifact.icl_examples == [EXPECTED]
    with pytest.raises(
        ConfigError, match=r"^icl_examples: ICL example #1 \(id 'x'\): an ICL example conversation must end"
    ):
        optimize(
            queries,
            responder="sandbox",
            judge="sandbox",
            config=config,
            icl_examples=[{"id": "x", "messages": TURNS[:3]}],
        )


def test_a_deployment_for_conversations_starts_from_the_example_conversations(tmp_path: Path) -> None:
    from drpo_agents.artifact import load_artifact
    from drpo_agents.realign import Deployment

    single: list[Any] = [{"id": "q1", "query": "How do tides work?"}]
    for name, queries in (("chats", load_queries(TRAIN)), ("single", single)):
        deployment = Deployment(tmp_path / name)
        assert deployment.deploy_first(None, queries) == "v0000"
        examples = load_artifact(tmp_path / name).icl_examples
        assert any(e.history for e in examples) == (name == "chats"), name
