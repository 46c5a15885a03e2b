"""One turn of a conversation: the user's acts in, the system's reply out.

This mirrors one step of the simulators' environment with the same tracker and NLG, so the
policy sees in production exactly what it saw in training: the user's acts update the
``DialogueState``; the policy updates the belief and picks an act; the system text is written;
the state is stored for the next turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dialogue.acts import SystemAct, UserAct
from dialogue.domain import DONTCARE, Domain, DomainError
from dialogue.nlg import system_text
from dialogue.tracker import DialogueState
from metarl_core.inference import Agent, BatchBelief, BeliefState

# When one turn carries several acts, the type the tracker sees is the strongest of them.
_PRIORITY = [
    UserAct.HANGUP,
    UserAct.BYE,
    UserAct.NEGATE,
    UserAct.RELAX,
    UserAct.REQUEST,
    UserAct.BOOK,
    UserAct.AFFIRM,
    UserAct.DONT_KNOW,
    UserAct.CONFUSED,
    UserAct.INFORM,
    UserAct.ACK,
    UserAct.HELLO,
]
USER_ACT_NAMES = {a.name.lower(): a for a in UserAct}


class TurnError(ValueError):
    """User acts that cannot be used (unknown act type, slot or value)."""


@dataclass(frozen=True)
class ParsedTurn:
    act: UserAct
    informs: list[tuple[int, int, float]]
    booking_details: bool


def parse_acts(domain: Domain, acts: list[dict[str, Any]]) -> ParsedTurn:
    """Structured user acts -> the tracker's view of the turn; TurnError names what is wrong."""
    if not acts:
        raise TurnError("a turn needs at least one user act (or text)")
    kinds: list[UserAct] = []
    informs: dict[int, tuple[int, int, float]] = {}
    booking = False
    for i, item in enumerate(acts):
        name = str(item.get("act", "")).lower()
        if name not in USER_ACT_NAMES:
            raise TurnError(f"acts[{i}]: unknown act type {item.get('act')!r}; known: {', '.join(USER_ACT_NAMES)}")
        kind = USER_ACT_NAMES[name]
        kinds.append(kind)
        slot, value = item.get("slot"), item.get("value")
        if kind in (UserAct.INFORM, UserAct.NEGATE, UserAct.RELAX) and slot is not None:
            try:
                code = DONTCARE if kind == UserAct.RELAX else domain.value_code(str(slot), str(value))
            except DomainError as e:
                raise TurnError(f"acts[{i}]: {e}") from e
            if kind == UserAct.RELAX and slot not in domain.slots:
                raise TurnError(f"acts[{i}]: unknown slot {slot!r}; known: {', '.join(domain.slots)}")
            k = domain.slots.index(str(slot))
            informs[k] = (k, code, float(item.get("confidence", 1.0)))
        elif kind == UserAct.INFORM and slot is None:
            raise TurnError(f"acts[{i}]: inform needs a slot and a value")
        elif kind == UserAct.REQUEST and slot is not None and slot not in domain.requestable:
            raise TurnError(f"acts[{i}]: unknown requestable slot {slot!r}; known: {', '.join(domain.requestable)}")
        elif kind == UserAct.BOOK and slot is not None:
            if slot not in domain.booking:
                raise TurnError(f"acts[{i}]: unknown booking slot {slot!r}; known: {', '.join(domain.booking)}")
            if value is not None:
                try:
                    domain.booking_value(str(slot), str(value))
                except DomainError as e:
                    raise TurnError(f"acts[{i}]: {e}") from e
            booking = True
    act = next(a for a in _PRIORITY if a in kinds)
    return ParsedTurn(act, list(informs.values()), booking)


@dataclass
class Reply:
    """What the system answers, and the state to store."""

    system_act: str
    system_slot: str | None
    system_text: str
    segment_probabilities: dict[str, float]
    posterior_mean: list[float]
    posterior_variance: list[float]
    ended: bool
    state: dict[str, Any]
    belief: BeliefState


def new_state(domain: Domain, max_turns: int, latent_dim: int) -> dict[str, Any]:
    return {
        "tracker": DialogueState(domain, max_turns).to_dict(),
        "belief": BeliefState.prior(max(latent_dim, 1)).to_dict(),
        "target": -1,
        "offer_count": 0,
        "offered": None,
    }


def take_turn(
    agent: Agent, domain: Domain, max_turns: int, stored: dict[str, Any], turn: ParsedTurn, register: float
) -> Reply:
    """Apply the user's turn (``register``: 0 terse, 0.5 plain, 1 chatty) and let the policy answer."""
    tracker = DialogueState.from_dict(domain, max_turns, stored["tracker"])
    belief = BeliefState.from_dict(stored["belief"])
    tracker.user_acted(
        turn.act,
        turn.informs,
        target=int(stored["target"]),
        offer_count=int(stored["offer_count"]),
        booking_details=turn.booking_details,
        register=register,
    )
    ended = turn.act in (UserAct.BYE, UserAct.HANGUP)
    if ended:
        act = int(SystemAct.BYE)
        new_belief = belief
    else:
        act, new_belief = agent.act_one(tracker.observation(), tracker.action_mask(), belief)
    target = tracker.target_slot(act)
    kb_count = tracker.kb_count()
    offered_index = stored.get("offered")
    if act == SystemAct.OFFER:
        match = tracker.offer_candidate()
        offered_index = domain.entities.index(match) if match is not None else None
    offered = domain.entities[offered_index] if offered_index is not None else None
    text_out = system_text(act, tracker, offered)
    tracker.system_acted(act)
    probs = segment_probabilities(agent, new_belief)
    state = {
        "tracker": tracker.to_dict(),
        "belief": new_belief.to_dict(),
        "target": target,
        "offer_count": kb_count if act == SystemAct.OFFER else 0,
        "offered": offered_index,
    }
    return Reply(
        system_act=SystemAct(act).name.lower(),
        system_slot=domain.slots[target] if target >= 0 else None,
        system_text=text_out,
        segment_probabilities=probs,
        posterior_mean=new_belief.mean.tolist(),
        posterior_variance=new_belief.variance.tolist(),
        ended=ended or act == SystemAct.BYE,
        state=state,
        belief=new_belief,
    )


def segment_probabilities(agent: Agent, belief: BeliefState) -> dict[str, float]:
    """The prototype read-out of one belief (empty before the first user turn)."""
    if belief.turns == 0 or agent.prototypes is None:
        return {}
    batch = BatchBelief(
        torch.tensor([belief.eta], dtype=torch.float32),
        torch.tensor([belief.precision], dtype=torch.float32),
        torch.tensor([belief.turns]),
    )
    probs = agent.segment_probabilities(batch)[0]
    return {s: float(p) for s, p in zip(agent.segments, np.asarray(probs), strict=True)}
