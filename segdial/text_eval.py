"""Evaluation through words: the simulators' users speak, the service's NLU reads, the served turn logic acts.

``segdial evaluate --text`` plays each dialogue as the service would serve it: every user turn is the
simulated user's text (``simulators.user_nlg``), read by the real NLU with the system prompt as
context, and answered by ``dialogue.service.turns.take_turn``, the function behind the HTTP API and
Rasa (the policy with its guard, no-match alternatives, bookings and handover). The user answers
what the service's tracker heard (``SegmentDialogueEnv.answer``), so a value the NLU misread is one
the user has to correct, as with a person.

The same dialogues (same seeds, so the same users and goals) are also played at the act level:
the user's acts through the simulators' own NLU channel, into the same turn logic. The gap between
the two is what understanding text costs. Per segment it reports success, return, turns, loops (the
same system act and slot three times in a row), handovers and turns not understood.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dialogue.acts import SystemAct, UserAct, UserTurn
from dialogue.domain import DONTCARE, Domain
from dialogue.nlu import NLU
from dialogue.service.turns import ParsedTurn, new_state, parse_reading, prompt_context, take_turn
from metarl_core.inference import Agent
from simulators.env import SegmentDialogueEnv

MODES = ("act", "text")


@dataclass
class Outcome:
    """One dialogue."""

    success: bool
    reward: float
    turns: int
    loops: int
    handover: bool
    not_understood: int


def acts_of(turn: UserTurn, observed: list[tuple[int, int, float]], domain: Domain) -> ParsedTurn:
    """The act-level reading of a user turn: its act type and the values the simulated channel heard."""
    return ParsedTurn(turn.act, observed, False, {s: domain.booking_value(s, v) for s, v in turn.booking.items()})


def _code(domain: Domain, slot: str, value: str) -> int:
    return DONTCARE if value == "dontcare" else domain.value_code(slot, value)


Dialogue = Generator[tuple[str, str], tuple[ParsedTurn, float], Outcome]


def dialogue(
    agent: Agent, env: SegmentDialogueEnv, seed: int, segment: str | None, mode: str, handover_after: int
) -> Dialogue:
    """One dialogue of a user of ``segment`` (drawn from ``seed``; None: from the environment's own
    segments) in ``mode`` "act" or "text".

    In text mode it yields (words, prompt context) and is sent the reading back, so that many
    dialogues share one NLU pass (``play``); it returns the ``Outcome``."""
    domain, max_turns = env.domain, env.max_turns
    _, info = env.reset(seed=seed, options={"segment": segment} if segment else None)
    turn = UserTurn(UserAct[info["user_act"]], booking=dict(info["user_booking"]))
    observed = [(domain.slots.index(s), _code(domain, s, v), c) for s, v, c in info["nlu_informs"]]
    stored = new_state(domain, max_turns, agent.latent_dim)
    total, loops, not_understood = 0.0, 0, 0
    keys: list[tuple[int, str | None]] = []
    for t in range(max_turns):
        if mode == "text":
            parsed, register = yield info["user_utterance"], prompt_context(domain, stored)
        else:
            parsed, register = acts_of(turn, observed, domain), info["user_register"]
        not_understood += not parsed.understood
        first_turn = int(stored["tracker"]["turn"]) == 0
        reply = take_turn(agent, domain, max_turns, stored, parsed, register, handover_after)
        stored = reply.state
        act = SystemAct[reply.system_act.upper()]
        keys.append((act, reply.system_slot))
        loops += len(keys) >= 3 and keys[-1] == keys[-2] == keys[-3]
        if reply.handover:
            return Outcome(False, total - 1.0, t + 1, loops, True, not_understood)
        if reply.ended and parsed.act in (UserAct.BYE, UserAct.HANGUP):
            # The service heard a goodbye the user did not say: a misreading ended the dialogue.
            return Outcome(False, total - 1.0, t + 1, loops, False, not_understood)
        heard = list(stored["tracker"]["values"])
        kb_count = int(stored["offer_count"]) if act == SystemAct.OFFER else 0
        turn, observed, _, reward, terminated, info = env.answer(
            int(act), int(stored["target"]), heard, kb_count, first_turn
        )
        total += reward
        if terminated or reply.ended:
            return Outcome(bool(info["success"]), total, t + 1, loops, False, not_understood)
    return Outcome(False, total, max_turns, loops, False, not_understood)


def play(
    agent: Agent,
    env_of: Callable[[], SegmentDialogueEnv],
    seeds: list[int],
    segment: str | None,
    mode: str,
    nlu: NLU | None,
    handover_after: int,
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """The dialogues of ``seeds``, up to ``batch`` at a time, their text read in one NLU pass a step."""
    envs = [env_of() for _ in range(min(batch, len(seeds)))]
    todo = list(reversed(seeds))
    outcomes: list[Outcome] = []
    live: list[tuple[Dialogue, SegmentDialogueEnv, tuple[str, str]]] = []

    def start(env: SegmentDialogueEnv) -> None:
        while todo:
            gen = dialogue(agent, env, todo.pop(), segment, mode, handover_after)
            try:
                live.append((gen, env, next(gen)))
                return
            except StopIteration as done:
                outcomes.append(done.value)
                if progress is not None:
                    progress(1)

    for env in envs:
        start(env)
    while live:
        assert nlu is not None, "text mode needs the NLU"
        domain = live[0][1].domain
        readings = nlu.read_batch([r[0] for _, _, r in live], domain.name, [r[1] for _, _, r in live])
        now, live = live, []
        for (gen, env, _), reading in zip(now, readings, strict=True):
            try:
                live.append(
                    (gen, env, gen.send((parse_reading(domain, reading.acts, reading.understood), reading.register)))
                )
            except StopIteration as done:
                outcomes.append(done.value)
                if progress is not None:
                    progress(1)
                start(env)
    return outcomes


def evaluate_text(
    policies: dict[str, Agent],
    domain: str,
    segments: list[str],
    dialogues: int,
    nlu: NLU,
    *,
    max_turns: int = 20,
    handover_after: int = 3,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Figures per policy, mode ("act", "text") and segment; the same users in every cell."""
    seeds = list(range(seed, seed + dialogues))
    out: dict[str, Any] = {}
    for name, agent in policies.items():
        for mode in MODES:
            for segment in segments:
                rows = play(
                    agent,
                    lambda: SegmentDialogueEnv(domain, segments=segments, max_turns=max_turns),
                    seeds,
                    segment,
                    mode,
                    nlu,
                    handover_after,
                    progress=progress,
                )
                out.setdefault(name, {}).setdefault(mode, {})[segment] = summarise(rows)
    return out


