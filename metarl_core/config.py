"""The learners' configurations: pydantic models that a TOML table and a checkpoint card are validated by.

Each learner has its own model: ``PPOConfig`` (``learner = "ppo"``), ``SACConfig`` (``"sac"``),
``RL2Config`` (``"rl2"``) and ``MAMLConfig`` (``"fomaml"``). What every learner has (the
environment, the budget, the networks, evaluation and checkpoints) is ``LearnerConfig``'s; what
PPO's update needs is ``PPOUpdateConfig``'s, which RL^2 (PPO on a recurrent policy) and FO-MAML
(a PPO outer loop) share and SAC does not have. Every model refuses keys it does not know and
values of the wrong type (strict: ``num_envs = "512"`` is an error, not 512), and checks ranges
(``Field(gt=0)``) and choices (``Literal``). ``ConfigError`` says what is wrong in one line that
names the key, the value and what is allowed.

The models live here, apart from the algorithms, so that loading a checkpoint
(``metarl_core.checkpoint``, which the service uses) validates the card's config without importing
training code. ``TrainFile`` is the file ``segdial train`` reads.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

LearnerName = Literal["ppo", "sac", "rl2", "fomaml"]
Variant = Literal["contextual", "agnostic", "oracle"]
"""The policies PPO and SAC train: with the belief, without a latent, or given the true task."""


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line naming the key, value and what is allowed."""


def describe(error: ValidationError, known: Any = ()) -> str:
    """One line for all of a validation's errors: ``key = value: what is allowed`` (``known``: the
    keys to list when one is unknown)."""
    parts, unknown = [], []
    for err in error.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if p != "[key]")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc, list(known), n=1)
            unknown.append(f"{loc} (did you mean {close[0]}?)" if close else loc)
        elif loc:
            parts.append(f"{loc} = {json.dumps(err['input'], default=str)}: {err['msg']}")
        else:  # a check across fields (a model validator): its message says it all
            parts.append(str(err["msg"]).removeprefix("Value error, "))
    if unknown:
        listed = f"; known keys: {', '.join(sorted(known))}" if known else ""
        parts.insert(0, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}{listed}")
    return "; ".join(parts)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables, or a ConfigError that names the file and the line."""
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from e


class ConfigModel(BaseModel):
    """A config read from a file: unknown keys and values of the wrong type are errors, assignments are checked."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True, use_attribute_docstrings=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The config of a TOML table (or a card's ``config``); ConfigError says what is wrong in one line."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(describe(e, cls.model_fields)) from None


class LearnerConfig(ConfigModel):
    """What every learner's config has. Each learner's own model narrows ``variant`` to the policies it trains."""

    LEARNER: ClassVar[LearnerName]
    """The learner's name in config files and checkpoint cards."""
    SHAPED_REWARD: ClassVar[str] = ""
    """Empty if the learner can train on a shaped reward (``success_bonus``), else why it cannot."""

    env_id: str = "simulators:simulators/SegmentDialogue-v0"
    """Gymnasium id; ``module:id`` imports the module that registers it."""
    env_kwargs: dict[str, Any] = Field(default_factory=lambda: {"domain": "restaurant"})
    """Keyword arguments of the environment (domain, segments, max_turns)."""
    variant: str
    """The policy trained (each learner's model lists its variants)."""
    total_steps: int = Field(10_000_000, gt=0)
    """Environment steps (dialogue turns) to train for."""
    num_envs: int = Field(512, gt=0)
    """Dialogues stepped in parallel."""
    rollout_steps: int = Field(32, gt=0)
    """Steps per environment per update."""
    learning_rate: float = Field(1e-3, gt=0)
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0."""
    gamma: float = Field(0.99, ge=0, le=1)
    """Discount of the learner's returns. Evaluation counts the return undiscounted; for short
    episodes (a conversation: at most ``max_turns``) 1.0 trains for exactly that, as the default
    config does."""
    kl_beta: float = Field(0.01, ge=0)
    """Weight of KL(q(z|c) || N(0, I))."""
    aux_coef: float = Field(0.5, ge=0)
    """Weight of the auxiliary segment-classification loss (training only; 0 turns it off)."""
    latent_dim: int = Field(4, gt=0)
    hidden: int = Field(128, gt=0)
    seed: int = Field(0, ge=0)
    eval_every: int = Field(25, gt=0)
    """Updates between evaluations (greedy policy, ``eval_episodes`` dialogues)."""
    eval_episodes: int = Field(1500, gt=0)
    checkpoint_every: int = Field(25, gt=0)
    """Updates between resumable checkpoints of the run."""
    keep_best: bool = False
    """Export the weights of the best periodic evaluation (``eval/mean_return``) instead of the last
    ones: model selection on the trainer's own evaluation dialogues, which ``segdial evaluate`` does
    not reuse (other seeds)."""
    label_key: str = Field("segment_index", min_length=1)
    """``info`` key of the task label (auxiliary loss, prototypes)."""
    label_names_key: str = Field("segment", min_length=1)
    task_key: str = Field("user_params", min_length=1)
    """``info`` key of the true task parameters (oracle variant)."""
    threads: int = Field(2, gt=0)
    conversations_per_user: int = Field(1, gt=0)
    """Conversations of one user in training, the policy's memory (belief, or RL^2's state) carried
    across them (1: a new user, and a fresh memory, for every conversation)."""
    returning_user_kwarg: str = "conversations_per_user"
    """Environment keyword that makes users return for ``conversations_per_user`` conversations."""
    conversation_index_key: str = "conversation_index"
    """``info`` key of a conversation's index within its user (0: a new user)."""
    success_bonus: float = Field(0.0, ge=0)
    """Added to the reward of the turn that ends a conversation in success (``info[success_key]``),
    in training only: evaluation, ``charts/episode_return`` and ``keep_best`` use the environment's
    own reward. A way to trade return for success rate (README, the default checkpoint)."""
    success_key: str = "success"

    @property
    def carried(self) -> bool:
        """Whether the memory is carried across a returning user's conversations in training."""
        return self.conversations_per_user > 1

    @model_validator(mode="after")
    def _reward_fits_the_learner(self) -> Self:
        if self.success_bonus and self.SHAPED_REWARD:
            raise ValueError(f"success_bonus is not supported by {self.LEARNER}: {self.SHAPED_REWARD}")
        return self


