"""Running a policy against simulated users and summarising what happened.

``run_dialogues`` plays dialogues on the vectorised simulator: every row of the batch plays the
same number of whole dialogues, so short dialogues are not over-represented in the sample.
``run_transcripts`` plays a few dialogues on the single environment and keeps both sides' text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dialogue.acts import SystemAct, UserAct
from dialogue.nlg import system_text
from simulators.env import DEFAULT_MAX_TURNS, SegmentDialogueEnv
from simulators.policies import Policy
from simulators.profiles import SegmentSpec
from simulators.vector_env import SegmentDialogueVectorEnv


@dataclass(frozen=True)
class DialogueStats:
    """Per-dialogue outcomes of one policy on one set of users."""

    returns: npt.NDArray[np.float64]
    success: npt.NDArray[np.bool_]
    turns: npt.NDArray[np.int64]
    hangup: npt.NDArray[np.bool_]
    segments: npt.NDArray[np.str_]

    @property
    def n(self) -> int:
        return len(self.returns)

    def where(self, rows: npt.NDArray[np.bool_]) -> DialogueStats:
        """The dialogues selected by a boolean mask."""
        return DialogueStats(
            self.returns[rows], self.success[rows], self.turns[rows], self.hangup[rows], self.segments[rows]
        )

    def summary(self) -> dict[str, float]:
        """Success rate, mean return with a 95% normal interval, mean turns, hang-up rate."""
        half = 1.96 * float(self.returns.std(ddof=1)) / math.sqrt(self.n) if self.n > 1 else float("nan")
        return {
            "dialogues": self.n,
            "success_rate": float(self.success.mean()),
            "mean_return": float(self.returns.mean()),
            "return_ci95": half,
            "mean_turns": float(self.turns.mean()),
            "hangup_rate": float(self.hangup.mean()),
        }


def run_dialogues(
    policy: Policy,
    n: int,
    *,
    domain: str = "restaurant",
    segments: SegmentSpec = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    seed: int = 0,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> DialogueStats:
    """Play at least ``n`` dialogues (rounded up to a multiple of the batch) and collect them."""
    if n < 1:
        raise ValueError(f"the number of dialogues must be positive, got {n}")
    b = min(batch, n)
    quota = math.ceil(n / b)
    env = SegmentDialogueVectorEnv(num_envs=b, domain=domain, segments=segments, max_turns=max_turns)
    obs, info = env.reset(seed=seed)
    done_count = np.zeros(b, dtype=np.int64)
    out: dict[str, list] = {"returns": [], "success": [], "turns": [], "hangup": [], "segments": []}
    while (done_count < quota).any():
        act = policy(obs, info["action_mask"], info["segment"])
        obs, _, terminated, truncated, info = env.step(act)
        ended = (terminated | truncated) & (done_count < quota)
        if ended.any():
            out["returns"].append(info["episode_return"][ended])
            out["success"].append(info["success"][ended])
            out["turns"].append(info["episode_length"][ended])
            out["hangup"].append(info["user_act"][ended] == UserAct.HANGUP)
            out["segments"].append(info["episode_segment"][ended])
            done_count += ended
            if progress is not None:
                progress(int(ended.sum()))
    return DialogueStats(**{k: np.concatenate(v) for k, v in out.items()})


def run_transcripts(
    policy: Policy,
    k: int,
    *,
    domain: str = "restaurant",
    segments: SegmentSpec = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    seed: int = 0,
) -> list[str]:
    """``k`` dialogues on the single environment, each as text with both sides and the outcome."""
    env = SegmentDialogueEnv(domain=domain, segments=segments, max_turns=max_turns)
    out = []
    for i in range(k):
        obs, info = env.reset(seed=seed + i)
        lines = [f"--- dialogue {i + 1}: {info['segment']} user ---", f"USER: {info['user_utterance']}"]
        total, done = 0.0, False
        while not done:
            act = int(policy(obs[None], info["action_mask"][None], np.array([info["segment"]]))[0])
            offered = env.state.offer_candidate() if act == SystemAct.OFFER else env.offered
            text = system_text(act, env.state, offered)
            lines.append(f"SYSTEM: {text}")
            obs, reward, terminated, truncated, info = env.step(act)
            total += reward
            done = terminated or truncated
            lines.append(f"USER: {info['user_utterance']}")
        outcome = "success" if info["success"] else ("hung up" if info["user_act"] == "HANGUP" else "failure")
        lines.append(f"=> {outcome}, return {total:.0f}, {env.state.turn} turns")
        out.append("\n".join(lines))
    return out
