"""The sandbox world: a deterministic, offline SIMULATION of the three DRPO roles.

Nothing here is a language model. The sandbox exists so the mechanics of DRPO can be tried,
tested and benchmarked with no network and no API key; real alignment needs real models
(point the same API or CLI at them). It is still a genuine optimisation problem with a known
optimum, not a script:

* :class:`SandboxResponder` is a weak assistant whose answers depend on the system prompt it
  receives. It recognises *directives* in the prompt (structure, refuse harm, state limits,
  empathy, depth, examples, engagement, accuracy, concision) and follows them, but with
  limited attention: only the first ``attention_span`` directives are followed reliably and
  a long prompt dilutes them all. Without directives it has weaknesses: it complies with
  harmful requests, invents confident figures, pads, and ignores feelings. Retrieved ICL
  examples nudge it too (a refusal example makes refusing more likely).
* :class:`SandboxJudge` selects aspects from what a query asks for and scores answers from
  what their text contains (lists, refusals, caveats, empathy, reasons, examples, invented
  figures, padding). It judges any text, so it can grade a real model's answers as well.
  Its ``noise`` and ``length_bias`` knobs make it a deliberately noisy, verbosity-loving
  judge, for studying reward hacking and juries (``"sandbox?noise=0.3&length_bias=1"``).
* :class:`SandboxRewriter` reads the critique and proposes varied, seeded edits aimed at the
  lowest-scoring aspects: new bullets, moving a bullet forward, replacing one, and sometimes a
  trap (an over-broad refusal rule that hurts helpfulness, or empty fluff).

All three are LangChain ``BaseChatModel`` subclasses with tool calling, so they go through
the same structured-output path as real models. Every output is a pure function of the input
messages and the seed.
"""

from drpo_agents.models.sandbox.chat import SandboxChatModel
from drpo_agents.models.sandbox.factory import (
    SANDBOX_CLASSES,
    SANDBOX_NOTE,
    sandbox_models,
    sandbox_option_names,
)
from drpo_agents.models.sandbox.features import AnswerFeatures
from drpo_agents.models.sandbox.judge import SandboxJudge
from drpo_agents.models.sandbox.responder import SandboxResponder
from drpo_agents.models.sandbox.rewriter import SandboxRewriter
from drpo_agents.models.sandbox.scoring import score_aspect, select_aspects_for
from drpo_agents.models.sandbox.world import SandboxWorld, prompt_directives, query_kinds

__all__ = [
    "SANDBOX_CLASSES",
    "SANDBOX_NOTE",
    "AnswerFeatures",
    "SandboxChatModel",
    "SandboxJudge",
    "SandboxResponder",
    "SandboxRewriter",
    "SandboxWorld",
    "prompt_directives",
    "query_kinds",
    "sandbox_models",
    "sandbox_option_names",
    "score_aspect",
    "select_aspects_for",
]
