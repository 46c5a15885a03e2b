"""The one registry of learners: each learner's name, its trainer and (through the trainer) its config model.

``segdial train`` and the method comparison (``metarl_core.compare``) both pick trainers here; the
names are those of ``metarl_core.config.CONFIGS`` and of a checkpoint card's ``learner``.
"""

from __future__ import annotations

from metarl_core.config import LearnerConfig
from metarl_core.maml import MAMLTrainer
from metarl_core.ppo import PPOTrainer
from metarl_core.rl2 import RL2Trainer
from metarl_core.sac import SACTrainer
from metarl_core.trainer import Trainer

TRAINERS: dict[str, type[Trainer]] = {t.CONFIG.LEARNER: t for t in (PPOTrainer, SACTrainer, RL2Trainer, MAMLTrainer)}


def trainer_for(cfg: LearnerConfig) -> type[Trainer]:
    """The trainer of a learner's config."""
    return TRAINERS[cfg.LEARNER]
