"""One turn of a conversation: the user's acts in, the system's reply out.

This mirrors one step of the simulators' environment with the same tracker and NLG, so the
policy sees in production exactly what it saw in training: the user's acts update the
``DialogueState``; the policy updates the belief and picks an act; the system text is written;
the state is stored for the next turn.

Around the policy sit the rules a deployed dialogue manager needs and the simulator never
exercised, so that a conversation always moves forward:

- the guard: the same system act and slot is never sent three times in a row; the policy's
  next-best allowed act is sent instead (``Reply.guarded``);
- handover: after ``handover_after`` turns in a row that the NLU did not understand, the reply
  says so (``Reply.handover``), for the backend to route the user to a person;
- no match: an offer that finds nothing names the nearest alternative (one constraint dropped),
  and a "yes" to it drops that constraint; with no such alternative it asks which to drop;
- bookings: booking details accumulate over the turns (``state["booking"]``); the system books
  once every detail is known, and the booking (entity and details) is stored and returned;
- closing: "no" to "anything else?" ends the conversation, as a goodbye does;
- the turn limit: the last turn a conversation may have (``SEGDIAL_MAX_TURNS``) is answered with
  a goodbye that hands over (``Reply.handover``), and the conversation ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from dialogue.acts import SLOT_ACTS, SystemAct, UserAct
from dialogue.domain import DONTCARE, Domain, DomainError, Entity
from dialogue.nlg import no_match_text, system_text
from dialogue.nlu.labels import context_of
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
    """The tracker's view of a user turn.

    ``booking`` holds the booking values the turn gave (stored forms); ``booking_details`` is true
    when the turn named a booking slot without a value (a client that tracks the details itself).
    ``understood`` is false when the NLU understood nothing of the text.
    """

    act: UserAct
    informs: list[tuple[int, int, float]]
    booking_details: bool
    booking: dict[str, str] = field(default_factory=dict)
    understood: bool = True


def parse_acts(domain: Domain, acts: list[dict[str, Any]]) -> ParsedTurn:
    """Structured user acts -> the tracker's view of the turn; TurnError names what is wrong."""
    if not acts:
        raise TurnError("a turn needs at least one user act (or text)")
    kinds: list[UserAct] = []
    informs: dict[int, tuple[int, int, float]] = {}
    booking = False
    values: dict[str, str] = {}
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
            if value is None:
                booking = True
            else:
                try:
                    values[str(slot)] = domain.booking_value(str(slot), str(value))
                except DomainError as e:
                    raise TurnError(f"acts[{i}]: {e}") from e
    act = next(a for a in _PRIORITY if a in kinds)
    return ParsedTurn(act, list(informs.values()), booking, values)


def parse_reading(domain: Domain, acts: list[dict[str, Any]], understood: bool) -> ParsedTurn:
    """The tracker's view of what the NLU read of a text turn. Nothing read, or acts the service
    would refuse from a client (the NLU's mistake, not the user's), is heard as "confused" and not
    understood."""
    if acts:
        try:
            return replace(parse_acts(domain, acts), understood=understood)
        except TurnError:
            pass
    return replace(parse_acts(domain, [{"act": "confused"}]), understood=False)


@dataclass
class Reply:
    """What the system answers, and the state to store.

    ``offer``: the entity named this turn (its name, its informable values and, for a no-match
    alternative, the constraint it drops); ``booking``: the booking made this turn;
    ``handover``: a reason to route the user to a person, or None; ``guarded``: the guard replaced
    the policy's act.
    """

    system_act: str
    system_slot: str | None
    system_value: str | None
    system_text: str
    segment_probabilities: dict[str, float]
    posterior_mean: list[float]
    posterior_variance: list[float]
    ended: bool
    state: dict[str, Any]
    belief: BeliefState
    offer: dict[str, Any] | None = None
    booking: dict[str, str] | None = None
    handover: str | None = None
    guarded: bool = False


def new_state(domain: Domain, max_turns: int, latent_dim: int) -> dict[str, Any]:
    return {
        "tracker": DialogueState(domain, max_turns).to_dict(),
        "belief": BeliefState.prior(max(latent_dim, 1)).to_dict(),
        "target": -1,
        "offer_count": 0,
        "offered": None,
    }


# The serving rules' part of the stored state; conversations stored before them read as empty.
_RULE_STATE: dict[str, Any] = {
    "booking": {},  # booking details given so far
    "booked": None,  # the booking made, once made
    "alternative": None,  # the slot a no-match offer proposed to drop
    "last": None,  # [system act, slot] of the last reply
    "repeats": 0,  # how many replies in a row had that act and slot
    "not_understood": 0,  # user turns in a row the NLU understood nothing of
}
REPEAT_LIMIT = 2  # the same act and slot at most twice in a row


def prompt_context(domain: Domain, stored: dict[str, Any]) -> str:
    """The system prompt the next user turn answers, as the NLU's context words."""
    tracker = stored["tracker"]
    act, target = int(tracker["last_system_act"]), int(stored["target"])
    if act < 0:
        return context_of("greet")
    if act == SystemAct.OFFER and not stored.get("offer_count"):
        return context_of("no_match")
    slot = domain.slots[target] if target >= 0 and act in SLOT_ACTS else None
    value = domain.value_name(target, tracker["values"][target]) if slot and act == SystemAct.CONFIRM else None
    name = "request" if act == SystemAct.REQUEST_ONE else SystemAct(act).name.lower()
    return context_of(name, slot, value)


