"""``TrainConfig.from_dict``: the shipped configs parse, unknown keys and bad values raise ValueError.

Values that ``from_dict`` lets through but that make ``Trainer.train`` crash after its first
rollout (a zero evaluation or checkpoint interval, zero evaluation episodes, zero threads) are
marked as known bugs.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from metarl_core.maml import MAMLConfig
from metarl_core.ppo import TrainConfig
from metarl_core.rl2 import RL2Config
from metarl_core.sac import SACConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_empty_dict_gives_the_defaults() -> None:
    assert TrainConfig.from_dict({}) == TrainConfig()


@pytest.mark.parametrize("name", ["default", "hotel", "tiny"])
def test_shipped_configs_parse(name: str) -> None:
    raw = tomllib.loads((CONFIGS / f"{name}.toml").read_text())
    cfg = TrainConfig.from_dict(raw["train"])
    for key, value in raw["train"].items():
        assert getattr(cfg, key) == value, key
    assert set(raw) <= {"train", "comparators"}
    for variant in raw.get("comparators", []):
        assert TrainConfig.from_dict({**raw["train"], "variant": variant}).variant == variant


def test_tiny_config_values() -> None:
    cfg = TrainConfig.from_dict(tomllib.loads((CONFIGS / "tiny.toml").read_text())["train"])
    assert (cfg.num_envs, cfg.rollout_steps, cfg.hidden, cfg.latent_dim) == (128, 16, 32, 2)
    assert cfg.env_kwargs == {"domain": "restaurant", "segments": ["power", "core", "casual"], "max_turns": 20}
    assert asdict(cfg)["learning_rate"] == pytest.approx(3e-3)


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown config keys: learning_rat, totl_steps; known: .*learning_rate"):
        TrainConfig.from_dict({"totl_steps": 10, "learning_rat": 0.1, "seed": 1})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variant": "pearl"}, "variant must be contextual, agnostic or oracle, got 'pearl'"),
        ({"variant": ""}, "variant must be"),
        ({"total_steps": 0}, "total_steps must be positive, got 0"),
        ({"num_envs": -4}, "num_envs must be positive, got -4"),
        ({"rollout_steps": 0}, "rollout_steps must be positive"),
        ({"update_epochs": 0}, "update_epochs must be positive"),
        ({"minibatches": 0}, "minibatches must be positive"),
        ({"latent_dim": 0}, "latent_dim must be positive"),
        ({"hidden": -1}, "hidden must be positive"),
        ({"num_envs": 100, "minibatches": 8}, r"num_envs \(100\) must be a multiple of minibatches \(8\)"),
        ({"num_envs": 4, "minibatches": 8}, r"must be a multiple of minibatches"),
    ],
)
def test_bad_values_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(overrides)


def test_good_edge_values_are_accepted() -> None:
    cfg = TrainConfig.from_dict({"num_envs": 8, "minibatches": 8, "rollout_steps": 1, "latent_dim": 1})
    assert (cfg.num_envs, cfg.minibatches, cfg.rollout_steps, cfg.latent_dim) == (8, 8, 1, 1)


@pytest.mark.parametrize("name", ["eval_every", "checkpoint_every", "eval_episodes", "threads"])
def test_non_positive_intervals_counts_and_threads_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TrainConfig.from_dict({name: 0})


def test_success_bonus_only_where_the_learner_can_use_it() -> None:
    assert TrainConfig.from_dict({"success_bonus": 5.0}).success_bonus == 5.0
    assert SACConfig.from_dict({"success_bonus": 5.0}).success_bonus == 5.0
    with pytest.raises(ValueError, match="success_bonus is not supported here: RL\\^2 reads the reward"):
        RL2Config.from_dict({"success_bonus": 5.0})
    with pytest.raises(ValueError, match="success_bonus is not supported here: FO-MAML"):
        MAMLConfig.from_dict({"success_bonus": 5.0})
