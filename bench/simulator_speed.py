"""Simulator speed on one core: single-environment steps/s and vectorised user turns/s.

Random valid actions (drawn from ``info["action_mask"]``) drive both. The single environment is
made with ``gymnasium.make`` (with Gymnasium's wrappers, as a user gets it). The vectorised one
steps 4096 dialogues at once. The loop time includes choosing the actions; the env-only time
counts just ``step`` (and the automatic resets inside it). Bars: single >= 10,000 steps/s,
vectorised >= 500,000 user turns/s.

Usage: python bench/simulator_speed.py [--quick] [--json PATH]
"""

from __future__ import annotations

import os

# One core: keep NumPy's BLAS single-threaded and pin the process before NumPy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import numpy as np
from common import check_line, parser, write_json

import simulators
from simulators.vector_env import SegmentDialogueVectorEnv

SINGLE_BAR = 10_000
VECTOR_BAR = 500_000


def single_speed(domain: str, steps: int) -> dict[str, float]:
    env = gym.make(simulators.ENV_ID, domain=domain)
    rnd = random.Random(0)
    _, info = env.reset(seed=0)
    env_time = 0.0
    episodes = 0
    start = time.perf_counter()
    for _ in range(steps):
        mask = info["action_mask"]
        action = rnd.choice([i for i in range(len(mask)) if mask[i]])
        t0 = time.perf_counter()
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            _, info = env.reset()
            episodes += 1
        env_time += time.perf_counter() - t0
    total = time.perf_counter() - start
    return {
        "steps": steps,
        "episodes": episodes,
        "steps_per_s": steps / total,
        "env_only_steps_per_s": steps / env_time,
    }


def vector_speed(domain: str, batch: int, steps: int, with_text: bool) -> dict[str, float]:
    env = SegmentDialogueVectorEnv(num_envs=batch, domain=domain, with_text=with_text)
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    env_time = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        action = (rng.random(info["action_mask"].shape) * info["action_mask"]).argmax(1)
        t0 = time.perf_counter()
        _, _, _, _, info = env.step(action)
        env_time += time.perf_counter() - t0
    total = time.perf_counter() - start
    turns = steps * batch
    return {
        "batch": batch,
        "steps": steps,
        "user_turns": turns,
        "user_turns_per_s": turns / total,
        "env_only_user_turns_per_s": turns / env_time,
    }


def main() -> None:
    p = parser("simulator_speed", __doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4096, help="vectorised batch size (default: 4096)")
    args = p.parse_args()
    single_steps = 20_000 if args.quick else 200_000
    vector_steps = 50 if args.quick else 400
    results: dict[str, dict] = {}
    for domain in ("restaurant", "hotel"):
        results[domain] = {
            "single": single_speed(domain, single_steps),
            "vector": vector_speed(domain, args.batch, vector_steps, with_text=False),
            "vector_with_text": vector_speed(domain, 256, max(vector_steps // 10, 5), with_text=True),
        }
    print(
        f"{'domain':<11} {'single steps/s':>15} {'(env only)':>11} "
        f"{'vector turns/s':>15} {'(env only)':>11} {'vector+text turns/s':>20}"
    )
    for domain, r in results.items():
        print(
            f"{domain:<11} {r['single']['steps_per_s']:>15,.0f} {r['single']['env_only_steps_per_s']:>11,.0f} "
            f"{r['vector']['user_turns_per_s']:>15,.0f} {r['vector']['env_only_user_turns_per_s']:>11,.0f} "
            f"{r['vector_with_text']['user_turns_per_s']:>20,.0f}"
        )
    checks = []
    for domain, r in results.items():
        s = r["single"]["steps_per_s"]
        v = r["vector"]["user_turns_per_s"]
        checks.append(
            check_line(f"single env >= {SINGLE_BAR:,} steps/s ({domain})", s >= SINGLE_BAR, f"{s:,.0f} steps/s")
        )
        checks.append(
            check_line(f"vectorised >= {VECTOR_BAR:,} user turns/s ({domain})", v >= VECTOR_BAR, f"{v:,.0f} turns/s")
        )
    write_json(args.json, {"results": results, "checks": checks, "quick": args.quick})


if __name__ == "__main__":
    main()