def take_turn(
    agent: Agent,
    domain: Domain,
    max_turns: int,
    stored: dict[str, Any],
    turn: ParsedTurn,
    register: float,
    handover_after: int = 0,
    final_turn: bool = False,
) -> Reply:
    """Apply the user's turn (``register``: 0 terse, 0.5 plain, 1 chatty) and let the policy answer.

    ``handover_after``: turns in a row not understood before the reply asks for a person (0: never).
    ``final_turn``: the conversation's last allowed turn; the reply says goodbye and hands over.
    """
    rules = {**_RULE_STATE, **{k: stored[k] for k in _RULE_STATE if k in stored}}
    tracker = DialogueState.from_dict(domain, max_turns, stored["tracker"])
    belief = BeliefState.from_dict(stored["belief"])
    informs, offer_count, act_in = list(turn.informs), int(stored["offer_count"]), turn.act
    offered_index = stored.get("offered")
    if rules["alternative"] is not None and not informs and act_in in _TAKES_OFFER:
        # "yes" to the nearest alternative: its constraint is dropped and the offer is taken.
        informs.append((int(rules["alternative"]), DONTCARE, 1.0))
        offer_count = 1
    if act_in == UserAct.NEGATE and not informs and tracker.last_system_act == SystemAct.REQMORE:
        act_in = UserAct.BYE  # "no, that's all" to "anything else?"
    booking = {**rules["booking"], **turn.booking}
    has_details = turn.booking_details or tracker.booking_info or all(s in booking for s in domain.booking)
    tracker.user_acted(
        act_in,
        informs,
        target=int(stored["target"]),
        offer_count=offer_count,
        booking_details=has_details,
        register=register,
    )
    not_understood = 0 if turn.understood else int(rules["not_understood"]) + 1
    handover = None
    if handover_after and not_understood >= handover_after:
        handover = f"{not_understood} turns in a row not understood"
    ended = act_in in (UserAct.BYE, UserAct.HANGUP)
    guarded = False
    if ended:
        act = int(SystemAct.BYE)
        new_belief = belief
    else:
        mask = tracker.action_mask()
        if offered_index is None:
            mask[SystemAct.INFORM] = 0  # a question asked before any offer waits for one
        act, new_belief = agent.act_one(tracker.observation(), mask, belief)
        last, repeats = rules["last"], int(rules["repeats"])
        while last == [act, tracker.target_slot(act)] and repeats >= REPEAT_LIMIT and mask.sum() > 1:
            # The guard: the policy's next-best act (the belief update does not depend on the mask).
            mask = mask.copy()
            mask[act] = 0
            act, _ = agent.act_one(tracker.observation(), mask, belief)
            guarded = True
        if guarded and act == SystemAct.BYE:
            handover = handover or "the dialogue is stuck"
        if final_turn and act != SystemAct.BYE:
            act = int(SystemAct.BYE)
            handover = handover or f"the conversation reached its limit of {max_turns} turns"
    target = tracker.target_slot(act)
    kb_count = tracker.kb_count()
    offer: dict[str, Any] | None = None
    alternative = None
    text_out = ""
    if act == SystemAct.OFFER:
        match = tracker.offer_candidate()
        offered_index = domain.entities.index(match) if match is not None else None
        if match is None:
            alternative, near = nearest_alternative(tracker)
            offered_index = domain.entities.index(near) if near is not None else None
            text_out = no_match_text(tracker, alternative, near)
    offered = domain.entities[offered_index] if offered_index is not None else None
    if act == SystemAct.OFFER and offered is not None:
        offer = {
            "name": offered.name,
            "values": {s: domain.value_name(k, offered.values[k]) for k, s in enumerate(domain.slots)},
            "relaxed": domain.slots[alternative] if alternative is not None else None,
        }
    made = None
    if act == SystemAct.BOOK and tracker.offer_accepted and tracker.booking_info and offered is not None:
        made = {"entity": offered.name, **{s: booking[s] for s in domain.booking if s in booking}}
    text_out = text_out or system_text(act, tracker, offered, booking)
    tracker.system_acted(act)
    probs = segment_probabilities(agent, new_belief)
    key = [act, target]
    state = {
        "tracker": tracker.to_dict(),
        "belief": new_belief.to_dict(),
        "target": target,
        "offer_count": kb_count if act == SystemAct.OFFER else 0,
        "offered": offered_index,
        "booking": booking,
        "booked": made or rules["booked"],
        "alternative": alternative,
        "last": key,
        "repeats": int(rules["repeats"]) + 1 if key == rules["last"] else 1,
        "not_understood": not_understood,
    }
    return Reply(
        system_act=SystemAct(act).name.lower(),
        system_slot=domain.slots[target] if target >= 0 else None,
        system_value=domain.value_name(target, tracker.values[target])
        if act == SystemAct.CONFIRM and target >= 0
        else None,
        system_text=text_out,
        segment_probabilities=probs,
        posterior_mean=new_belief.mean.tolist(),
        posterior_variance=new_belief.variance.tolist(),
        ended=ended or act == SystemAct.BYE,
        state=state,
        belief=new_belief,
        offer=offer,
        booking=made,
        handover=handover,
        guarded=guarded,
    )


# User acts that take an offer (as the tracker reads them), here a no-match alternative.
_TAKES_OFFER = (UserAct.AFFIRM, UserAct.ACK, UserAct.BOOK, UserAct.REQUEST)


def nearest_alternative(tracker: DialogueState) -> tuple[int | None, Entity | None]:
    """When nothing matches: the constraint whose removal alone finds a match (the least confident
    first, then ontology order) and the entity then offered; (None, None) if no one constraint does."""
    domain = tracker.domain
    order = sorted((k for k, v in enumerate(tracker.values) if v > 0), key=lambda k: (tracker.conf[k], k))
    for k in order:
        values = list(tracker.values)
        values[k] = DONTCARE
        found = domain.matching(values)
        if found:
            return k, found[0]
    return None, None


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
