"""First-order MAML: an initial policy meta-trained so that a few policy-gradient steps on K
conversations of a task adapt it; the inner loop (``adapt``) is what evaluation calls too.

MAML (Finn et al. 2017) meta-learns by optimisation. Here a task is one user segment (the
environment made with only that segment, ``task_kwarg``), and the policy is the segment-agnostic
actor-critic (observation only: all of its adaptation is in the gradient steps). One meta-update:

1. for each of ``meta_batch`` task instances (the training segments in turn), play
   ``inner_conversations`` whole conversations with the current policy theta;
2. inner loop, per instance: ``inner_steps`` policy-gradient steps of size ``inner_lr`` on the
   actor's parameters, on those conversations (GAE advantages from theta's critic), giving
   theta_i';
3. play ``outer_conversations`` fresh conversations of the same segment with theta_i';
4. outer loop: PPO's clipped surrogate of the adapted policies on the fresh conversations, plus the
   critic's value loss on both phases and an entropy bonus, for ``update_epochs`` epochs over
   ``minibatches`` groups of instances. First-order (FOMAML): the gradient is taken at theta_i' and
   applied to theta, with the inner step held constant. At every epoch the inner step is
   recomputed from the current theta on the stored conversations through the importance-weighted
   surrogate pi_theta / pi_theta_old * A, whose gradient at theta_old is the plain policy gradient
   (the surrogate ProMP uses), so that the outer loop reuses each batch as PPO does; that keeps the
   comparison with the PPO learners about the meta-learning, not about data reuse.

Per-instance inner gradients and the adapted policies run batched with ``torch.func`` (``vmap`` of
``grad`` and of ``functional_call``). Environment steps counted are the turns of the conversations
used (each row of a vectorised environment plays one whole conversation; the turns a row steps after
its conversation ended are discarded and not counted).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F  # noqa: N812

from metarl_core.config import MAMLConfig
from metarl_core.evaluation import make_vec, play
from metarl_core.inference import Agent
from metarl_core.networks import ActorCritic
from metarl_core.ppo import gae
from metarl_core.trainer import Trainer

Params = dict[str, torch.Tensor]
PolicyFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Episodes(NamedTuple):
    """``(T, B, ...)`` steps of ``B`` whole conversations, one per column; ``valid`` marks its steps."""

    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    success: torch.Tensor
    """``info["success"]`` of each step (it says something only where the conversation ends)."""
    valid: torch.Tensor

    @property
    def turns(self) -> int:
        return int(self.valid.sum())

    def advantages(self, gamma: float, lam: float) -> torch.Tensor:
        """GAE advantages (every conversation ends inside the window, so nothing is bootstrapped)."""
        return gae(self.rewards, self.values, self.dones, torch.zeros_like(self.rewards[0]), gamma, lam)

    def padded(self, steps: int) -> Episodes:
        """The same conversations in a window of ``steps`` (padding is not valid)."""
        extra = steps - self.obs.shape[0]
        return Episodes(*(torch.cat([t, t.new_zeros((extra, *t.shape[1:]))]) for t in self))


@torch.no_grad()
def play_conversations(policy: PolicyFn, envs: gym.vector.VectorEnv, seed: int, max_steps: int = 1000) -> Episodes:
    """Every column of ``envs`` plays one whole conversation with ``policy(obs, mask) -> (logits,
    values)``, acts sampled (torch's global generator)."""
    obs, info = envs.reset(seed=seed)
    alive = torch.ones(envs.num_envs, dtype=torch.bool)
    buf: dict[str, list[torch.Tensor]] = {k: [] for k in Episodes._fields}
    for _ in range(max_steps):
        o = torch.as_tensor(obs, dtype=torch.float32)
        mask = torch.as_tensor(info["action_mask"], dtype=torch.float32)
        logits, value = policy(o, mask)
        logp_all = F.log_softmax(logits, -1)
        action = torch.multinomial(logp_all.exp(), 1).squeeze(-1)
        obs, reward, terminated, truncated, info = envs.step(action.numpy())
        done = torch.as_tensor(np.asarray(terminated | truncated))
        for k, v in (
            ("obs", o),
            ("masks", mask),
            ("actions", action),
            ("logprobs", logp_all.gather(-1, action[:, None]).squeeze(-1)),
            ("values", value),
            ("rewards", torch.as_tensor(reward, dtype=torch.float32)),
            ("dones", done.to(torch.float32)),
            ("success", torch.as_tensor(np.asarray(info["success"]), dtype=torch.float32)),
            ("valid", alive.to(torch.float32)),
        ):
            buf[k].append(v)
        alive = alive & ~done
        if not alive.any():
            break
    else:
        raise RuntimeError(f"a conversation lasted more than {max_steps} steps")
    return Episodes(*(torch.stack(buf[k]) for k in Episodes._fields))


def actor_parameters(model: ActorCritic) -> Params:
    """The parameters the inner loop adapts (the actor's; the critic is the baseline)."""
    return {n: p for n, p in model.named_parameters() if n.startswith("actor.")}


def _by_instance(t: torch.Tensor, instances: int) -> torch.Tensor:
    """``(T, I * K, ...)`` -> ``(I, T * K, ...)``: the steps of each instance's K columns together."""
    steps, cols = t.shape[:2]
    k = cols // instances
    return t.reshape(steps, instances, k, *t.shape[2:]).transpose(0, 1).reshape(instances, steps * k, *t.shape[2:])


class InnerBatch(NamedTuple):
    """Each instance's conversations as flat steps ``(I, N, ...)`` with fixed advantages."""

    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def of(cls, ep: Episodes, instances: int, gamma: float, lam: float) -> InnerBatch:
        adv = ep.advantages(gamma, lam)
        parts = (ep.obs, ep.masks, ep.actions, ep.logprobs, adv, ep.valid)
        return cls(*(_by_instance(t, instances) for t in parts))

    def select(self, rows: torch.Tensor) -> InnerBatch:
        return InnerBatch(*(t[rows] for t in self))


def _logp(model: nn.Module, params: Params, obs: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor) -> Any:
    logits, _ = functional_call(model, params, (obs, masks))
    return F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1), logits


