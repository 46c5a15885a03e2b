"""Labelled user utterances from simulated dialogues (training and test data for the text NLU).

Dialogues are driven by a mix of reference policies and the random policy, so that every user act
type appears, in every segment's style. Each record holds the utterance, the act type the user
meant, the (slot, value) pairs it said, the slots it asked for, the booking details it gave, the
segment, and the system prompt it answered (as the hand-written evaluation set writes it:
"request:area", "confirm:food=thai", "offer", "no_match").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dialogue.acts import SystemAct
from dialogue.tracker import DialogueState, ObservationLayout
from simulators.env import SegmentDialogueEnv
from simulators.policies import make_policy

DRIVERS = ("oracle", "random", "compromise", "casual", "power")


@dataclass(frozen=True)
class Utterance:
    text: str
    act: str
    informs: tuple[tuple[str, str], ...]  # "dontcare" as the value when any value is fine
    segment: str
    register: float
    after: str = "greet"
    requests: tuple[str, ...] = ()
    booking: tuple[tuple[str, str], ...] = ()


def prompt_of(state: DialogueState, act: int) -> str:
    """The system prompt ``act`` makes in ``state``, as the evaluation set writes it ("request:area")."""
    name = SystemAct(act).name.lower()
    k = state.target_slot(act)
    slot = state.domain.slots[k] if k >= 0 else None
    if act == SystemAct.REQUEST_ONE and slot:
        return f"request:{slot}"
    if act == SystemAct.SUGGEST and slot:
        return f"suggest:{slot}"
    if act == SystemAct.CONFIRM and slot:
        return f"confirm:{slot}={state.domain.value_name(k, state.values[k])}"
    if act == SystemAct.OFFER:
        return "offer" if state.kb_count() else "no_match"
    return {"request_one": "request_all"}.get(name, name)


def collect_utterances(
    dialogues: int, *, domain: str = "restaurant", segments: list[str] | None = None, seed: int = 0
) -> list[Utterance]:
    """Every user turn of ``dialogues`` simulated dialogues."""
    env = SegmentDialogueEnv(domain=domain, segments=segments)
    layout = ObservationLayout(env.domain.n_slots)
    drivers = [make_policy(name, layout, seed=seed) for name in DRIVERS]
    out: list[Utterance] = []
    for i in range(dialogues):
        obs, info = env.reset(seed=seed * 1_000_003 + i)
        policy = drivers[i % len(drivers)]
        done = False
        after = "greet"
        while True:
            out.append(
                Utterance(
                    info["user_utterance"],
                    info["user_act"].lower(),
                    tuple((s, v) for s, v in info["user_informs"]),
                    info["segment"],
                    info["user_register"],
                    after,
                    tuple(info["user_requests"]),
                    tuple(info["user_booking"].items()),
                )
            )
            if done:
                break
            act = int(policy(obs[None], info["action_mask"][None], np.array([info["segment"]]))[0])
            after = prompt_of(env.state, act)
            obs, _, terminated, truncated, info = env.step(act)
            done = terminated or truncated
    return out
