"""The learners' config models (``metarl_core.config``): the shipped configs parse; unknown keys, values of
the wrong type, out-of-range values and unknown choices raise ConfigError with one line that names
the key, the value and what is allowed; each learner has only its own fields; checkpoint cards are
validated by the same models.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from metarl_core.config import (
    CONFIGS,
    PPO_ONLY,
    ConfigError,
    LearnerConfig,
    MAMLConfig,
    PPOConfig,
    RL2Config,
    SACConfig,
    TrainFile,
    card_config,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = ROOT / "configs"


def test_empty_dict_gives_the_defaults() -> None:
    assert PPOConfig.from_dict({}) == PPOConfig()


@pytest.mark.parametrize("name", ["default", "hotel", "tiny"])
def test_shipped_configs_parse(name: str) -> None:
    raw = tomllib.loads((CONFIGS_DIR / f"{name}.toml").read_text())
    file = TrainFile.read(CONFIGS_DIR / f"{name}.toml")
    cfg, *comparators = file.configs()
    assert isinstance(cfg, PPOConfig)
    for key, value in raw["train"].items():
        assert getattr(cfg, key) == value, key
    assert [c.variant for c in comparators] == raw.get("comparators", [])


def test_tiny_config_values() -> None:
    [cfg] = TrainFile.read(CONFIGS_DIR / "tiny.toml").configs()
    assert (cfg.num_envs, cfg.rollout_steps, cfg.hidden, cfg.latent_dim) == (128, 16, 32, 2)
    assert cfg.env_kwargs == {"domain": "restaurant", "segments": ["power", "core", "casual"], "max_turns": 20}
    assert cfg.model_dump()["learning_rate"] == pytest.approx(3e-3)


def test_unknown_keys_are_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as e:
        PPOConfig.from_dict({"totl_steps": 10, "learning_rat": 0.1, "seed": 1})
    message = str(e.value)
    assert message.startswith("unknown keys totl_steps (did you mean total_steps?), learning_rat (did you mean")
    assert "known keys: anneal_lr, " in message and "\n" not in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_envs": "512"}, 'num_envs = "512": Input should be a valid integer'),
        ({"learning_rate": "fast"}, 'learning_rate = "fast": Input should be a valid number'),
        ({"total_steps": True}, "total_steps = true: Input should be a valid integer"),
        ({"variant": "pearl"}, "variant = \"pearl\": Input should be 'contextual', 'agnostic' or 'oracle'"),
        ({"variant": ""}, 'variant = "": Input should be'),
        ({"total_steps": 0}, "total_steps = 0: Input should be greater than 0"),
        ({"num_envs": -4}, "num_envs = -4: Input should be greater than 0"),
        ({"rollout_steps": 0}, "rollout_steps = 0: Input should be greater than 0"),
        ({"update_epochs": 0}, "update_epochs = 0"),
        ({"minibatches": 0}, "minibatches = 0"),
        ({"latent_dim": 0}, "latent_dim = 0"),
        ({"hidden": -1}, "hidden = -1"),
        ({"learning_rate": -0.1}, "learning_rate = -0.1: Input should be greater than 0"),
        ({"gamma": 1.5}, "gamma = 1.5: Input should be less than or equal to 1"),
        ({"seed": -1}, "seed = -1: Input should be greater than or equal to 0"),
        ({"env_kwargs": 3}, "env_kwargs = 3: Input should be a valid dictionary"),
        ({"num_envs": 100, "minibatches": 8}, r"num_envs (100) must be a multiple of minibatches (8)"),
        ({"num_envs": 4, "minibatches": 8}, "must be a multiple of minibatches"),
        ({"num_envs": "512", "learning_rate": "fast"}, 'num_envs = "512": Input should be a valid integer; learning'),
    ],
)
def test_bad_values_are_one_line_naming_key_value_and_what_is_allowed(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        PPOConfig.from_dict(overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_good_edge_values_are_accepted() -> None:
    cfg = PPOConfig.from_dict({"num_envs": 8, "minibatches": 8, "rollout_steps": 1, "latent_dim": 1, "gamma": 1})
    assert (cfg.num_envs, cfg.minibatches, cfg.rollout_steps, cfg.latent_dim) == (8, 8, 1, 1)
    assert cfg.gamma == 1.0 and isinstance(cfg.gamma, float)  # a TOML integer where a number is asked for


@pytest.mark.parametrize("name", ["eval_every", "checkpoint_every", "eval_episodes", "threads"])
def test_non_positive_intervals_counts_and_threads_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} = 0: Input should be greater than 0"):
        PPOConfig.from_dict({name: 0})


def test_assignment_is_validated_too() -> None:
    cfg = PPOConfig()
    with pytest.raises(ValueError, match="num_envs"):
        cfg.num_envs = 0


def test_success_bonus_only_where_the_learner_can_use_it() -> None:
    assert PPOConfig.from_dict({"success_bonus": 5.0}).success_bonus == 5.0
    assert SACConfig.from_dict({"success_bonus": 5.0}).success_bonus == 5.0
    with pytest.raises(ConfigError, match="success_bonus is not supported by rl2: RL\\^2 reads the reward"):
        RL2Config.from_dict({"success_bonus": 5.0})
    with pytest.raises(ConfigError, match="success_bonus is not supported by fomaml: FO-MAML"):
        MAMLConfig.from_dict({"success_bonus": 5.0})


def test_each_learner_has_its_own_fields() -> None:
    """SAC has none of PPO's update fields; RL^2 and FO-MAML (PPO updates) have all of them."""
    assert not set(PPO_ONLY) & set(SACConfig.model_fields)
    assert set(PPO_ONLY) <= set(RL2Config.model_fields) & set(MAMLConfig.model_fields)
    assert "gae_lambda" in PPO_ONLY and "clip_coef" in PPO_ONLY
    with pytest.raises(ConfigError, match="unknown key clip_coef"):
        SACConfig.from_dict({"clip_coef": 0.2})
    with pytest.raises(ConfigError, match="unknown key gradient_steps"):
        PPOConfig.from_dict({"gradient_steps": 4})
    assert {name: c.LEARNER for name, c in CONFIGS.items()} == {n: n for n in ("ppo", "sac", "rl2", "fomaml")}
    assert all(issubclass(c, LearnerConfig) for c in CONFIGS.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('learner = "dqn"', "learner = \"dqn\": Input should be 'ppo' or 'sac'"),
        ("comparator = []", "unknown key comparator (did you mean comparators?)"),
        ('comparators = ["pearl"]', "comparators.0 = \"pearl\": Input should be 'contextual'"),
        ('[train]\nnum_envs = "512"', '[train] num_envs = "512": Input should be a valid integer'),
        ("[train]\nnum_envs = ", "not valid TOML"),
    ],
)
def test_a_bad_train_file_is_one_line(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        TrainFile.read(path).configs()
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("card", sorted((ROOT / "models").rglob("card.json")), ids=lambda p: str(p.parent))
def test_shipped_cards_validate(card: Path) -> None:
    data = json.loads(card.read_text())
    assert isinstance(card_config(data["config"], data.get("learner")), PPOConfig)


def test_cards_from_before_they_named_the_learner() -> None:
    """A SAC card's config then carried PPO's fields too: they are dropped; RL^2 and FO-MAML are told by their keys."""
    old_sac = {**PPOConfig().model_dump(), "gradient_steps": 2, "anneal_lr": False}
    assert isinstance(card_config(old_sac, None), SACConfig)
    assert isinstance(card_config(RL2Config().model_dump(), None), RL2Config)
    assert isinstance(card_config(MAMLConfig().model_dump(), None), MAMLConfig)
    with pytest.raises(ConfigError, match="unknown keys gae_lambda, clip_coef"):
        card_config(old_sac, "sac")
    with pytest.raises(ConfigError, match='learner = "dqn": must be one of ppo, sac, rl2, fomaml'):
        card_config({}, "dqn")
