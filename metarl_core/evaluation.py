"""Playing an ``Agent`` on vectorised environments and measuring how it adapts.

Generic over Gymnasium vector environments with same-step autoreset whose ``info`` carries
``action_mask``, the task label (``label_key``, an index) and, on finished rows,
``episode_return``, ``episode_length`` and ``success``. ``play`` runs a fixed number of whole
episodes per column (so short episodes are not over-represented) and records, for every episode,
its outcome and the segment read-out after each of the first ``max_turns_id`` user turns (an
episode that ends earlier keeps its last read-out).

With ``context_episodes=K`` every recorded episode is the last of a trial of K + 1 episodes in
one column: the policy's state (belief or recurrent memory) is carried across the K earlier ones,
which are played but not recorded (the few-shot setting: a user with K earlier conversations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch

from metarl_core.inference import Agent


@dataclass
class EpisodeRecord:
    """Per-episode outcomes: arrays of length N, and ``predicted`` of shape (N, max_turns_id)."""

    returns: npt.NDArray[np.float64]
    success: npt.NDArray[np.bool_]
    lengths: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    predicted: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]
    posteriors: npt.NDArray[np.float64]  # (N, max_turns_id, z): posterior means (RL^2: GRU states) after k turns
    final: npt.NDArray[np.int64]  # info[final_key] on the episode's last step (0 without a final_key)

    def summary(self) -> dict[str, Any]:
        n = len(self.returns)
        half = 1.96 * float(self.returns.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
        out: dict[str, Any] = {
            "episodes": n,
            "mean_return": float(self.returns.mean()),
            "return_ci95": half,
            "success_rate": float(self.success.mean()),
            "mean_turns": float(self.lengths.mean()),
        }
        if self.predicted.size and self.confidence.any():
            out["id_accuracy"] = [float(x) for x in (self.predicted == self.labels[:, None]).mean(0)]
        return out


def make_vec(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """The environment's own vectorised implementation."""
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def play(
    agent: Agent,
    env_id: str,
    env_kwargs: dict[str, Any],
    episodes: int,
    *,
    seed: int = 0,
    batch: int = 500,
    deterministic: bool = True,
    label_key: str = "segment_index",
    task_key: str = "user_params",
    label_map: npt.NDArray[np.int64] | None = None,
    max_turns_id: int = 5,
    progress: Callable[[int], None] | None = None,
    context_episodes: int = 0,
    final_key: str | None = None,
) -> EpisodeRecord:
    """Play at least ``episodes`` episodes (a multiple of the batch) and record them.

    ``label_map`` maps the environment's label index to the agent's segment index (when the
    environment was made with a different list of segments); read-outs need agent prototypes.
    ``context_episodes``: see the module docstring. ``final_key``: an ``info`` entry recorded
    on each episode's last step (for example the user's last act, to count hang-ups).
    """
    if context_episodes < 0:
        raise ValueError(f"context_episodes must be zero or more, got {context_episodes}")
    b = min(batch, episodes)
    quota = math.ceil(episodes / b)
    envs = make_vec(env_id, b, **env_kwargs)
    obs, info = envs.reset(seed=seed)
    state = agent.initial_state(b)
    belief = state if agent.readout_dim else None  # a belief, or RL^2's state (its GRU state is read out)
    readout = belief is not None and agent.prototypes is not None
    z = max(agent.readout_dim, 1)
    pred = np.zeros((b, max_turns_id), dtype=np.int64)
    conf = np.zeros((b, max_turns_id))
    post = np.zeros((b, max_turns_id, z))
    labels = np.asarray(info[label_key]).copy()
    done_count = np.zeros(b, dtype=np.int64)
    trial_episode = np.zeros(b, dtype=np.int64)  # episodes finished in the column's current trial
    out: dict[str, list] = {
        k: [] for k in ("returns", "success", "lengths", "labels", "predicted", "confidence", "posteriors", "final")
    }
    gen = torch.Generator().manual_seed(seed)
    while (done_count < quota).any():
        task = info.get(task_key) if agent.spec.variant == "oracle" else None
        act = agent.step(obs, info["action_mask"], state, task=task, deterministic=deterministic, generator=gen)
        if belief is not None:
            # Slot j holds the state after j + 1 user turns; later slots are overwritten as turns
            # come in, so a short episode keeps its last state in the remaining slots.
            later = np.arange(max_turns_id)[None, :] >= (belief.turns.numpy() - 1)[:, None]
            post[later] = np.repeat(belief.readout.numpy()[:, None, :], max_turns_id, 1)[later]
            if readout:
                probs = agent.segment_probabilities(belief)
                pred[later] = np.repeat(probs.argmax(1)[:, None], max_turns_id, 1)[later]
                conf[later] = np.repeat(probs.max(1)[:, None], max_turns_id, 1)[later]
        obs, reward, terminated, truncated, info = envs.step(act)
        state.observe_rewards(reward)
        ended = np.asarray(terminated | truncated)
        trial_over = ended & (trial_episode == context_episodes)
        trial_episode[ended] += 1
        trial_episode[trial_over] = 0
        take = trial_over & (done_count < quota)
        if take.any():
            out["returns"].append(info["episode_return"][take])
            out["success"].append(info["success"][take])
            out["lengths"].append(info["episode_length"][take])
            lab = labels[take]
            out["labels"].append(label_map[lab] if label_map is not None else lab)
            out["predicted"].append(pred[take].copy())
            out["confidence"].append(conf[take].copy())
            out["posteriors"].append(post[take].copy())
            out["final"].append(np.asarray(info[final_key])[take] if final_key else np.zeros(int(take.sum()), np.int64))
            done_count += take
            if progress is not None:
                progress(int(take.sum()))
        if trial_over.any():
            state.reset(torch.as_tensor(trial_over))
        if ended.any():
            labels[ended] = np.asarray(info[label_key])[ended]
    return EpisodeRecord(**{k: np.concatenate(v) for k, v in out.items()})
