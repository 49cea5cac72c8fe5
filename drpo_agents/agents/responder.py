"""The responder: the model being aligned answers a query under a candidate system prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from drpo_agents.config import ResponderMode
from drpo_agents.conversations import Turn, history_messages, history_text, icl_layout_note, icl_messages
from drpo_agents.infra.calls import CallPlan, ModelCall, arun_plan, call_config, run_plan
from drpo_agents.prompts import render_prompt
from drpo_agents.retrieval import ICLRetriever
from drpo_agents.schemas import ICLExample

# Completion mode frames answers in <answer> tags; these stop a base model at the end of its answer.
COMPLETION_STOP = ["</answer>", "<query>"]


@dataclass
class Response:
    """An answer plus what produced it."""

    answer: str
    examples: list[ICLExample]
    messages: list[AIMessage] = field(default_factory=list)


def build_chat_messages(
    system_prompt: str,
    query: str,
    examples: list[ICLExample],
    history: Sequence[Turn] = (),
    app_system: str = "",
    prompts_dir: Path | None = None,
) -> list[BaseMessage]:
    """System prompt (the app's own instruction after it, and the note on example conversations,
    as ``with_alignment`` places them), then each ICL example as user/assistant turns, then the
    conversation's earlier turns, then the query."""
    shown = [e.turns() for e in examples]
    note = icl_layout_note(shown, prompts_dir)
    messages: list[BaseMessage] = [
        SystemMessage("\n\n".join(filter(None, [system_prompt, app_system, note])))
    ]
    messages += icl_messages(shown)
    messages += history_messages(history)
    messages.append(HumanMessage(query))
    return messages


def build_completion_prompt(
    system_prompt: str,
    query: str,
    examples: list[ICLExample],
    prompts_dir: Path | None = None,
    history: Sequence[Turn] = (),
) -> str:
    """The plain-text prompt a base (non-chat) model continues; it ends inside an open <answer>."""
    shots = "".join(
        render_prompt(
            "completion_example", prompts_dir, query=_with_history(e.query, e.history), answer=e.answer
        )
        + "\n\n"
        for e in examples
    )
    return (
        render_prompt(
            "completion_responder",
            prompts_dir,
            system_prompt=system_prompt,
            examples=shots,
            query=_with_history(query, history),
        )
        + "\n"
    )


def _with_history(query: str, history: Sequence[Turn]) -> str:
    """A query as completion mode shows it: after the conversation's earlier turns, if any."""
    return f"{history_text(history)}\n\nuser: {query}" if history else query


def _clean_completion(text: str) -> str:
    for marker in COMPLETION_STOP:
        text = text.split(marker, 1)[0]
    return text.strip()


class Responder:
    """Answers queries with the model being aligned.

    Args:
        model: a chat model (chat mode) or a completion model such as ``langchain_openai.OpenAI``
            serving a base model (completion mode).
        retriever: source of ICL examples; ``None`` answers without examples.
        k: ICL examples per query.
        mode: ``"auto"`` picks chat for chat models and completion for completion models;
            ``"completion"`` also works with a chat model (the whole template is one user turn).
    """

    role = "responder"

    def __init__(
        self,
        model: BaseLanguageModel[Any],
        *,
        retriever: ICLRetriever | None = None,
        k: int = 2,
        mode: ResponderMode = "auto",
        prompts_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.retriever = retriever
        self.k = k
        self.mode: ResponderMode = (
            mode if mode != "auto" else ("chat" if isinstance(model, BaseChatModel) else "completion")
        )
        if self.mode == "chat" and not isinstance(model, BaseChatModel):
            raise TypeError("chat mode needs a chat model; use mode='completion' for completion models")
        self.prompts_dir = prompts_dir

    def examples_for(self, query: str) -> list[ICLExample]:
        """The ICL examples placed in context for ``query``."""
        return self.retriever.retrieve(query, self.k) if self.retriever is not None and self.k else []

    def plan_respond(
        self,
        system_prompt: str,
        query: str,
        *,
        examples: list[ICLExample] | None = None,
        config: RunnableConfig | None = None,
        history: Sequence[Turn] = (),
        app_system: str = "",
    ) -> CallPlan[Response]:
        """Answer ``query`` under ``system_prompt`` (a call plan; see :mod:`drpo_agents.infra.calls`).

        ``examples`` are the ICL examples to show; by default they are retrieved for the query.
        ``history``: the conversation's earlier turns, in context before the query;
        ``app_system``: the app's own system message, after the optimized prompt.
        """
        examples = self.examples_for(query) if examples is None else examples
        cfg = call_config(config, self.role, "respond")
        if self.mode == "chat":
            messages = build_chat_messages(
                system_prompt, query, examples, history, app_system, self.prompts_dir
            )
            reply = yield ModelCall(self.model, messages, cfg)
            message = reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply))
            return Response(answer=message.text.strip(), examples=examples, messages=[message])
        instruction = "\n\n".join(filter(None, [system_prompt, app_system]))
        prompt = build_completion_prompt(instruction, query, examples, self.prompts_dir, history)
        if isinstance(self.model, BaseChatModel):
            reply = yield ModelCall(self.model, [HumanMessage(prompt)], cfg, {"stop": COMPLETION_STOP})
            message = reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply))
        else:
            text = yield ModelCall(self.model, prompt, cfg, {"stop": COMPLETION_STOP})
            message = AIMessage(content=str(text))
        return Response(answer=_clean_completion(message.text), examples=examples, messages=[message])

    def respond(self, system_prompt: str, query: str, *, config: RunnableConfig | None = None) -> Response:
        """Blocking :meth:`plan_respond`."""
        return run_plan(self.plan_respond(system_prompt, query, config=config))

    async def arespond(
        self, system_prompt: str, query: str, *, config: RunnableConfig | None = None
    ) -> Response:
        """Async :meth:`plan_respond`."""
        return await arun_plan(self.plan_respond(system_prompt, query, config=config))
