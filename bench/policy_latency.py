"""Policy latency at batch 1 on one CPU thread: one turn = belief update + action.

It loads a trained checkpoint (``--checkpoint``; default ``models/default`` if it exists, else it
trains a tiny one into a temporary folder with the ``[train]`` values of ``configs/tiny.toml``,
and says so), collects a few hundred realistic observations by playing the single Gymnasium
environment of the checkpoint's card with random valid acts, and times one turn of the policy
per call with ``time.perf_counter_ns``, dialogue after dialogue (the belief carried within a
dialogue and started afresh at its first turn):

- ``act_one``: ``Agent.act_one(obs, mask, BeliefState)``, as the service calls it (the belief in
  and out as a ``BeliefState``);
- ``step``: ``Agent.step`` on a ``BatchBelief`` of size 1 (arrays already shaped ``(1, ...)``).

When the tiny policy stands in for the missing default one, ``act_one`` and ``step`` are also
timed on a network of ``configs/default.toml``'s sizes with untrained weights (latency depends on
the sizes, not on the weights), so the figures cover the network the service will run.

After a warm-up it times >= 5,000 turns of each (>= 500 with --quick) and reports p50, p90, p99
and max in microseconds. Bar: p99 <= 1 ms for each.

Usage: python bench/policy_latency.py [--quick] [--json PATH] [--checkpoint PATH]
"""

from __future__ import annotations

import os

# One core: keep the BLAS libraries single-threaded before NumPy and torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch
from common import check_line, parser, write_json

import simulators  # noqa: F401  (registers the environments)
from metarl_core.belief import BeliefState
from metarl_core.checkpoint import CheckpointError
from metarl_core.inference import Agent

DEFAULT_CHECKPOINT = ROOT / "models" / "default"
DEFAULT_CONFIG = ROOT / "configs" / "default.toml"
TINY_CONFIG = ROOT / "configs" / "tiny.toml"
BAR_US = 1000.0
OBSERVATIONS = 400
WARMUP = 500

Turn = tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], bool]  # obs, mask, first turn of a dialogue


def train_tiny(folder: Path) -> Path:
    """Train a tiny contextual policy with configs/tiny.toml's [train] values (one thread); returns the checkpoint."""
    from metarl_core.config import PPOConfig
    from metarl_core.ppo import PPOTrainer

    # One training thread, like the measurement (the values of the network are tiny.toml's).
    cfg = PPOConfig.from_dict({**tomllib.loads(TINY_CONFIG.read_text())["train"], "threads": 1})
    print(f"no checkpoint at {DEFAULT_CHECKPOINT}: training a tiny one ({cfg.total_steps:,} steps, {TINY_CONFIG.name})")
    t0 = time.perf_counter()
    trainer = PPOTrainer(cfg, folder / "run")
    trainer.train()
    out = folder / "checkpoint"
    trainer.export(out, prototype_episodes=1000)
    print(f"trained and exported to {out} in {time.perf_counter() - t0:.1f} s")
    return out


def default_size_agent(trained: Agent) -> Agent:
    """An untrained contextual agent with configs/default.toml's sizes and ``trained``'s spaces."""
    from metarl_core.config import PPOConfig
    from metarl_core.networks import ActorCritic, NetworkSpec

    cfg = PPOConfig.from_dict(tomllib.loads(DEFAULT_CONFIG.read_text())["train"])
    spec = NetworkSpec(
        obs_dim=trained.spec.obs_dim,
        n_actions=trained.spec.n_actions,
        variant="contextual",
        latent_dim=cfg.latent_dim,
        hidden=cfg.hidden,
        n_segments=trained.spec.n_segments,
    )
    torch.manual_seed(0)
    return Agent(ActorCritic(spec))


def collect_turns(env_id: str, env_kwargs: dict[str, Any], n: int, seed: int = 0) -> list[Turn]:
    """``n`` observations of whole dialogues on the single environment, random valid acts."""
    env = gym.make(env_id, **env_kwargs)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    turns: list[Turn] = []
    first = True
    while len(turns) < n or not first:  # finish the last dialogue
        mask = np.asarray(info["action_mask"], dtype=np.int8)
        turns.append((np.asarray(obs, dtype=np.float32), mask, first))
        action = int(rng.choice(np.flatnonzero(mask)))
        obs, _, terminated, truncated, info = env.step(action)
        first = bool(terminated or truncated)
        if first:
            obs, info = env.reset()
    env.close()
    return turns


