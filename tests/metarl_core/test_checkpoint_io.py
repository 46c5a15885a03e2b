"""Checkpoints: save/load round trips and the errors of bad checkpoints.

- A briefly trained policy of each variant (contextual, agnostic, oracle), exported with
  ``Trainer.export`` and loaded back, acts identically (greedy and sampled) on the same recorded
  dialogues, and the contextual one gives identical beliefs and segment probabilities.
- Missing, corrupt or mismatched checkpoints raise ``CheckpointError`` with a message that names
  the problem: missing folder or files, a card that is not JSON or has the wrong format, version
  or contents, weights that are garbage, truncated or of the wrong shape, and spaces that do not
  fit the environment.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from metarl_core.checkpoint import CARD, FORMAT, FORMAT_VERSION, WEIGHTS, CheckpointError, load_checkpoint
from metarl_core.inference import Agent
from metarl_core.trainer import fit_prototypes

VARIANTS = ("contextual", "agnostic", "oracle")


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_gives_identical_actions(
    variant: str, exported: Callable[[str], Any], dialogues: Any, replay_agent: Callable[..., Any]
) -> None:
    ex = exported(variant)
    original = Agent(ex.trainer.model, ex.card)
    loaded = Agent.load(ex.path, obs_dim=dialogues.obs.shape[-1], n_actions=dialogues.masks.shape[-1])
    assert loaded.spec == ex.trainer.spec
    assert loaded.card is not None and loaded.card.to_json() == ex.card.to_json()
    for key, tensor in ex.trainer.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], tensor), key
    for deterministic in (True, False):
        a = replay_agent(original, dialogues, deterministic=deterministic, seed=3)
        b = replay_agent(loaded, dialogues, deterministic=deterministic, seed=3)
        np.testing.assert_array_equal(a.acts, b.acts)
        np.testing.assert_array_equal(a.eta, b.eta)
        np.testing.assert_array_equal(a.precision, b.precision)
    assert len(np.unique(a.acts)) > 1


def test_round_trip_gives_identical_segment_probabilities(
    exported: Callable[[str], Any], dialogues: Any, replay_agent: Callable[..., Any]
) -> None:
    ex = exported("contextual")
    assert ex.card.segments == ["power", "core", "casual"]
    assert len(ex.card.prototypes) == len(ex.card.prototype_temperature) == 4  # max_turns_id
    original = Agent(ex.trainer.model, ex.card)
    loaded = Agent.load(ex.path)
    a = replay_agent(original, dialogues)
    b = replay_agent(loaded, dialogues)
    assert a.probs is not None and b.probs is not None
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_allclose(a.probs.sum(-1), 1.0, rtol=1e-6)  # float32 softmax
    assert np.ptp(a.probs, axis=(0, 1)).max() > 0.05, "the read-out never changes: the comparison is vacuous"
    # After a refit on the loaded agent with the same episodes and seed, the read-out is unchanged.
    fit_prototypes(loaded, loaded.card, 300, 4, seed=ex.trainer.cfg.seed + 7)  # type: ignore[arg-type]
    np.testing.assert_array_equal(replay_agent(loaded, dialogues).probs, a.probs)


def test_oracle_round_trip_keeps_the_task_normalisation(exported: Callable[[str], Any]) -> None:
    ex = exported("oracle")
    model, card = load_checkpoint(ex.path)
    assert card.network.variant == "oracle" and card.network.task_dim == 13
    low, scale = model.get_buffer("task_low"), model.get_buffer("task_scale")
    assert not torch.equal(scale, torch.ones_like(scale)), "the normalisation was never set: vacuous"
    assert torch.equal(low, ex.trainer.model.get_buffer("task_low"))
    assert torch.equal(scale, ex.trainer.model.get_buffer("task_scale"))


def test_oracle_needs_the_task(exported: Callable[[str], Any], dialogues: Any) -> None:
    agent = Agent.load(exported("oracle").path)
    with pytest.raises(ValueError, match="true user parameters"):
        agent.step(dialogues.obs[0], dialogues.masks[0], agent.initial_belief(dialogues.obs.shape[1]))


def test_export_writes_only_the_checkpoint_files(exported: Callable[[str], Any]) -> None:
    path = exported("agnostic").path
    assert sorted(p.name for p in path.iterdir()) == sorted([CARD, WEIGHTS, "history.json"])
    card = json.loads((path / CARD).read_text())
    assert card["format"] == FORMAT and card["format_version"] == FORMAT_VERSION
    assert card["training"]["updates"] == 2 and card["training"]["steps"] == 2 * 1024
    assert card["prototypes"] == [], "only the contextual policy has prototypes"


# -- bad checkpoints -------------------------------------------------------------------------------
@pytest.fixture
def checkpoint(exported: Callable[[str], Any], tmp_path: Path) -> Path:
    """A fresh copy of the exported contextual checkpoint, to damage."""
    return Path(shutil.copytree(exported("contextual").path, tmp_path / "ckpt"))


def edit_card(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    card = json.loads((folder / CARD).read_text())
    edit(card)
    (folder / CARD).write_text(json.dumps(card))


def card_obs_dim(folder: Path) -> int:
    return int(json.loads((folder / CARD).read_text())["network"]["obs_dim"])


def test_a_good_copy_loads(checkpoint: Path) -> None:
    """The baseline of the cases below: the undamaged copy loads."""
    model, card = load_checkpoint(checkpoint, obs_dim=card_obs_dim(checkpoint))
    assert card.network == model.spec


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*nowhere"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_file_is_not_a_checkpoint_folder(checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_checkpoint(checkpoint / WEIGHTS)


@pytest.mark.parametrize("name", [WEIGHTS, CARD])
def test_missing_file(checkpoint: Path, name: str) -> None:
    (checkpoint / name).unlink()
    with pytest.raises(CheckpointError, match=f"has no {name}"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format": "segdial-policy", ', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00 binary", "not valid JSON"),
        (b"[1, 2, 3]", "does not hold a JSON object"),
    ],
)
def test_card_that_is_not_a_json_object(checkpoint: Path, content: bytes, message: str) -> None:
    (checkpoint / CARD).write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(format="pickle-policy"), "card format is 'pickle-policy'"),
        (lambda c: c.pop("format"), "card format is None"),
        (lambda c: c.update(format_version=99), "format version 99 is not supported"),
        (lambda c: c.pop("format_version"), "format version None is not supported"),
        (lambda c: c.pop("network"), "incomplete or malformed.*network"),
        (lambda c: c["network"].update(variant="bogus"), "incomplete or malformed.*variant"),
        (lambda c: c["network"].update(colour="blue"), "incomplete or malformed.*colour"),
        (lambda c: c.update(env="restaurant"), "incomplete or malformed"),
        (lambda c: c.pop("n_actions"), "incomplete or malformed.*n_actions"),
        (lambda c: c.update(observation_shape=[7]), "spaces do not agree"),
        (lambda c: c.update(n_actions=3), "spaces do not agree"),
        (lambda c: c.update(prototypes=[row[:2] for row in c["prototypes"]]), "one row per segment"),
        # The training config, validated by its learner's model (metarl_core.config).
        (
            lambda c: c["config"].update(num_envs="512"),
            'card config: num_envs = "512": Input should be a valid integer',
        ),
        (lambda c: c["config"].update(colour="blue"), "card config: unknown key colour"),
        (lambda c: c["config"].update(gradient_steps=4), "card config: unknown key gradient_steps"),  # SAC's, on PPO
        (lambda c: c.update(learner="dqn"), 'card config: learner = "dqn": must be one of ppo, sac'),
    ],
)
def test_card_with_wrong_format_version_or_contents(
    checkpoint: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_card(checkpoint, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_bytes(b"\x00garbage\x13" * 100), id="garbage"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:300]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-100]), id="tail-cut"),
        pytest.param(lambda p: p.write_bytes((1 << 40).to_bytes(8, "little") + b"{}"), id="huge-header"),
    ],
)
def test_weights_file_that_is_not_safetensors(checkpoint: Path, damage: Callable[[Path], None]) -> None:
    damage(checkpoint / WEIGHTS)
    with pytest.raises(CheckpointError, match=f"{WEIGHTS} is corrupt or not a safetensors file"):
        load_checkpoint(checkpoint)


def test_weights_with_a_wrong_shape(checkpoint: Path) -> None:
    tensors = load_file(str(checkpoint / WEIGHTS))
    tensors["actor.0.weight"] = torch.zeros(tensors["actor.0.weight"].shape[0], 5)
    save_file(tensors, str(checkpoint / WEIGHTS))
    with pytest.raises(CheckpointError, match=r"weight actor\.0\.weight has shape \(32, 5\), expected \(32, 48\)"):
        load_checkpoint(checkpoint)


def test_weights_with_missing_or_unexpected_tensors(checkpoint: Path) -> None:
    tensors = load_file(str(checkpoint / WEIGHTS))
    del tensors["critic.2.bias"]
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, str(checkpoint / WEIGHTS))
    with pytest.raises(CheckpointError, match=r"missing \['critic\.2\.bias'\], unexpected \['extra\.weight'\]"):
        load_checkpoint(checkpoint)


def test_weights_of_another_network(checkpoint: Path) -> None:
    """A card whose spec (latent size) does not match the stored weights."""
    edit_card(checkpoint, lambda c: c["network"].update(latent_dim=3))
    # Either the prototypes (sized by the card's latent) or the weights' shapes give it away.
    with pytest.raises(CheckpointError, match=r"has shape|prototypes"):
        load_checkpoint(checkpoint)


def test_observation_size_mismatch(checkpoint: Path) -> None:
    obs_dim = card_obs_dim(checkpoint)
    with pytest.raises(CheckpointError, match=f"observations of size {obs_dim}, the environment gives {obs_dim + 4}"):
        load_checkpoint(checkpoint, obs_dim=obs_dim + 4)
    with pytest.raises(CheckpointError, match=f"observations of size {obs_dim}"):
        Agent.load(checkpoint, obs_dim=obs_dim - 1)


def test_action_count_mismatch(checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint has 12 actions, the environment has 9"):
        load_checkpoint(checkpoint, n_actions=9)


@pytest.mark.parametrize(
    "prototypes",
    [
        pytest.param([1.0, 2.0], id="flat"),
        pytest.param([[[0.0, 0.0], [0.0], [1.0, 1.0]]], id="ragged"),
        pytest.param([[[0.0, 0.0, 0.0]] * 3], id="wrong-latent-size"),
    ],
)
def test_card_with_malformed_prototypes(checkpoint: Path, prototypes: list, dialogues: Any) -> None:
    edit_card(checkpoint, lambda c: c.update(prototypes=prototypes, prototype_temperature=[1.0]))
    with pytest.raises(CheckpointError, match="prototype"):
        agent = Agent.load(checkpoint)
        agent.segment_probabilities(agent.initial_belief(2))