class PPOUpdateConfig(LearnerConfig):
    """PPO's update (clipped surrogate, GAE(lambda), epochs of minibatches): PPO's, RL^2's and FO-MAML's outer loop."""

    SPLIT: ClassVar[tuple[str, ...]] = ("num_envs",)
    """Fields that minibatches split (each must be a multiple of ``minibatches``)."""

    gae_lambda: float = Field(0.95, ge=0, le=1)
    clip_coef: float = Field(0.2, gt=0)
    update_epochs: int = Field(4, gt=0)
    minibatches: int = Field(4, gt=0)
    ent_coef: float = Field(0.01, ge=0)
    vf_coef: float = Field(0.5, ge=0)
    max_grad_norm: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _minibatches_split(self) -> Self:
        for name in self.SPLIT:
            if getattr(self, name) % self.minibatches:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be a multiple of minibatches ({self.minibatches})"
                )
        return self


class PPOConfig(PPOUpdateConfig):
    """PPO (``metarl_core.ppo``): the learner of the shipped policy."""

    LEARNER: ClassVar[LearnerName] = "ppo"

    variant: Variant = "contextual"
    """contextual (belief), agnostic (no latent) or oracle (true user parameters)."""


class RL2Config(PPOUpdateConfig):
    """RL^2 (``metarl_core.rl2``): PPO on a recurrent policy (same learner and budget fields)."""

    LEARNER: ClassVar[LearnerName] = "rl2"
    SHAPED_REWARD: ClassVar[str] = "RL^2 reads the reward as an input, which would differ in use"

    variant: Literal["rl2"] = "rl2"
    memory_dim: int = Field(128, gt=0)
    """Size of the GRU state."""
    aux_coef: float = Field(0.0, ge=0)
    """Unused: RL^2 has no auxiliary segment loss (it would be an oracle signal it was not given)."""


class MAMLConfig(PPOUpdateConfig):
    """First-order MAML (``metarl_core.maml``; ``num_envs``/``rollout_steps`` are not used)."""

    LEARNER: ClassVar[LearnerName] = "fomaml"
    SPLIT: ClassVar[tuple[str, ...]] = ("num_envs", "meta_batch")
    SHAPED_REWARD: ClassVar[str] = "FO-MAML collects its own task rollouts (and adapts on the true reward in use)"

    variant: Literal["agnostic"] = "agnostic"
    """The meta-learned policy sees the observation only."""
    aux_coef: float = Field(0.0, ge=0)
    num_envs: int = Field(8, gt=0)
    """Dialogues of the environment the learner reads the spaces from (not used for training)."""
    meta_batch: int = Field(24, gt=0)
    """Task instances per meta-update (a multiple of the number of tasks and of ``minibatches``)."""
    inner_conversations: int = Field(10, gt=0)
    """Conversations the inner loop adapts on during meta-training."""
    outer_conversations: int = Field(20, gt=0)
    """Conversations of the adapted policy per instance for the outer loss."""
    inner_lr: float = Field(0.1, gt=0)
    """Step size of the inner policy-gradient steps (plain SGD)."""
    inner_steps: int = Field(1, gt=0)
    task_kwarg: str = "segments"
    """Environment keyword that restricts it to one task: ``{task_kwarg: [task name]}``."""


