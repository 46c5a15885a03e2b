"""PPO for contextual meta-RL, with the belief encoder trained end to end.

Why PPO for the shipped policy (and not PEARL's off-policy SAC, which ``metarl_core.sac`` also
provides): the simulators are cheap (hundreds of thousands of turns per second), so sample
efficiency matters less than wall time and stability on two CPU cores; PPO on thousands of
vectorised dialogues is simple, stable and fast, and the belief is updated after every turn inside
a conversation, which on-policy sequences give us for free. The method comparison measures the
trade (README, "Method comparison"): SAC needs several times fewer dialogue turns to reach a given
return, but each turn costs it several times more compute (gradient steps on replayed
conversations), and PPO's whole 6M-turn default training fits the 15-minute budget. The
encoder gets its gradients through the actor and critic (as VariBAD's policy does through its
belief input), from beta * KL(q(z | c) || N(0, I)) and, during training only, from an auxiliary
segment-classification loss on the posterior mean (labels from ``info``).

Sequences: every update uses whole rollouts of ``rollout_steps`` steps per environment column,
so the posterior at each step can be recomputed with the current encoder (``streaming_posteriors``,
carrying the natural parameters in from the previous rollout like a recurrent policy's hidden
state). Minibatches split columns, not steps. The turn limit is part of the MDP (the observation
carries it), so truncation is treated as the end of the episode.

Config fields, losses (``losses/*``) and charts (``charts/*``) follow CleanRL's layout.

What the policy carries from step to step (the belief's natural parameters here) goes through a
few hooks (``_initial_carry``, ``_step_inputs``, ``_after_step``, ``_sequence_inputs``), so that
RL^2 (``metarl_core.rl2``) trains with this same learner; ``iteration`` and ``_fraction_done`` let
first-order MAML (``metarl_core.maml``) reuse the loop, logging, evaluation, resume and export.

Returning users (``conversations_per_user = K > 1``, for any variant with a memory): the training
environment keeps each user for K consecutive conversations and the memory (the belief here) is
restarted only where a new user starts, so the belief is also trained on what few-shot asks of it:
a posterior that already holds a user's earlier conversations (PEARL's context across episodes).
Returns and advantages still end with every conversation; a user's first conversation starts
from the prior, as with K = 1.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from metarl_core.belief import belief_step, kl_to_standard_normal, posterior, streaming_posteriors
from metarl_core.checkpoint import Card, save_checkpoint
from metarl_core.evaluation import make_vec, play
from metarl_core.inference import Agent
from metarl_core.networks import ActorCritic, NetworkSpec


@dataclass
class TrainConfig:
    """Training configuration (every field can be set from a TOML config file)."""

    VARIANTS: ClassVar[tuple[str, ...]] = ("contextual", "agnostic", "oracle")
    POSITIVE: ClassVar[tuple[str, ...]] = (
        "total_steps",
        "num_envs",
        "rollout_steps",
        "update_epochs",
        "minibatches",
        "latent_dim",
        "hidden",
        "eval_every",
        "eval_episodes",
        "checkpoint_every",
        "threads",
        "conversations_per_user",
    )
    SHAPED_REWARD: ClassVar[str] = ""
    """Empty if the learner can train on a shaped reward (``success_bonus``), else why it cannot."""

    env_id: str = "simulators:simulators/SegmentDialogue-v0"
    """Gymnasium id; ``module:id`` imports the module that registers it."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"domain": "restaurant"})
    """Keyword arguments of the environment (domain, segments, max_turns)."""
    variant: str = "contextual"
    """contextual (belief), agnostic (no latent) or oracle (true user parameters)."""
    total_steps: int = 10_000_000
    """Environment steps (dialogue turns) to train for."""
    num_envs: int = 512
    """Dialogues stepped in parallel."""
    rollout_steps: int = 32
    """Steps per environment per update."""
    learning_rate: float = 1e-3
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0."""
    gamma: float = 0.99
    """Discount of the learner's returns. Evaluation counts the return undiscounted; for short
    episodes (a conversation: at most ``max_turns``) 1.0 trains for exactly that, as the default
    config does."""
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    update_epochs: int = 4
    minibatches: int = 4
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    kl_beta: float = 0.01
    """Weight of KL(q(z|c) || N(0, I))."""
    aux_coef: float = 0.5
    """Weight of the auxiliary segment-classification loss (training only; 0 turns it off)."""
    latent_dim: int = 4
    hidden: int = 128
    seed: int = 0
    eval_every: int = 25
    """Updates between evaluations (greedy policy, ``eval_episodes`` dialogues)."""
    eval_episodes: int = 1500
    checkpoint_every: int = 25
    """Updates between resumable checkpoints of the run."""
    keep_best: bool = False
    """Export the weights of the best periodic evaluation (``eval/mean_return``) instead of the last
    ones: model selection on the trainer's own evaluation dialogues, which ``segdial evaluate`` does
    not reuse (other seeds)."""
    label_key: str = "segment_index"
    """``info`` key of the task label (auxiliary loss, prototypes)."""
    label_names_key: str = "segment"
    task_key: str = "user_params"
    """``info`` key of the true task parameters (oracle variant)."""
    threads: int = 2
    conversations_per_user: int = 1
    """Conversations of one user in training, the policy's memory (belief, or RL^2's state) carried
    across them (1: a new user, and a fresh memory, for every conversation)."""
    returning_user_kwarg: str = "conversations_per_user"
    """Environment keyword that makes users return for ``conversations_per_user`` conversations."""
    conversation_index_key: str = "conversation_index"
    """``info`` key of a conversation's index within its user (0: a new user)."""
    success_bonus: float = 0.0
    """Added to the reward of the turn that ends a conversation in success (``info[success_key]``),
    in training only: evaluation, ``charts/episode_return`` and ``keep_best`` use the environment's
    own reward. A way to trade return for success rate (README, the default checkpoint)."""
    success_key: str = "success"

    @property
    def carried(self) -> bool:
        """Whether the memory is carried across a returning user's conversations in training."""
        return self.conversations_per_user > 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        cfg = cls(**data)
        if cfg.variant not in cls.VARIANTS:
            *rest, last = cls.VARIANTS
            names = f"{', '.join(rest)} or {last}" if rest else last
            raise ValueError(f"variant must be {names}, got {cfg.variant!r}")
        for name in cls.POSITIVE:
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")
        if cfg.success_bonus and cls.SHAPED_REWARD:
            raise ValueError(f"success_bonus is not supported here: {cls.SHAPED_REWARD}")
        if cfg.num_envs % cfg.minibatches:
            raise ValueError(f"num_envs ({cfg.num_envs}) must be a multiple of minibatches ({cfg.minibatches})")
        return cfg


