"""Few-shot adaptation: the return of a new conversation after K earlier conversations of the same
task (a held-out segment), for every kind of method.

How a method uses the K conversations (``how``):

- ``context``: its state is carried across them into the new one. For the contextual policy that
  means the new conversation's posterior starts from the product of the prior and every factor of
  the K conversations (PEARL's setting, across episodes; Rakelly et al. 2019); for RL^2 the
  recurrent state (and the previous act and reward) is carried. The K conversations are played by
  the policy itself, greedily, as the deployed system would have.
- ``gradient``: the inner loop (``maml.adapt``) on the K conversations, played with sampled acts:
  MAML's meta-learned initial policy with its own step size, or plain fine-tuning of the
  segment-agnostic policy with a few policy-gradient steps. ``trials`` independent sets of K
  conversations are drawn, and each adapted policy plays ``episodes / trials`` new conversations.
- ``none``: the policy does not use them (the oracle, hand-written policies): K = 0 stands for all.

K = 0 is the policy as it is, facing a new user. Every new conversation is played greedily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from metarl_core.evaluation import play
from metarl_core.inference import Agent
from metarl_core.maml import adapt, collect_for_adaptation

How = Literal["context", "gradient", "none"]
HOWS: tuple[str, ...] = ("context", "gradient", "none")


def _summary(returns: np.ndarray, success: np.ndarray) -> dict[str, float]:
    n = len(returns)
    return {
        "episodes": n,
        "mean_return": float(returns.mean()),
        "return_ci95": 1.96 * float(returns.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan"),
        "success_rate": float(success.mean()),
    }


def fewshot_returns(
    agent: Agent,
    how: How,
    env_id: str,
    env_kwargs: dict[str, Any],
    ks: Sequence[int],
    *,
    episodes: int = 1000,
    trials: int = 20,
    seed: int = 0,
    inner_lr: float = 0.1,
    inner_steps: int = 1,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
    progress: Callable[[int], None] | None = None,
) -> dict[int, dict[str, float]]:
    """``{K: summary of the new conversations}`` for every K of ``ks`` (see the module docstring).

    ``env_kwargs`` make the environment of the task (e.g. one segment). ``progress`` is called
    with the number of new conversations played.
    """
    if how not in HOWS:
        raise ValueError(f"how must be one of {HOWS}, got {how!r}")
    if any(k < 0 for k in ks):
        raise ValueError(f"K must be zero or more, got {list(ks)}")
    if how == "gradient" and agent.spec.variant != "agnostic":
        raise ValueError(f"gradient adaptation needs a policy of the observation alone, not {agent.spec.variant!r}")
    out: dict[int, dict[str, float]] = {}
    for k in ks:
        if how == "none" and out:
            out[k] = next(iter(out.values()))
        elif how == "gradient" and k > 0:
            per_trial = max(episodes // trials, 1)
            returns, success = [], []
            for trial in range(trials):
                trial_seed = seed + 7919 * (trial + 1) + k
                with torch.random.fork_rng():
                    torch.manual_seed(trial_seed)
                    ep = collect_for_adaptation(agent.model, env_id, env_kwargs, k, trial_seed)
                adapted = adapt(agent.model, ep, inner_lr, inner_steps, gamma, gae_lambda)
                rec = play(Agent(adapted, agent.card), env_id, env_kwargs, per_trial, seed=trial_seed)
                returns.append(rec.returns)
                success.append(rec.success)
            out[k] = _summary(np.concatenate(returns), np.concatenate(success))
        else:
            context = k if how == "context" else 0
            rec = play(agent, env_id, env_kwargs, episodes, seed=seed + context, context_episodes=context)
            out[k] = _summary(rec.returns, rec.success)
        if progress is not None:
            progress(int(out[k]["episodes"]))
    return out
