"""Labelled user utterances from simulated dialogues (training and test data for the text NLU).

Dialogues are driven by a mix of reference policies and the random policy, so that every user act
type appears, in every segment's style. Each record holds the utterance, the act type the user
meant, the (slot, value) pairs it said, and the segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dialogue.tracker import ObservationLayout
from simulators.env import SegmentDialogueEnv
from simulators.policies import make_policy

DRIVERS = ("oracle", "random", "compromise", "casual", "power")


@dataclass(frozen=True)
class Utterance:
    text: str
    act: str
    informs: tuple[tuple[str, str], ...]
    segment: str
    register: float


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
        while True:
            out.append(
                Utterance(
                    info["user_utterance"],
                    info["user_act"].lower(),
                    tuple((s, v) for s, v in info["user_informs"] if v != "dontcare"),
                    info["segment"],
                    info["user_register"],
                )
            )
            if done:
                break
            act = int(policy(obs[None], info["action_mask"][None], np.array([info["segment"]]))[0])
            obs, _, terminated, truncated, info = env.step(act)
            done = terminated or truncated
    return out
