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

The same user: with ``returning_user_kwarg`` (the environment keyword that makes a user return for
that many conversations; ``conversations_per_user`` for the simulators), the K earlier
conversations and the new one are one user's (a returning user, what few-shot is about). For
``context`` the environment is made with K + 1 conversations per user, which lines each trial of
``play`` up with one user. For ``gradient`` each trial is one user, in a one-row environment: K
sampled conversations to adapt on, then ``episodes / trials`` greedy conversations of the same
user with the adapted policy (a user's conversations are alike given the user: same behaviour
parameters, a new goal each), so ``trials`` is the number of users. Without it the K
conversations only share the task (a segment), each with its own user.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from metarl_core.evaluation import make_vec, play
from metarl_core.inference import Agent
from metarl_core.maml import Episodes, adapt, collect_for_adaptation
from metarl_core.networks import ActorCritic

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
    returning_user_kwarg: str | None = None,
) -> dict[int, dict[str, float]]:
    """``{K: summary of the new conversations}`` for every K of ``ks`` (see the module docstring).

    ``env_kwargs`` make the environment of the task (e.g. one segment). ``progress`` is called
    with the number of new conversations played. ``returning_user_kwarg``: the K conversations
    come from the same user (see the module docstring).
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
        elif how == "gradient" and k > 0 and returning_user_kwarg:
            per_trial = max(episodes // trials, 1)
            kwargs = {**env_kwargs, returning_user_kwarg: k + per_trial}
            returns, success = [], []
            for trial in range(trials):
                trial_seed = seed + 7919 * (trial + 1) + k
                r, s = _adapt_to_one_user(
                    agent, env_id, kwargs, k, per_trial, trial_seed, inner_lr, inner_steps, gamma, gae_lambda
                )
                returns.append(r)
                success.append(s)
            out[k] = _summary(np.concatenate(returns), np.concatenate(success))
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
            kwargs = {**env_kwargs, returning_user_kwarg: k + 1} if context and returning_user_kwarg else env_kwargs
            rec = play(agent, env_id, kwargs, episodes, seed=seed + context, context_episodes=context)
            out[k] = _summary(rec.returns, rec.success)
        if progress is not None:
            progress(int(out[k]["episodes"]))
    return out


def _adapt_to_one_user(
    agent: Agent,
    env_id: str,
    env_kwargs: dict[str, Any],
    k: int,
    new: int,
    seed: int,
    inner_lr: float,
    inner_steps: int,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One user (a one-row environment whose users return): the inner loop on its first ``k``
    conversations (sampled acts), then (returns, success) of its next ``new`` ones, greedy."""
    envs = make_vec(env_id, 1, **env_kwargs)
    try:
        obs, info = envs.reset(seed=seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            steps, obs, info = _conversations(agent.model, envs, obs, info, k, sample=True)
        adapted = adapt(agent.model, _as_episodes(steps), inner_lr, inner_steps, gamma, gae_lambda)
        steps, _, _ = _conversations(adapted, envs, obs, info, new, sample=False)
    finally:
        envs.close()
    returns = np.array([float(sum(float(r) for r in c["rewards"])) for c in steps])
    success = np.array([bool(c["success"][-1]) for c in steps])
    return returns, success


@torch.no_grad()
def _conversations(
    model: ActorCritic, envs: gym.vector.VectorEnv, obs: Any, info: dict[str, Any], n: int, sample: bool
) -> tuple[list[dict[str, list[torch.Tensor]]], Any, dict[str, Any]]:
    """The next ``n`` whole conversations of a one-row environment, step by step per conversation
    (fields of ``Episodes``), and the environment's (obs, info) after them."""
    out: list[dict[str, list[torch.Tensor]]] = []
    current: dict[str, list[torch.Tensor]] = {f: [] for f in Episodes._fields}
    while len(out) < n:
        o = torch.as_tensor(obs, dtype=torch.float32)
        mask = torch.as_tensor(info["action_mask"], dtype=torch.float32)
        logits, value = model(o, mask)
        logp_all = F.log_softmax(logits, -1)
        action = torch.multinomial(logp_all.exp(), 1).squeeze(-1) if sample else logits.argmax(-1)
        obs, reward, terminated, truncated, info = envs.step(action.numpy())
        done = bool(np.asarray(terminated | truncated)[0])
        for f, v in (
            ("obs", o[0]),
            ("masks", mask[0]),
            ("actions", action[0]),
            ("logprobs", logp_all[0, action[0]]),
            ("values", value[0]),
            ("rewards", torch.tensor(float(reward[0]))),
            ("dones", torch.tensor(float(done))),
            ("success", torch.tensor(float(np.asarray(info["success"])[0]))),
            ("valid", torch.tensor(1.0)),
        ):
            current[f].append(v)
        if done:
            out.append(current)
            current = {f: [] for f in Episodes._fields}
    return out, obs, info


def _as_episodes(conversations: list[dict[str, list[torch.Tensor]]]) -> Episodes:
    """Conversations as ``Episodes`` (one per column, zero padding after its end is not valid)."""
    steps = max(len(c["obs"]) for c in conversations)
    columns = [Episodes(*(torch.stack(c[f]).unsqueeze(1) for f in Episodes._fields)) for c in conversations]
    columns = [c.padded(steps) for c in columns]
    return Episodes(*(torch.cat(parts, dim=1) for parts in zip(*columns, strict=True)))