class SACConfig(LearnerConfig):
    """Discrete soft actor-critic (``metarl_core.sac``): no PPO fields, a replay buffer's instead."""

    LEARNER: ClassVar[LearnerName] = "sac"

    variant: Variant = "contextual"
    """contextual (belief), agnostic (no latent) or oracle (true user parameters)."""
    num_envs: int = Field(16, gt=0)
    rollout_steps: int = Field(8, gt=0)
    learning_rate: float = Field(3e-4, gt=0)
    """Step size of the actor, the critics (with the encoder) and the temperature."""
    anneal_lr: Literal[False] = False
    """SAC's step sizes stay constant."""
    gradient_steps: int = Field(8, gt=0)
    """Gradient steps per iteration (``num_envs * rollout_steps`` turns collected)."""
    batch_conversations: int = Field(64, gt=0)
    """Conversations drawn from the buffer per gradient step."""
    buffer_conversations: int = Field(20_000, gt=0)
    """Capacity of the replay buffer, in conversations (the oldest are overwritten)."""
    learning_starts: int = Field(2_000, ge=0)
    """Turns collected with uniformly random valid acts before the first gradient step."""
    max_conversation_turns: int = Field(20, gt=0)
    """Longest conversation the buffer can hold (the environment's turn limit)."""
    tau: float = Field(0.005, gt=0, le=1)
    """Polyak step of the target critics."""
    target_entropy_ratio: float = Field(0.3, ge=0, lt=1)
    """Target entropy as a fraction of the uniform policy's (log of the number of valid acts)."""
    initial_alpha: float = Field(0.1, gt=0)
    """Entropy temperature at the start (then tuned)."""
    eval_every: int = Field(80, gt=0)
    checkpoint_every: int = Field(400, gt=0)

    @model_validator(mode="after")
    def _buffer_holds_a_user(self) -> Self:
        if self.buffer_conversations < self.conversations_per_user:
            raise ValueError(
                f"buffer_conversations ({self.buffer_conversations}) must hold at least one user's "
                f"conversations_per_user ({self.conversations_per_user})"
            )
        return self


CONFIGS: dict[str, type[LearnerConfig]] = {c.LEARNER: c for c in (PPOConfig, SACConfig, RL2Config, MAMLConfig)}
"""Each learner's config model by name (``metarl_core.learners`` has their trainers)."""
PPO_ONLY = sorted(set(PPOUpdateConfig.model_fields) - set(LearnerConfig.model_fields))


def card_learner(config: dict[str, Any]) -> LearnerName:
    """The learner of a card written before cards named it (every learner's config has its own keys)."""
    if config.get("variant") == "rl2":
        return "rl2"
    if "meta_batch" in config:
        return "fomaml"
    return "sac" if "gradient_steps" in config else "ppo"


def card_config(config: dict[str, Any], learner: str | None) -> LearnerConfig:
    """The training config of a checkpoint card, validated by its learner's model (ConfigError if it does not fit).

    A card without ``learner`` is from before cards named it: SAC's config then carried PPO's fields
    too, which are dropped."""
    if learner is None:
        learner = card_learner(config)
        if learner == "sac":
            config = {k: v for k, v in config.items() if k not in PPO_ONLY}
    if learner not in CONFIGS:
        raise ConfigError(f"learner = {json.dumps(learner)}: must be one of {', '.join(CONFIGS)}")
    return CONFIGS[learner].from_dict(config)


class TrainFile(ConfigModel):
    """A ``segdial train`` config file: ``learner``, ``comparators`` and the ``[train]`` table."""

    learner: Literal["ppo", "sac"] = "ppo"
    """The learner of the policy and its comparators (RL^2 and FO-MAML are trained by ``segdial compare``)."""
    comparators: list[Variant] = Field(default_factory=list)
    """Variants trained beside the policy, with the same learner and budget."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Fields of the learner's config."""

    @classmethod
    def read(cls, path: Path) -> TrainFile:
        """The file at ``path``; ConfigError says what is wrong in one line (without the file's name)."""
        return cls.from_dict(read_toml(path))

    def configs(self, total_steps: int | None = None) -> list[LearnerConfig]:
        """The policy's config, then each comparator's (``total_steps`` overrides the file's)."""
        model = CONFIGS[self.learner]
        base = {**self.train, **({} if total_steps is None else {"total_steps": total_steps})}
        try:
            cfg = model.from_dict(base)
        except ConfigError as e:
            raise ConfigError(f"[train] {e}") from None
        return [cfg, *(model.from_dict({**base, "variant": v}) for v in self.comparators)]