def inner_steps(model: ActorCritic, theta: Params, batch: InnerBatch, lr: float, steps: int) -> Params:
    """MAML's inner loop for every instance of ``batch`` at once: ``steps`` policy-gradient steps
    from ``theta`` (the actor's parameters); returns the adapted parameters, ``(I, ...)`` each.

    The loss is -mean over valid steps of pi / pi_old * A, whose gradient at pi = pi_old is the
    policy gradient (REINFORCE with GAE advantages from the critic).
    """

    def loss(p: Params, obs: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor, old: torch.Tensor,
             adv: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # fmt: skip
        logp, _ = _logp(model, p, obs, masks, actions)
        return -(torch.exp(logp - old) * adv * valid).sum() / valid.sum().clamp(min=1.0)

    params = theta
    for i in range(steps):
        per_instance = None if i == 0 else 0
        g = vmap(grad(loss), in_dims=(per_instance, 0, 0, 0, 0, 0, 0))(params, *batch)
        params = {n: (params[n] if i else params[n].unsqueeze(0)) - lr * g[n] for n in params}
    return params


def instance_policy(model: ActorCritic, params: Params) -> PolicyFn:
    """The adapted policies as one batched policy: instance i plays the i-th block of columns."""

    def one(p: Params, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return functional_call(model, p, (obs, mask))

    def policy(obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        instances = next(iter(params.values())).shape[0]
        o = obs.reshape(instances, -1, obs.shape[-1])
        m = mask.reshape(instances, -1, mask.shape[-1])
        logits, value = vmap(one)(params, o, m)
        return logits.reshape(len(obs), -1), value.reshape(len(obs))

    return policy


@torch.no_grad()
def adapt(model: ActorCritic, episodes: Episodes, lr: float, steps: int, gamma: float, lam: float) -> ActorCritic:
    """A copy of ``model`` after the inner loop on ``episodes`` (one task's conversations, played by
    ``model`` with sampled acts). Used to adapt a MAML policy, and to fine-tune any reactive policy."""
    batch = InnerBatch.of(episodes, 1, gamma, lam)
    theta = {n: p.detach() for n, p in actor_parameters(model).items()}
    adapted = inner_steps(model, theta, batch, lr, steps)  # torch.func.grad ignores the outer no_grad
    out = copy.deepcopy(model)
    for name, p in out.named_parameters():
        if name in adapted:
            p.copy_(adapted[name][0])
    return out.eval()


def collect_for_adaptation(model: ActorCritic, env_id: str, env_kwargs: dict[str, Any], k: int, seed: int) -> Episodes:
    """``k`` conversations played by ``model`` (sampled acts): what ``adapt`` learns from."""
    envs = make_vec(env_id, k, **env_kwargs)
    try:
        return play_conversations(lambda o, m: model(o, m), envs, seed)
    finally:
        envs.close()


class MAMLTrainer(Trainer):
    """First-order MAML with the core's loop, logging, evaluation, resume and export."""

    CONFIG = MAMLConfig
    cfg: MAMLConfig

    def __init__(self, cfg: MAMLConfig, run_dir: str | Path) -> None:
        super().__init__(cfg, run_dir)
        if cfg.meta_batch % len(self.segment_names):
            raise ValueError(
                f"meta_batch ({cfg.meta_batch}) must be a multiple of the number of tasks ({len(self.segment_names)})"
            )
        self.per_task = cfg.meta_batch // len(self.segment_names)
        self.task_envs = {
            phase: [make_vec(cfg.env_id, self.per_task * k, **self.task_kwargs(t)) for t in self.segment_names]
            for phase, k in (("inner", cfg.inner_conversations), ("outer", cfg.outer_conversations))
        }

    def task_kwargs(self, task: str) -> dict[str, Any]:
        return {**self.cfg.env_kwargs, self.cfg.task_kwarg: [task]}

    def _fraction_done(self) -> float:
        return min(self.global_step / self.cfg.total_steps, 1.0)

    def _play_phase(self, phase: str, policies: list[PolicyFn]) -> Episodes:
        """Every task's conversations of one phase, each task with its policy, in one window."""
        seed = self.cfg.seed * 1_000_003 + self.update * 16 + (0 if phase == "inner" else 8)
        eps = [
            play_conversations(pol, env, seed + i)
            for i, (env, pol) in enumerate(zip(self.task_envs[phase], policies, strict=True))
        ]
        steps = max(e.obs.shape[0] for e in eps)
        eps = [e.padded(steps) for e in eps]
        # Columns task-major, then instance, then conversation (the layout ``_by_instance`` expects).
        return Episodes(*(torch.cat(parts, dim=1) for parts in zip(*eps, strict=True)))

    def iteration(self) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        n_tasks, inst = len(self.segment_names), cfg.meta_batch
        inner_ep = self._play_phase("inner", [lambda o, m: model(o, m)] * n_tasks)
        inner = InnerBatch.of(inner_ep, inst, cfg.gamma, cfg.gae_lambda)
        theta = {n: p.detach() for n, p in actor_parameters(model).items()}
        adapted = {n: p.detach() for n, p in inner_steps(model, theta, inner, cfg.inner_lr, cfg.inner_steps).items()}
        per = self.per_task
        policies = [
            instance_policy(model, {n: p[i * per : (i + 1) * per] for n, p in adapted.items()}) for i in range(n_tasks)
        ]
        outer_ep = self._play_phase("outer", policies)
        outer_adv = outer_ep.advantages(cfg.gamma, cfg.gae_lambda)
        outer = InnerBatch(
            *(
                _by_instance(t, inst)
                for t in (outer_ep.obs, outer_ep.masks, outer_ep.actions, outer_ep.logprobs, outer_adv, outer_ep.valid)
            )
        )
        outer_returns = _by_instance(outer_adv + outer_ep.values, inst)
        inner_returns = _by_instance(inner_ep.advantages(cfg.gamma, cfg.gae_lambda) + inner_ep.values, inst)
        self.global_step += inner_ep.turns + outer_ep.turns
        self._record_finished(outer_ep)
        return self._meta_update(inner, outer, inner_returns, outer_returns)

    def _record_finished(self, ep: Episodes) -> None:
        """Returns and successes of the adapted policies' conversations, for ``charts/*``."""
        self.recent_returns.extend((ep.rewards * ep.valid).sum(0).tolist())
        self.recent_success.extend((ep.success * ep.dones * ep.valid).sum(0).tolist())

    def _meta_update(
        self, inner: InnerBatch, outer: InnerBatch, inner_returns: torch.Tensor, outer_returns: torch.Tensor
    ) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        per_mb = cfg.meta_batch // cfg.minibatches

        def adapted_forward(p: Params, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return functional_call(model, p, (obs, mask))

        stats: dict[str, list[float]] = {}
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(cfg.meta_batch)
            for i in range(cfg.minibatches):
                rows = perm[i * per_mb : (i + 1) * per_mb]
                mb_inner, mb_outer = inner.select(rows), outer.select(rows)
                theta = actor_parameters(model)
                frozen = {n: p.detach() for n, p in theta.items()}
                step = inner_steps(model, frozen, mb_inner, cfg.inner_lr, cfg.inner_steps)
                # First order: theta_i' = theta + (theta_i' - theta) with the difference held constant.
                params = {n: theta[n].unsqueeze(0) + (step[n] - frozen[n]).detach() for n in theta}
                logits, _ = vmap(adapted_forward)(params, mb_outer.obs, mb_outer.masks)
                logp_all = F.log_softmax(logits, -1)
                logp = logp_all.gather(-1, mb_outer.actions.unsqueeze(-1)).squeeze(-1)
                valid = mb_outer.valid
                n_valid = valid.sum().clamp(min=1.0)
                a = mb_outer.advantages
                mean = (a * valid).sum() / n_valid
                std = (((a - mean) * valid).pow(2).sum() / n_valid).sqrt()
                a = (a - mean) / (std + 1e-8)
                ratio = torch.exp(logp - mb_outer.logprobs)
                surrogate = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef))
                pg_loss = (surrogate * valid).sum() / n_valid
                entropy = (-(logp_all.exp() * logp_all.clamp(min=-30.0)).sum(-1) * valid).sum() / n_valid
                v_loss = torch.zeros(())
                for batch, ret in ((mb_inner, inner_returns[rows]), (mb_outer, outer_returns[rows])):
                    _, value = model(batch.obs, batch.masks)
                    v_loss = v_loss + 0.5 * ((value - ret).pow(2) * batch.valid).sum() / batch.valid.sum().clamp(min=1)
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                approx_kl = (((ratio - 1) - torch.log(ratio)) * valid).sum() / n_valid
                for k, v in (("policy", pg_loss), ("value", v_loss), ("entropy", entropy), ("approx_kl", approx_kl)):
                    stats.setdefault(k, []).append(float(v.detach()))
        return {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """The meta-learned policy as it is (a new user, no data: ``eval/mean_return``) and after the
        inner loop on ``inner_conversations`` conversations of each training segment
        (``eval/adapted_return``, the mean over segments)."""
        out = super().evaluate(episodes)
        n = max((episodes or self.cfg.eval_episodes) // len(self.segment_names), 1)
        returns = []
        for i, task in enumerate(self.segment_names):
            seed = 20_000 + 100 * self.update + i
            kwargs = self.task_kwargs(task)
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                ep = collect_for_adaptation(self.model, self.cfg.env_id, kwargs, self.cfg.inner_conversations, seed)
            adapted = adapt(
                self.model, ep, self.cfg.inner_lr, self.cfg.inner_steps, self.cfg.gamma, self.cfg.gae_lambda
            )
            rec = play(Agent(adapted), self.cfg.env_id, kwargs, n, seed=seed)
            returns.append(float(rec.returns.mean()))
        out["eval/adapted_return"] = float(np.mean(returns))
        return out
