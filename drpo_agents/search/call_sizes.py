"""How many tokens each kind of model call of a run sends and receives, without calling a model.

Inputs are the real prompt templates rendered with the real queries and the ICL examples the
run's retrieval would place for each (answers,
critiques and prompts that a run would produce stand in as filler of a typical length); outputs
are :class:`OutputLengths`. Counted with :func:`~drpo_agents.prompts.approx_tokens`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from drpo_agents.agents.rewriter import proposals_schema
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import DRPOConfig, Role
from drpo_agents.conversations import conversation_block
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.json_types import JsonSchema
from drpo_agents.prompts import approx_tokens, render_prompt
from drpo_agents.retrieval import InMemoryICLRetriever, example_tokens, fit_icl_budget
from drpo_agents.schemas import AnswerEvaluation, AnswerRewrite, AspectSelection, ICLExample, ProposalLimits

_SCORE_FRAME_TOKENS = 12


class OutputLengths(BaseModel):
    """Typical reply lengths in tokens (each capped by the role's ``role_max_tokens``).

    The defaults are guesses for capable chat models; a sandbox model answers more briefly.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    answer: int = Field(350, ge=1, description="A responder answer (also an ICL answer rewrite).")
    aspect_selection: int = Field(150, ge=1, description="An aspect selection (analysis and names).")
    aspects_per_query: int = Field(3, ge=1, le=5, description="Aspects the judge selects per query.")
    score_per_aspect: int = Field(60, ge=1, description="One aspect's score with its rationale.")
    proposal: int = Field(120, ge=0, description="A proposal's analysis and thought, beside its prompt.")
    prompt_bullet: int = Field(20, ge=0, description="One bullet a rewrite adds to the system prompt.")


class CallSizes:
    """Each kind of model call's input and output tokens, from the rendered templates."""

    def __init__(
        self,
        config: DRPOConfig,
        examples: Sequence[ICLExample],
        lengths: OutputLengths,
        embeddings: EmbeddingsLike | None = None,
    ) -> None:
        self.config, self.lengths = config, lengths
        self.dir = config.prompts_dir
        self.catalog = AspectCatalog.default()
        caps = config.role_max_tokens
        self.answer = min(lengths.answer, caps["responder"])
        self.score_out = min(lengths.aspects_per_query * lengths.score_per_aspect, caps["judge"])
        self.select_out = min(lengths.aspect_selection, caps["judge"])
        self.aspects = self.catalog.describe(list(self.catalog)[: lengths.aspects_per_query])
        # The examples a query gets are those the run's retriever will place (relevance floor,
        # budget), so the estimate retrieves them as the run will.
        self.retriever = InMemoryICLRetriever(examples, embeddings, min_similarity=config.icl_min_similarity)
        self._icl: dict[str, int] = {}
        # A score's reply also carries its JSON keys and the aspect's name (~12 tokens).
        self.rationale = "x" * 4 * max(1, lengths.score_per_aspect - _SCORE_FRAME_TOKENS)

    def _format_turn(self, role: Role, schema: type[BaseModel] | JsonSchema) -> int:
        # The text and json_mode methods send the schema as a turn; tools send it outside the messages.
        if self.config.structured_output_for(role) not in ("text", "json_mode"):
            return 0
        body = schema if isinstance(schema, dict) else schema.model_json_schema()
        return approx_tokens(
            render_prompt("structured_output_format", self.dir, schema=json.dumps(body, indent=1))
        )

    def prompt_tokens(self, level: int) -> int:
        """A level's candidate prompt: the initial one plus the bullets rewrites may have added."""
        bullets = min(level * self.config.max_new_bullets, self.config.max_bullets)
        size = approx_tokens(self.config.initial_prompt) + bullets * self.lengths.prompt_bullet
        cap = self.config.max_prompt_tokens
        return min(size, cap) if cap is not None else size

    def icl_tokens(self, query: str) -> int:
        """The tokens of the ICL examples retrieved for ``query``."""
        if query not in self._icl:
            shots = fit_icl_budget(
                self.retriever.retrieve(query, self.config.icl_k), self.config.max_icl_tokens
            )
            self._icl[query] = sum(example_tokens(e) for e in shots)
        return self._icl[query]

    def respond(self, level: int, query: str) -> tuple[float, int]:
        icl = self.icl_tokens(query)
        if self.config.responder_mode == "completion":
            frame = render_prompt("completion_responder", self.dir, system_prompt="", examples="", query="")
            return approx_tokens(frame) + self.prompt_tokens(level) + icl + approx_tokens(query), self.answer
        return self.prompt_tokens(level) + icl + approx_tokens(query), self.answer

    def select(self, query: str) -> tuple[int, int]:
        text = render_prompt("judge_system", self.dir) + render_prompt(
            "aspect_selection", self.dir, conversation="", query=query, aspect_catalog=self.catalog.describe()
        )
        return approx_tokens(text) + self._format_turn("judge", AspectSelection), self.select_out

    def score(self, query: str, answer_tokens: int) -> tuple[int, int]:
        text = render_prompt("judge_system", self.dir) + render_prompt(
            "answer_scoring",
            self.dir,
            conversation="",
            query=query,
            answer="x" * 4 * answer_tokens,
            aspects=self.aspects,
        )
        return approx_tokens(text) + self._format_turn("judge", AnswerEvaluation), self.score_out

    def _evaluation(self) -> str:
        return "\n".join(f"- Aspect: 3/5 - {self.rationale}" for _ in range(self.lengths.aspects_per_query))

    def rewrite(self, level: int, cases: Sequence[str], lessons: int) -> tuple[int, int]:
        """The rewrite at ``level`` of a parent judged on ``cases`` (its last level's queries)."""
        cfg, n = self.config, self.config.n_actions
        parent = "x" * 4 * self.prompt_tokens(level - 1)
        rendered = "\n".join(
            render_prompt(
                "rewrite_case",
                self.dir,
                conversation="",
                query=q,
                answer="x" * 4 * self.answer,
                evaluation=self._evaluation(),
            )
            for q in cases
        )
        lesson = f'- [Aspect 3/5] on a similar query ("{"x" * 90}"): {self.rationale}'
        history = min(level - 1, cfg.prompt_history)
        text = render_prompt("rewriter_system", self.dir) + render_prompt(
            "prompt_rewrite",
            self.dir,
            current_prompt=parent,
            previous_prompts="\n---\n".join([parent] * history) or "(none)",
            cases=rendered,
            lessons="\n".join([lesson] * lessons) or "(none yet)",
            num_prompts=n,
            max_bullets=cfg.max_bullets,
            max_new_bullets=cfg.max_new_bullets,
            size_rule="Keep the prompt as short as it can be while doing its job.",
        )
        schema = proposals_schema(ProposalLimits(n, cfg.max_bullets, cfg.max_new_bullets))
        output = n * (self.lengths.proposal + self.prompt_tokens(level))
        return approx_tokens(text) + self._format_turn("rewriter", schema), min(
            output, cfg.role_max_tokens["rewriter"]
        )

    def rewrite_answer(self, example: ICLExample) -> tuple[int, int]:
        text = render_prompt("icl_rewriter_system", self.dir) + render_prompt(
            "icl_answer_rewrite",
            self.dir,
            query=example.query,
            answer=example.answer,
            evaluation=self._evaluation(),
            earlier_attempts="(none)",
            conversation=conversation_block(example.history),
        )
        output = min(
            self.lengths.proposal + approx_tokens(example.answer), self.config.role_max_tokens["rewriter"]
        )
        return approx_tokens(text) + self._format_turn("rewriter", AnswerRewrite), output
