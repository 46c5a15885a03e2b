"""``segdial train``: a config trains its policy and comparators with the learner it names (PPO by
default, ``learner = "sac"`` for the off-policy learner) and writes loadable checkpoints; a rerun
resumes the finished run instead of starting again; bad configs are one-line errors (exit 2).

Each run is a few iterations of ``configs/tiny.toml``'s networks: seconds, not a training.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from metarl_core.inference import Agent

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
Runner = Callable[..., tuple[int, str, str]]


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tiny(extra_top: str = "", extra_train: str = "") -> str:
    """configs/tiny.toml with lines added at the top level and in [train] (a [train] key it has is replaced)."""
    text = (CONFIGS / "tiny.toml").read_text()
    lines = text.splitlines()
    for line in extra_train.splitlines():
        key = line.split("=")[0].strip()
        lines = [old for old in lines if old.split("=")[0].strip() != key]
    text = "\n".join(lines) + "\n"
    return text.replace("comparators = []", f"comparators = []\n{extra_top}").replace(
        "[train]\n", f"[train]\n{extra_train}\n", 1
    )


def one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def test_trains_with_ppo_and_a_rerun_resumes(segdial: Runner, tmp_path: Path) -> None:
    config = write_config(tmp_path / "t.toml", tiny().replace("comparators = []", 'comparators = ["agnostic"]'))
    args = ("train", "--config", str(config), "--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r"))
    code, out, err = segdial(*args, "--steps", "4096")
    assert code == 0, err
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["network"]["variant"] == "contextual" and card["training"]["steps"] == 4096
    assert "gradient_steps" not in card["config"]  # PPO's config
    assert Agent.load(tmp_path / "m" / "comparators" / "agnostic").spec.variant == "agnostic"
    assert "contextual" in out and "agnostic" in out
    code, out, err = segdial(*args, "--steps", "4096")
    assert code == 0, err
    assert "resuming contextual" in out and "at step 4,096" in out


def test_learner_sac(segdial: Runner, tmp_path: Path) -> None:
    sac = "num_envs = 16\nrollout_steps = 8\nlearning_starts = 256\nbatch_conversations = 8\ngradient_steps = 2"
    text = tiny('learner = "sac"', sac)
    ppo_batch = ("num_envs = 128", "rollout_steps = 16")
    text = "\n".join(line for line in text.splitlines() if not line.startswith(ppo_batch))
    config = write_config(tmp_path / "s.toml", text)
    out, run = str(tmp_path / "m"), str(tmp_path / "r")
    code, _, err = segdial("train", "--config", str(config), "--out", out, "--run-dir", run, "--steps", "1024")
    assert code == 0, err
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["config"]["gradient_steps"] == 2 and card["training"]["steps"] == 1024
    assert any("losses/q" in h for h in card["training"]["history"]), "no soft Q-learning step was taken"
    assert Agent.load(tmp_path / "m").spec.variant == "contextual"


@pytest.mark.parametrize(
    ("top", "train", "fragments"),
    [
        ('learner = "dqn"', "", ["bad.toml: learner = \"dqn\": Input should be 'ppo' or 'sac'"]),
        ("comparator = []", "", ["bad.toml: unknown key comparator (did you mean comparators?); known keys:"]),
        ('learner = "sac"', "anneal_lr = true", ["[train] anneal_lr = true: Input should be False"]),
        ("", "gradient_steps = 4", ["[train] unknown key gradient_steps; known keys: anneal_lr"]),  # a SAC field
        ("", 'num_envs = "512"', ['[train] num_envs = "512": Input should be a valid integer']),
        ("", 'learning_rate = "fast"', ['[train] learning_rate = "fast": Input should be a valid number']),
        ("", "eval_episodes = -5", ["[train] eval_episodes = -5: Input should be greater than 0"]),
        ("", 'variant = "pearl"', ["[train] variant = \"pearl\": Input should be 'contextual', 'agnostic' or"]),
        ("", "seed = ", ["bad.toml: not valid TOML: "]),
    ],
)
def test_bad_configs_are_one_line_errors(
    segdial: Runner, tmp_path: Path, top: str, train: str, fragments: list[str]
) -> None:
    config = write_config(tmp_path / "bad.toml", tiny(top, train))
    code, _, err = segdial("train", "--config", str(config), "--out", str(tmp_path / "m"))
    line = one_line_error(code, err)
    assert all(f in line for f in fragments), line
    assert not (tmp_path / "m").exists()


def test_a_run_folder_of_another_config_is_a_one_line_error(segdial: Runner, tmp_path: Path) -> None:
    run = ("--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r"), "--steps", "2048")
    code, _, err = segdial("train", "--config", str(write_config(tmp_path / "a.toml", tiny())), *run)
    assert code == 0, err
    other = write_config(tmp_path / "b.toml", tiny(extra_train="seed = 5"))
    assert tomllib.loads(other.read_text())["train"]["seed"] == 5
    code, _, err = segdial("train", "--config", str(other), *run)
    assert "holds a run with another configuration" in one_line_error(code, err)


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ('"casual"]', '"casual", "expert"]', ['env_kwargs = {"domain"', "unknown segment 'expert'", "known segments:"]),
        ('domain = "restaurant"', 'domain = "mars"', ["unknown domain 'mars'", "restaurant"]),
        ("max_turns = 20", "max_turns = 1", ["max_turns must be an integer >= 2, got 1"]),
        ("max_turns = 20", "max_turn = 20", ["[train] env_kwargs = ", "unexpected keyword argument 'max_turn'"]),
    ],
)
def test_an_environment_that_cannot_be_made_is_a_one_line_error(
    segdial: Runner, tmp_path: Path, old: str, new: str, fragments: list[str]
) -> None:
    config = write_config(tmp_path / "env.toml", tiny().replace(old, new))
    code, _, err = segdial("train", "--config", str(config), "--out", str(tmp_path / "m"))
    line = one_line_error(code, err)
    assert line.startswith(f"error: {config}: [train] env_kwargs = "), line
    assert all(f in line for f in fragments), line
    assert not (tmp_path / "m").exists()
