"""Human review: pause for a person to approve, edit or reject the prompt the run chose."""

from __future__ import annotations

from langgraph.types import interrupt

from drpo_agents.search.context import SearchContext
from drpo_agents.search.records import ROOT_ID, ReviewRequest, new_candidate
from drpo_agents.search.state import DRPOState, DRPOUpdate


def review(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Pause (LangGraph ``interrupt``) for a person to approve, edit or reject the final prompt.

    Resume with ``Command(resume={"action": "approve"})``, ``{"action": "edit", "prompt": ...}``
    or ``{"action": "reject"}`` (the initial prompt is kept).
    """
    best_id = ctx.selection.chosen(state)
    best = state["candidates"][best_id]
    request: ReviewRequest = {  # the interrupt's value, shown to the reviewer as is
        "kind": "drpo_review",
        "run_id": state["run_id"],
        "candidate_id": best_id,
        "prompt": best["prompt"],
        "initial_prompt": state["candidates"][ROOT_ID]["prompt"],
        "rewards": best["rewards"],
        "validation": state.get("validation", []),
        "actions": ["approve", "edit", "reject"],
    }
    while True:  # an invalid answer is asked again (each interrupt takes its own resume value)
        decision = interrupt(request)
        action = decision.get("action") if isinstance(decision, dict) else decision
        if action == "approve":
            return {"review": {"action": "approve", "candidate_id": best_id}}
        if action == "reject":
            return {"review": {"action": "reject", "candidate_id": ROOT_ID, "rejected": best_id}}
        edited = decision.get("prompt") if isinstance(decision, dict) else None
        if action == "edit" and isinstance(edited, str) and edited.strip():
            reviewed_id = f"{best_id}-reviewed"
            reviewed = new_candidate(
                reviewed_id,
                parent_id=best_id,
                prompt=edited.strip(),
                level=best["level"],
                analysis="Edited by a reviewer.",
                lessons=[],
            )
            reviewed["rewards"] = best["rewards"]  # it stands in for the best, whose rewards it shows
            return {
                "candidates": {reviewed_id: reviewed},
                "review": {"action": "edit", "candidate_id": reviewed_id, "edited": best_id},
            }
        request = {
            **request,
            "error": f"invalid review decision {decision!r}: answer {{'action': 'approve'}}, "
            "{'action': 'reject'} or {'action': 'edit', 'prompt': '...'}",
        }
