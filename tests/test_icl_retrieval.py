"""ICL retrieval: semantic by default, a relevance floor, never list order; labelled-set quality."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from benchmarks.retrieval import retrieval_quality
from drpo_agents.embeddings import HashingEmbeddings, MiniLMEmbeddings, embeddings_name, resolve_embeddings
from drpo_agents.errors import ConfigError
from drpo_agents.icl_sets import load_seed_icl_examples
from drpo_agents.retrieval import InMemoryICLRetriever, retrieval_text
from drpo_agents.schemas import ICLExample


def test_ordinary_questions_get_no_refusal_example_and_harmful_ones_still_do() -> None:
    quality = retrieval_quality(InMemoryICLRetriever(load_seed_icl_examples()))
    assert quality["ordinary"] >= 20 and quality["ordinary_given_refusal"] == 0
    assert quality["harmful_given_refusal"] >= 0.7 * quality["harmful"]
    assert quality["related_covered"] >= 0.7 * quality["related"]
    assert quality["precision"] >= 0.75


def test_without_a_floor_most_ordinary_questions_would_get_a_refusal() -> None:
    # What the floor prevents (the behaviour of earlier versions, lexical or semantic alike).
    for embeddings in ("minilm", "hashing"):
        unfloored = InMemoryICLRetriever(load_seed_icl_examples(), embeddings, min_similarity=-1.0)
        quality = retrieval_quality(unfloored)
        assert quality["ordinary_given_refusal"] >= quality["ordinary"] / 2


def test_an_unrelated_query_gets_no_example_never_the_first_ones_in_list_order() -> None:
    examples = load_seed_icl_examples()
    for embeddings in ("minilm", "hashing"):
        retriever = InMemoryICLRetriever(examples, embeddings)
        assert retriever.retrieve("hi", 2) == []
        assert retriever.retrieve("Which is bigger, a blue whale or an elephant?", 2) == []
        assert retriever.retrieve("", 2) == []
    assert [e.id for e in InMemoryICLRetriever(examples).retrieve("Is drinking green tea healthy?", 2)] == [
        "icl07"
    ]


def test_the_floor_keeps_fewer_examples_rather_than_irrelevant_ones() -> None:
    examples = [
        ICLExample(query="How do I sort a list in Python?", answer="Use sorted()."),
        ICLExample(query="How do I reverse a string in Python?", answer="Use s[::-1]."),
        ICLExample(query="What should I cook for dinner tonight?", answer="A risotto."),
    ]
    retriever = InMemoryICLRetriever(examples)
    found = retriever.retrieve("How can I sort a Python list in reverse order?", 3)
    assert [e.answer for e in found] == ["Use sorted().", "Use s[::-1]."]
    assert InMemoryICLRetriever(examples, min_similarity=0.99).retrieve("How can I sort a list?", 3) == []


def test_the_retrieval_text_adds_earlier_user_turns_to_a_short_follow_up() -> None:
    conversation = [
        HumanMessage("How do I make a sourdough starter from scratch?"),
        AIMessage("Mix flour and water, then feed it daily..."),
        HumanMessage("And how long?"),
    ]
    assert retrieval_text(conversation) == "How do I make a sourdough starter from scratch?\nAnd how long?"
    long_turn = "Can you explain how compound interest works on a savings account?"
    assert retrieval_text([HumanMessage("hello"), AIMessage("hi"), HumanMessage(long_turn)]) == long_turn
    tool_loop = [HumanMessage(long_turn), AIMessage("", tool_calls=[]), ToolMessage("42", tool_call_id="1")]
    assert retrieval_text(tool_loop) == long_turn
    assert retrieval_text([AIMessage("Welcome!")]) == ""


def test_a_follow_up_retrieves_the_examples_of_what_the_conversation_is_about() -> None:
    retriever = InMemoryICLRetriever(load_seed_icl_examples())
    follow_up = [HumanMessage("What's the current price of Bitcoin?"), AIMessage("..."), HumanMessage("Why?")]
    assert retriever.retrieve("Why?", 2) == []
    assert [e.id for e in retriever.retrieve(retrieval_text(follow_up), 2)] == ["icl06"]


def test_minilm_vectors_are_unit_length_deterministic_and_semantic() -> None:
    minilm = MiniLMEmbeddings()
    first = np.array(minilm.embed_query("How do wind turbines generate electricity?"))
    assert first.shape == (384,) and abs(float(first @ first) - 1.0) < 1e-5
    paraphrase, unrelated = (
        np.array(v)
        for v in minilm.embed_documents(["How does a wind turbine make power?", "Tell me a joke about cats."])
    )
    assert float(first @ paraphrase) > 0.6 > 0.2 > float(first @ unrelated)
    script = (
        "from drpo_agents.embeddings import MiniLMEmbeddings;"
        "print(MiniLMEmbeddings().embed_query('How do wind turbines generate electricity?')[:8])"
    )
    other_process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == str(first.tolist()[:8])


def test_embeddings_by_name_and_clear_errors() -> None:
    assert embeddings_name(resolve_embeddings(None)) == "minilm-l6-v2-int8"
    assert embeddings_name(resolve_embeddings("hashing")) == "hashing-1024"
    assert embeddings_name(resolve_embeddings("hashing-256")) == "hashing-256"
    assert isinstance(resolve_embeddings(HashingEmbeddings(64)), HashingEmbeddings)
    with pytest.raises(ConfigError, match="unknown embeddings 'bert'"):
        resolve_embeddings("bert")
    with pytest.raises(ConfigError, match="got int"):
        resolve_embeddings(3)  # type: ignore[arg-type]