def summarise(rows: list[Outcome]) -> dict[str, float]:
    rewards = np.array([r.reward for r in rows])
    return {
        "dialogues": len(rows),
        "success": float(np.mean([r.success for r in rows])),
        "mean_return": float(rewards.mean()),
        "return_ci95": float(1.96 * rewards.std(ddof=1) / np.sqrt(len(rows))) if len(rows) > 1 else 0.0,
        "mean_turns": float(np.mean([r.turns for r in rows])),
        "loops": int(sum(r.loops for r in rows)),
        "dialogues_with_loops": float(np.mean([r.loops > 0 for r in rows])),
        "handovers": float(np.mean([r.handover for r in rows])),
        "not_understood_per_dialogue": float(np.mean([r.not_understood for r in rows])),
    }


def text_checks(results: dict[str, Any], policy: str = "contextual") -> list[dict[str, Any]]:
    """The bars: core success >= 90% through the NLU; no segment's text success more than 5 points
    below its act-level figure."""
    act, text = results[policy]["act"], results[policy]["text"]
    checks = []
    if "core" in text:
        checks.append(
            {
                "name": "core: success >= 90% through the NLU",
                "pass": text["core"]["success"] >= 0.9,
                "detail": f"{100 * text['core']['success']:.1f}%",
            }
        )
    for seg in text:
        gap = 100 * (act[seg]["success"] - text[seg]["success"])
        checks.append(
            {
                "name": f"{seg}: text success within 5 points of act level",
                "pass": gap <= 5.0,
                "detail": f"{100 * text[seg]['success']:.1f}% vs {100 * act[seg]['success']:.1f}%",
            }
        )
    checks.append(
        {
            "name": "no loops",
            "pass": all(v["loops"] == 0 for m in results[policy].values() for v in m.values()),
            "detail": str(sum(v["loops"] for m in results[policy].values() for v in m.values())),
        }
    )
    return checks


def plot_text(results: dict[str, Any], path: Path, title: str) -> Path:
    """Success per segment: act level and through the NLU, for every policy (grouped bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(results)
    segments = list(next(iter(results.values()))["text"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(segments), 3.6))
    width = 0.8 / (2 * len(policies))
    for i, (name, mode) in enumerate((p, m) for p in policies for m in MODES):
        xs = np.arange(len(segments)) + (i - len(policies) + 0.5) * width
        ax.bar(xs, [100 * results[name][mode][s]["success"] for s in segments], width, label=f"{name}, {mode}")
    ax.set_xticks(np.arange(len(segments)), segments)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 100)
    ax.axhline(90, color="grey", lw=0.8, ls="--")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
