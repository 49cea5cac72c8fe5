"""What the agents that ask for structured output share: their model, parsing settings and one ask."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from drpo_agents.config import StructuredOutputMethod
from drpo_agents.infra.calls import CallPlan, call_config
from drpo_agents.json_types import JsonSchema
from drpo_agents.prompts import render_prompt
from drpo_agents.structured import SchemaT, StructuredMethods, StructuredResult, plan_structured


class StructuredAgent:
    """An agent whose replies are pydantic objects (the judge and the two rewriters).

    Args:
        model: the chat model asked.
        method: how structured output is obtained (see :mod:`drpo_agents.structured`).
        max_retries: re-asks after an invalid or incomplete reply.
        prompts_dir: folder of prompt templates overriding ours by name.
        methods: the run's memory of the structured-output method each model accepted.
    """

    role: ClassVar[str]

    def __init__(
        self,
        model: BaseChatModel,
        *,
        method: StructuredOutputMethod = "auto",
        max_retries: int = 2,
        prompts_dir: Path | None = None,
        methods: StructuredMethods | None = None,
    ) -> None:
        self.model = model
        self.methods = methods
        self.method: StructuredOutputMethod = method
        self.max_retries = max_retries
        self.prompts_dir = prompts_dir

    def plan_ask(
        self,
        schema: type[SchemaT],
        system_template: str,
        prompt: str,
        *,
        step: str,
        config: RunnableConfig | None,
        validate: Callable[[SchemaT], SchemaT] | None = None,
        model: BaseChatModel | None = None,
        wire_schema: JsonSchema | None = None,
    ) -> CallPlan[StructuredResult[SchemaT]]:
        """Ask ``model`` (default: the agent's) for a ``schema`` object: the system message from
        ``system_template``, then ``prompt``; traced as this agent's ``step`` (a call plan)."""
        return (
            yield from plan_structured(
                model or self.model,
                schema,
                [SystemMessage(render_prompt(system_template, self.prompts_dir)), HumanMessage(prompt)],
                method=self.method,
                max_retries=self.max_retries,
                validate=validate,
                config=call_config(config, self.role, step),
                prompts_dir=self.prompts_dir,
                methods=self.methods,
                wire_schema=wire_schema,
            )
        )
