"""Fixtures of the ``metarl_core`` tests: small training configs, briefly trained and exported
policies of each variant (built once per session, on demand), recorded dialogues, and a helper
that replays recorded dialogues through an ``Agent``.

Test modules are not packages, so what several of them need is served as fixtures from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from metarl_core.checkpoint import Card
from metarl_core.config import PPOConfig
from metarl_core.evaluation import make_vec, play
from metarl_core.inference import Agent
from metarl_core.ppo import PPOTrainer
from simulators.policies import RandomPolicy

ENV_ID = "simulators:simulators/SegmentDialogue-v0"
ENV_KWARGS: dict[str, Any] = {"domain": "restaurant", "segments": ["power", "core", "casual"], "max_turns": 20}
# 64 dialogues x 16 steps = 1,024 turns per update.
SMALL: dict[str, Any] = {
    "env_id": ENV_ID,
    "env_kwargs": ENV_KWARGS,
    "total_steps": 4 * 1024,
    "num_envs": 64,
    "rollout_steps": 16,
    "hidden": 32,
    "latent_dim": 2,
    "eval_every": 1000,
    "eval_episodes": 100,
    "checkpoint_every": 1,
    "threads": 1,
}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread throughout (what the small configs' trainers set anyway), so that the
    tests before and after the first ``Trainer`` run alike and do not fight other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_config(**overrides: Any) -> PPOConfig:
    """A training config that runs an update in a fraction of a second (validated by ``from_dict``)."""
    return PPOConfig.from_dict({**SMALL, **overrides})


@pytest.fixture
def make_config() -> Callable[..., PPOConfig]:
    """``make_config(**overrides)``: see ``small_config``."""
    return small_config


def assert_same_play(a: Agent, b: Agent, cfg: PPOConfig) -> None:
    """``a`` and ``b`` play the same 64 dialogues alike, greedy and sampled (a save/load round trip)."""
    for deterministic in (True, False):
        ra, rb = (
            play(who, cfg.env_id, cfg.env_kwargs, 64, seed=5, batch=32, deterministic=deterministic) for who in (a, b)
        )
        np.testing.assert_array_equal(ra.returns, rb.returns)
        np.testing.assert_array_equal(ra.lengths, rb.lengths)


@pytest.fixture
def same_play() -> Callable[[Agent, Agent, PPOConfig], None]:
    """``same_play(a, b, cfg)``: see ``assert_same_play``."""
    return assert_same_play


@dataclass
class Exported:
    """A policy trained for two updates and exported with ``Trainer.export``."""

    trainer: PPOTrainer
    path: Path
    card: Card


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Exported]:
    """``exported(variant)``: a 2-update policy of that variant and its checkpoint folder (cached)."""
    cache: dict[str, Exported] = {}

    def get(variant: str) -> Exported:
        if variant not in cache:
            run = tmp_path_factory.mktemp(f"run-{variant}")
            trainer = PPOTrainer(small_config(variant=variant), run)
            trainer.train(stop_after=2)
            assert trainer.update == 2
            card = trainer.export(run / "checkpoint", prototype_episodes=300, max_turns_id=4)
            cache[variant] = Exported(trainer, run / "checkpoint", card)
        return cache[variant]

    return get


@dataclass(frozen=True)
class Dialogues:
    """``T`` steps of ``B`` simulated dialogues played by a random policy, as ``(T, B, ...)`` arrays.

    ``starts[t, b]`` is true where step ``t`` is the first turn of a dialogue in column ``b``
    (same-step autoreset: the observation after a final step is the next dialogue's first).
    """

    obs: npt.NDArray[np.float32]
    masks: npt.NDArray[np.int8]
    starts: npt.NDArray[np.bool_]
    tasks: npt.NDArray[np.float64]


def record_dialogues(batch: int = 12, steps: int = 30, seed: int = 5) -> Dialogues:
    envs = make_vec(ENV_ID, batch, **ENV_KWARGS)
    obs, info = envs.reset(seed=seed)
    policy = RandomPolicy(seed=seed)
    starts = np.ones(batch, dtype=bool)
    out: dict[str, list[np.ndarray]] = {"obs": [], "masks": [], "starts": [], "tasks": []}
    for _ in range(steps):
        out["obs"].append(np.asarray(obs, dtype=np.float32).copy())
        out["masks"].append(np.asarray(info["action_mask"]).copy())
        out["starts"].append(starts.copy())
        out["tasks"].append(np.asarray(info["user_params"], dtype=np.float64).copy())
        obs, _, terminated, truncated, info = envs.step(policy(obs, info["action_mask"]))
        starts = np.asarray(terminated | truncated)
    envs.close()
    return Dialogues(**{k: np.stack(v) for k, v in out.items()})


@pytest.fixture(scope="session")
def dialogues() -> Dialogues:
    """30 steps of 12 random-policy dialogues (several end and restart inside the window)."""
    d = record_dialogues()
    assert d.starts[1:].any(), "no dialogue ended inside the window: lengthen it"
    return d


@dataclass
class Replay:
    """What an ``Agent`` did on recorded dialogues: acts ``(T, B)``, natural parameters ``(T, B, z)``
    after each turn, and the segment probabilities ``(T, B, S)`` if the agent has prototypes."""

    acts: npt.NDArray[np.int64]
    eta: npt.NDArray[np.float32]
    precision: npt.NDArray[np.float32]
    probs: npt.NDArray[np.float64] | None


def replay(agent: Agent, d: Dialogues, *, deterministic: bool = True, seed: int = 0) -> Replay:
    """Step ``agent`` through the recorded dialogues (batched), resetting beliefs at dialogue starts."""
    belief = agent.initial_belief(d.obs.shape[1])
    gen = torch.Generator().manual_seed(seed)
    task_needed = agent.spec.variant == "oracle"
    acts, etas, precs, probs = [], [], [], []
    for t in range(d.obs.shape[0]):
        belief.reset(torch.as_tensor(d.starts[t]))
        task = d.tasks[t] if task_needed else None
        acts.append(agent.step(d.obs[t], d.masks[t], belief, task=task, deterministic=deterministic, generator=gen))
        etas.append(belief.eta.numpy().copy())
        precs.append(belief.precision.numpy().copy())
        if agent.contextual and agent.prototypes is not None:
            probs.append(agent.segment_probabilities(belief))
    return Replay(np.stack(acts), np.stack(etas), np.stack(precs), np.stack(probs) if probs else None)


@pytest.fixture
def replay_agent() -> Callable[..., Replay]:
    """``replay_agent(agent, dialogues, deterministic=True, seed=0)``: see ``replay``."""
    return replay