def time_act_one(agent: Agent, turns: list[Turn], count: int) -> npt.NDArray[np.int64]:
    """Nanoseconds of ``count`` calls of ``act_one``, cycling through the recorded dialogues."""
    out = np.empty(count, dtype=np.int64)
    state: BeliefState | None = None
    clock = time.perf_counter_ns
    for i in range(count):
        obs, mask, first = turns[i % len(turns)]
        if first:
            state = None
        t0 = clock()
        _, state = agent.act_one(obs, mask, state)
        out[i] = clock() - t0
    return out


def time_step(agent: Agent, turns: list[Turn], count: int) -> npt.NDArray[np.int64]:
    """Nanoseconds of ``count`` calls of ``Agent.step`` on a ``BatchBelief`` of size 1."""
    batched = [(obs[None], mask[None], first) for obs, mask, first in turns]
    out = np.empty(count, dtype=np.int64)
    belief = agent.initial_belief(1)
    clock = time.perf_counter_ns
    for i in range(count):
        obs, mask, first = batched[i % len(batched)]
        if first:
            belief = agent.initial_belief(1)
        t0 = clock()
        agent.step(obs, mask, belief)
        out[i] = clock() - t0
    return out


def percentiles(ns: npt.NDArray[np.int64]) -> dict[str, float]:
    us = ns / 1000.0
    return {
        "turns": len(us),
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "mean_us": float(us.mean()),
    }


def main() -> None:
    p = parser("policy_latency", __doc__.splitlines()[0])
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"checkpoint folder (default: {DEFAULT_CHECKPOINT.relative_to(ROOT)}, else a tiny one trained now)",
    )
    args = p.parse_args()
    count = 500 if args.quick else 5000
    with tempfile.TemporaryDirectory(prefix="policy_latency_") as tmp:
        path: Path = args.checkpoint or DEFAULT_CHECKPOINT
        trained_now = args.checkpoint is None and not path.exists()
        if trained_now:
            path = train_tiny(Path(tmp))
        try:
            agent = Agent.load(path)
        except CheckpointError as e:
            sys.exit(f"error: {e}")
        if agent.spec.variant == "oracle":
            sys.exit(f"error: {path} is an oracle policy; it needs the true user parameters, not a service policy")
        assert agent.card is not None
        turns = collect_turns(agent.card.env_id, agent.card.env_kwargs, OBSERVATIONS)
        dialogues = sum(first for _, _, first in turns)

        # Measure on one thread (training may have set another count) and one core.
        torch.set_num_threads(1)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        timers: dict[str, Callable[[Agent, list[Turn], int], npt.NDArray[np.int64]]] = {
            "act_one": time_act_one,
            "step": time_step,
        }
        agents = {"": agent}
        if trained_now:
            agents[" (default size)"] = default_size_agent(agent)
        results: dict[str, dict[str, float]] = {}
        for suffix, who in agents.items():
            for name, timer in timers.items():
                timer(who, turns, WARMUP)
                results[name + suffix] = percentiles(timer(who, turns, count))

    spec = agent.spec
    print(
        f"checkpoint: {'tiny, trained now' if trained_now else path} ({spec.variant}, hidden {spec.hidden}, "
        f"latent {spec.latent_dim}, obs {spec.obs_dim}, acts {spec.n_actions}); "
        f"{len(turns)} observations from {dialogues} dialogues; torch threads {torch.get_num_threads()}"
    )
    if trained_now:
        big = agents[" (default size)"].spec
        print(f"default size: untrained, hidden {big.hidden}, latent {big.latent_dim} (from {DEFAULT_CONFIG.name})")
    print(f"{'call':<25} {'turns':>7} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'max us':>9}")
    for name, r in results.items():
        cells = " ".join(f"{r[k]:>9.1f}" for k in ("p50_us", "p90_us", "p99_us", "max_us"))
        print(f"{name:<25} {r['turns']:>7,} {cells}")
    checks = [
        check_line(f"p99 <= {BAR_US:.0f} us ({name})", r["p99_us"] <= BAR_US, f"p99 {r['p99_us']:.1f} us")
        for name, r in results.items()
    ]
    figures: dict[str, Any] = {
        "checkpoint": "tiny (trained now from configs/tiny.toml)" if trained_now else str(path),
        "network": spec.to_dict(),
        "default_size_network": agents[" (default size)"].spec.to_dict() if trained_now else None,
        "observations": len(turns),
        "dialogues": dialogues,
        "threads": torch.get_num_threads(),
        "results": results,
        "checks": checks,
        "quick": args.quick,
    }
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