@dataclass
class Rollout:
    """One rollout, ``(T, B, ...)`` tensors, plus the policy's memory carried into it."""

    obs: torch.Tensor
    masks: torch.Tensor
    starts: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    labels: torch.Tensor
    tasks: torch.Tensor
    carry0: tuple[torch.Tensor, ...]
    """(eta, precision) of the belief; RL^2's (state, previous act, previous reward)."""


ProgressFn = Callable[[int, dict[str, float]], None]


class Trainer:
    """Trains one policy; ``run_dir`` holds TensorBoard logs, the resumable state and the result."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.envs = make_vec(cfg.env_id, cfg.num_envs, **self._train_env_kwargs())
        obs_space = self.envs.single_observation_space
        self.obs_dim = int(np.prod(obs_space.shape or (0,)))
        self.n_actions = int(self.envs.single_action_space.n)  # type: ignore[attr-defined]
        self.obs, info = self.envs.reset(seed=cfg.seed)
        self.info = info
        self.segment_names = self._names(info)
        task_dim = int(np.asarray(info[cfg.task_key]).shape[1]) if cfg.task_key in info else 0
        self.spec = self._network_spec(task_dim)
        self.model = ActorCritic(self.spec)
        if cfg.variant == "oracle":
            tasks = np.asarray(info[cfg.task_key])
            low, high = tasks.min(0), tasks.max(0)
            self.model.get_buffer("task_low").copy_(torch.as_tensor(low, dtype=torch.float32))
            self.model.get_buffer("task_scale").copy_(
                torch.as_tensor(np.maximum(high - low, 1e-3), dtype=torch.float32)
            )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.batch_steps = cfg.num_envs * cfg.rollout_steps
        self.n_updates = max(1, cfg.total_steps // self.batch_steps)
        self.update = 0
        self.global_step = 0
        self.wall_time = 0.0
        self.carry = self._initial_carry()
        self.starts = torch.ones(cfg.num_envs, dtype=torch.bool)
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None
        """With ``keep_best``: the best evaluation so far, ``{"step", "eval/mean_return", "model"}``."""
        self.recent_returns: list[float] = []
        self.recent_success: list[float] = []

    def _network_spec(self, task_dim: int) -> NetworkSpec:
        cfg = self.cfg
        return NetworkSpec(
            obs_dim=self.obs_dim,
            n_actions=self.n_actions,
            variant=cfg.variant,  # type: ignore[arg-type]
            latent_dim=cfg.latent_dim,
            hidden=cfg.hidden,
            task_dim=task_dim if cfg.variant == "oracle" else 0,
            n_segments=len(self.segment_names) if cfg.variant == "contextual" and cfg.aux_coef > 0 else 0,
        )

    def _names(self, info: dict[str, Any]) -> list[str]:
        """Names of the task labels: the environment's ``task_names`` if it has them, else the
        ``segments`` keyword argument, else the labels seen at reset."""
        names = getattr(self.envs, "task_names", None)
        if names is None and isinstance(self.cfg.env_kwargs.get("segments"), list):
            names = self.cfg.env_kwargs["segments"]
        if names is not None:
            return [str(n) for n in names]
        idx = np.asarray(info[self.cfg.label_key])
        seen = dict(zip(idx.tolist(), np.asarray(info[self.cfg.label_names_key]).tolist(), strict=True))
        return [str(seen.get(i, f"task{i}")) for i in range(max(seen) + 1)]

    # -- state for resuming --------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / "train_state.pt"

    def save_state(self) -> None:
        """Everything a killed run needs to continue (written atomically)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "update": self.update,
            "global_step": self.global_step,
            "wall_time": self.wall_time,
            "history": self.history,
            "config": asdict(self.cfg),
            "torch_rng": torch.get_rng_state(),
            "best": self.best,
            **self._extra_state(),
        }
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)

    def try_resume(self) -> bool:
        """Continue from ``run_dir`` if it holds a run of the same configuration."""
        if not self.state_path.exists():
            return False
        state = torch.load(self.state_path, weights_only=False)
        if state["config"] != asdict(self.cfg):
            raise ValueError(f"{self.run_dir} holds a run with another configuration; use a new --out folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.update, self.global_step = state["update"], state["global_step"]
        self.wall_time, self.history = state["wall_time"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        self.best = state.get("best")
        self._load_extra_state(state)
        # Fresh dialogues (mid-dialogue simulator state is not saved): reseed per update.
        self.obs, self.info = self.envs.reset(seed=self.cfg.seed + 1000 * self.update)
        self.starts[:] = True
        return True

    def _extra_state(self) -> dict[str, Any]:
        """What a learner with more to resume (SAC's critics and replay buffer) adds to the state."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_extra_state`` saved."""

    # -- the policy's memory (hooks: RL^2 carries a recurrent state instead) -------------------
    def _initial_carry(self) -> tuple[torch.Tensor, ...]:
        """The memory carried from step to step: the belief's natural parameters (the prior)."""
        z = max(self.cfg.latent_dim, 1)
        return torch.zeros(self.cfg.num_envs, z), torch.ones(self.cfg.num_envs, z)

    def _observed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(obs, mask, task) of the current step."""
        o = torch.as_tensor(self.obs, dtype=torch.float32)
        mask = torch.as_tensor(self.info["action_mask"], dtype=torch.float32)
        key = self.cfg.task_key
        task = torch.as_tensor(self.info[key], dtype=torch.float32) if key in self.info else torch.zeros(len(o), 1)
        return o, mask, task

    def _step_inputs(
        self, carry: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """(obs, mask, task, policy input, memory) of the current step, the belief updated with this
        step's observation (restarted where a dialogue starts)."""
        o, mask, task = self._observed()
        eta, prec = carry
        mean = var = None
        if self.model.encoder is not None:
            eta, prec = belief_step(eta, prec, self.starts, *self.model.encoder(o))
            mean, var = posterior(eta, prec)
        return o, mask, task, self.model.inputs(o, mean, var, task), (eta, prec)

    def _after_step(
        self, carry: tuple[torch.Tensor, ...], action: torch.Tensor, reward: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The memory once the act is taken and rewarded: the belief needs neither."""
        return carry

    def _training_reward(self, reward: np.ndarray) -> np.ndarray:
        """The reward the learner is trained on: the environment's, plus ``success_bonus`` on a
        successful last turn (the step's ``info`` is ``self.info``)."""
        if not self.cfg.success_bonus:
            return reward
        return reward + self.cfg.success_bonus * np.asarray(self.info[self.cfg.success_key], dtype=float)

    def _train_env_kwargs(self) -> dict[str, Any]:
        """Keywords of the training environment (carried memory: users return for
        ``conversations_per_user`` conversations)."""
        kwargs = dict(self.cfg.env_kwargs)
        if self.cfg.carried:
            kwargs[self.cfg.returning_user_kwarg] = self.cfg.conversations_per_user
        return kwargs

    def _memory_starts(self, done: np.ndarray) -> torch.Tensor:
        """Where the memory restarts at the next step: wherever a dialogue ended, or, carried across
        a returning user's conversations, only where a new user starts."""
        if not self.cfg.carried:
            return torch.as_tensor(done)
        new_user = np.asarray(self.info[self.cfg.conversation_index_key]) == 0
        return torch.as_tensor(done & new_user)

    def _sequence_inputs(self, r: Rollout, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Policy inputs ``(T, |c|, ...)`` of rollout columns ``c`` with the current networks, and the
        KL and auxiliary segment losses of their beliefs."""
        mean = var = None
        kl = torch.zeros(())
        aux = torch.zeros(())
        if self.model.encoder is not None:
            f_mean, f_logvar = self.model.encoder(r.obs[:, c])
            eta0, precision0 = r.carry0
            mean, var, _, _ = streaming_posteriors(f_mean, f_logvar, r.starts[:, c], eta0[c], precision0[c])
            kl = kl_to_standard_normal(mean, var).mean()
            if self.model.segment_head is not None:
                aux = F.cross_entropy(self.model.segment_head(mean).flatten(0, 1), r.labels[:, c].flatten())
        return self.model.inputs(r.obs[:, c], mean, var, r.tasks[:, c]), kl, aux

    # -- one rollout ---------------------------------------------------------------------------

    @torch.no_grad()
    def collect(self) -> Rollout:
        cfg, steps, b = self.cfg, self.cfg.rollout_steps, self.cfg.num_envs
        buf: dict[str, list[torch.Tensor]] = {
            k: []
            for k in ("obs", "masks", "starts", "actions", "logprobs", "values", "rewards", "dones", "labels", "tasks")
        }
        carry0 = tuple(t.clone() for t in self.carry)
        carry = self.carry
        for _ in range(steps):
            o, mask, task, x, carry = self._step_inputs(carry)
            logits, value = self.model(x, mask)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
            buf["obs"].append(o)
            buf["masks"].append(mask)
            buf["starts"].append(self.starts.clone())
            buf["actions"].append(action)
            buf["logprobs"].append(dist.log_prob(action))
            buf["values"].append(value)
            buf["labels"].append(torch.as_tensor(np.asarray(self.info[cfg.label_key]), dtype=torch.long))
            buf["tasks"].append(task)
            self.obs, reward, terminated, truncated, self.info = self.envs.step(action.numpy())
            reward = self._training_reward(reward)
            done = np.asarray(terminated | truncated)
            carry = self._after_step(carry, action, torch.as_tensor(reward, dtype=torch.float32))
            buf["rewards"].append(torch.as_tensor(reward, dtype=torch.float32))
            buf["dones"].append(torch.as_tensor(done, dtype=torch.float32))
            self.starts = self._memory_starts(done)
            if done.any():
                self.recent_returns.extend(np.asarray(self.info["episode_return"])[done].tolist())
                self.recent_success.extend(np.asarray(self.info["success"])[done].astype(float).tolist())
        self.carry = carry
        self.global_step += steps * b
        stacked = {k: torch.stack(v) for k, v in buf.items()}
        return Rollout(**stacked, carry0=carry0)

    @torch.no_grad()
    def bootstrap_value(self) -> torch.Tensor:
        """The critic's value of the observation after the rollout (the carried memory is not advanced)."""
        _, mask, _, x, _ = self._step_inputs(self.carry)
        return self.model(x, mask)[1]

    def advantages(self, r: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(lambda) advantages and returns."""
        adv = gae(r.rewards, r.values, r.dones, self.bootstrap_value(), self.cfg.gamma, self.cfg.gae_lambda)
        return adv, adv + r.values

    # -- one update ----------------------------------------------------------------------------
    def learn(self, r: Rollout) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = self.advantages(r)
        cols = cfg.num_envs // cfg.minibatches
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(cfg.num_envs)
            for i in range(cfg.minibatches):
                c = perm[i * cols : (i + 1) * cols]
                x, kl, aux = self._sequence_inputs(r, c)
                logits, value = self.model(x, r.masks[:, c])
                dist = torch.distributions.Categorical(logits=logits)
                logp = dist.log_prob(r.actions[:, c])
                ratio = torch.exp(logp - r.logprobs[:, c])
                a = adv[:, c]
                a = (a - a.mean()) / (a.std() + 1e-8)
                pg_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                v_loss = 0.5 * (value - ret[:, c]).pow(2).mean()
                entropy = dist.entropy().mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy + cfg.kl_beta * kl + cfg.aux_coef * aux
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                for k, v in (
                    ("policy", pg_loss),
                    ("value", v_loss),
                    ("entropy", entropy),
                    ("kl", kl),
                    ("aux_segment", aux),
                ):
                    stats.setdefault(k, []).append(float(v.detach()))
                stats.setdefault("approx_kl", []).append(float(((ratio - 1) - torch.log(ratio)).mean().detach()))
        return {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}

    # -- evaluation -----------------------------------------------------------------------------
    def agent(self) -> Agent:
        return Agent(self.model)

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """Greedy policy on fresh dialogues of the training mix."""
        rec = play(
            self.agent(),
            self.cfg.env_id,
            self.cfg.env_kwargs,
            episodes or self.cfg.eval_episodes,
            seed=10_000 + self.update,
            label_key=self.cfg.label_key,
            task_key=self.cfg.task_key,
        )
        return {"eval/mean_return": float(rec.returns.mean()), "eval/success_rate": float(rec.success.mean())}

    # -- the loop ------------------------------------------------------------------------------
    def iteration(self) -> dict[str, float]:
        """One rollout and one PPO update; returns the losses (MAML: one meta-update)."""
        return self.learn(self.collect())

    def _fraction_done(self) -> float:
        return self.update / self.n_updates

    def train(self, progress: ProgressFn | None = None, stop_after: int | None = None) -> None:
        """Run (or continue) training; ``stop_after`` ends early after that many updates (tests)."""
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.run_dir / "tb"))
        done_here = 0
        try:
            while self._fraction_done() < 1.0:
                t0 = time.perf_counter()
                step0 = self.global_step
                if self.cfg.anneal_lr:
                    frac = 1.0 - self._fraction_done()
                    self.optimizer.param_groups[0]["lr"] = frac * self.cfg.learning_rate
                scalars = self.iteration()
                self.update += 1
                done_here += 1
                self.wall_time += time.perf_counter() - t0
                scalars["charts/steps_per_s"] = (self.global_step - step0) / max(time.perf_counter() - t0, 1e-9)
                if self.recent_returns:
                    scalars["charts/episode_return"] = float(np.mean(self.recent_returns))
                    scalars["charts/success_rate"] = float(np.mean(self.recent_success))
                    self.recent_returns, self.recent_success = [], []
                last = self._fraction_done() >= 1.0
                if self.update % self.cfg.eval_every == 0 or last:
                    t1 = time.perf_counter()
                    scalars.update(self.evaluate())
                    self.wall_time += time.perf_counter() - t1
                    if self.cfg.keep_best:
                        self._remember_if_best(scalars["eval/mean_return"])
                    self.history.append({"step": self.global_step, "wall_time": self.wall_time, **scalars})
                for k, v in scalars.items():
                    writer.add_scalar(k, v, self.global_step)
                if self.update % self.cfg.checkpoint_every == 0 or last:
                    self.save_state()
                if progress is not None:
                    progress(self.global_step, scalars)
                if stop_after is not None and done_here >= stop_after:
                    break
        finally:
            writer.close()

    def _remember_if_best(self, mean_return: float) -> None:
        if self.best is None or mean_return > self.best["eval/mean_return"]:
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = {"step": self.global_step, "eval/mean_return": mean_return, "model": weights}

    # -- the result -----------------------------------------------------------------------------
    def make_card(self, extra_training: dict[str, Any] | None = None) -> Card:
        return Card(
            network=self.spec,
            env_id=self.cfg.env_id,
            env_kwargs=self.cfg.env_kwargs,
            observation_shape=[self.obs_dim],
            n_actions=self.n_actions,
            segments=self.segment_names,
            config=asdict(self.cfg),
            training={
                "steps": self.global_step,
                "updates": self.update,
                "wall_time_s": round(self.wall_time, 1),
                "history": self.history,
                **({"selected": {k: v for k, v in self.best.items() if k != "model"}} if self.best else {}),
                **(extra_training or {}),
            },
        )

    def export(self, path: str | Path, prototype_episodes: int = 3000, max_turns_id: int = 8) -> Card:
        """Compute the segment prototypes and write the checkpoint folder ``path`` (with ``keep_best``,
        of the best evaluation's weights)."""
        if self.best is not None:  # kept only with keep_best
            self.model.load_state_dict(self.best["model"])
        card = self.make_card()
        if self.spec.variant in ("contextual", "rl2"):  # a belief, or RL^2's GRU state
            fit_prototypes(Agent(self.model), card, prototype_episodes, max_turns_id, seed=self.cfg.seed + 7)
        save_checkpoint(path, self.model, card)
        (Path(path) / "history.json").write_text(json.dumps(self.history, indent=1) + "\n")
        return card


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """GAE(lambda) advantages of ``(T, B)`` steps; ``next_value`` is the value after the last step."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    steps = rewards.shape[0]
    for t in reversed(range(steps)):
        nv = next_value if t == steps - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * nv * live - values[t]
        last = delta + gamma * lam * live * last
        adv[t] = last
    return adv


def fit_prototypes(agent: Agent, card: Card, episodes: int, max_turns: int, seed: int) -> None:
    """Prototypes (mean posterior mean per segment after k turns) and a temperature per k.

    The temperature of each turn count is the one (on a log grid) that maximises the likelihood
    of the true segments on the same dialogues, so that the read-out's probabilities are
    calibrated rather than over-confident.
    """
    cfg = card.config
    rec = play(
        agent,
        card.env_id,
        card.env_kwargs,
        episodes,
        seed=seed,
        label_key=cfg["label_key"],
        task_key=cfg["task_key"],
        max_turns_id=max_turns,
    )
    n_seg = len(card.segments)
    protos, temps = [], []
    grid = np.exp(np.linspace(math.log(1e-3), math.log(100.0), 60))
    for k in range(max_turns):
        post = rec.posteriors[:, k, :]
        p = np.stack([post[rec.labels == s].mean(0) for s in range(n_seg)])
        d2 = ((post[:, None, :] - p[None]) ** 2).sum(-1)
        nll = []
        for tau in grid:
            logits = -d2 / tau
            logits -= logits.max(1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            nll.append(-logp[np.arange(len(post)), rec.labels].mean())
        protos.append(p.tolist())
        temps.append(float(grid[int(np.argmin(nll))]))
    card.prototypes = protos
    card.prototype_temperature = temps
    agent.set_prototypes(card)
