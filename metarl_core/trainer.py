"""The core of every learner: the training loop, resume, evaluation, export and segment prototypes.

``Trainer`` trains one policy (``metarl_core.networks.ActorCritic``) on a vectorised Gymnasium
environment; a learner subclasses it with its ``iteration`` (one update) and its config model
(``metarl_core.config``): PPO (``metarl_core.ppo``), which RL^2 (``metarl_core.rl2``) reuses,
first-order MAML (``metarl_core.maml``) and discrete SAC (``metarl_core.sac``). What is shared:

- the loop (``train``): learning-rate annealing, periodic greedy evaluation, the best weights with
  ``keep_best``, TensorBoard scalars namespaced as CleanRL's (``losses/*``, ``charts/*``,
  ``eval/*``), and resumable checkpoints of the run (``save_state``/``try_resume``; a learner with
  more to resume adds it through ``_extra_state``);
- what the policy carries from step to step (the belief's natural parameters here), through a few
  hooks (``_initial_carry``, ``_step_inputs``, ``_after_step``) that RL^2 replaces with its
  recurrent state;
- returning users (``conversations_per_user = K > 1``, for any variant with a memory): the training
  environment keeps each user for K consecutive conversations and the memory is restarted only
  where a new user starts (``_memory_starts``), so the belief is also trained on what few-shot asks
  of it: a posterior that already holds a user's earlier conversations (PEARL's context across
  episodes). Returns still end with every conversation;
- the result: a checkpoint card (``make_card``, naming the learner) and, for policies with a
  read-out, the segment prototypes and their calibrated temperatures (``fit_prototypes``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from metarl_core.belief import belief_step, posterior
from metarl_core.checkpoint import Card, save_checkpoint
from metarl_core.config import LearnerConfig
from metarl_core.evaluation import make_vec, play
from metarl_core.inference import Agent
from metarl_core.networks import ActorCritic, NetworkSpec

ProgressFn = Callable[[int, dict[str, float]], None]


class Trainer:
    """Trains one policy; ``run_dir`` holds TensorBoard logs, the resumable state and the result.

    A learner sets ``CONFIG`` (its config model) and implements ``iteration``."""

    CONFIG: ClassVar[type[LearnerConfig]]

    def __init__(self, cfg: LearnerConfig, run_dir: str | Path) -> None:
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
            "config": self.cfg.model_dump(),
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
        if state["config"] != self.cfg.model_dump():
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
    # -- the loop ------------------------------------------------------------------------------
    def iteration(self) -> dict[str, float]:
        """One update of the learner; returns its losses (``losses/*``)."""
        raise NotImplementedError

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
            learner=self.cfg.LEARNER,
            env_id=self.cfg.env_id,
            env_kwargs=self.cfg.env_kwargs,
            observation_shape=[self.obs_dim],
            n_actions=self.n_actions,
            segments=self.segment_names,
            config=self.cfg.model_dump(),
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
