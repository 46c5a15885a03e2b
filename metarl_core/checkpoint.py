"""Checkpoints: safetensors weights plus a JSON card, and their validation.

A checkpoint is a folder with ``weights.safetensors`` (the network, no pickles) and ``card.json``:
the format and version, the network spec, the environment id and keyword arguments, the
observation and action spaces, the segment names and prototypes, the learner and its training
configuration, and the figures measured during training. ``load_checkpoint`` checks all of it (the
configuration with the learner's own model, ``metarl_core.config``) and raises ``CheckpointError``
with a message that names what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metarl_core.config import ConfigError, card_config
from metarl_core.networks import ActorCritic, NetworkSpec

FORMAT = "segdial-policy"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CARD = "card.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit what it is loaded for."""


@dataclass
class Card:
    """The JSON card of a checkpoint."""

    network: NetworkSpec
    env_id: str
    env_kwargs: dict[str, Any]
    observation_shape: list[int]
    n_actions: int
    segments: list[str] = field(default_factory=list)
    prototypes: list[list[list[float]]] = field(default_factory=list)  # [turns][segment][latent]
    prototype_temperature: list[float] = field(default_factory=list)  # one per turn count
    config: dict[str, Any] = field(default_factory=dict)
    learner: str | None = None
    """The learner that wrote ``config`` (``metarl_core.config.CONFIGS``); None in cards from before cards named it."""
    training: dict[str, Any] = field(default_factory=dict)
    package_version: str = "0.1.0"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": self.package_version,
            "network": self.network.to_dict(),
            "env": {"id": self.env_id, "kwargs": self.env_kwargs},
            "observation_shape": self.observation_shape,
            "n_actions": self.n_actions,
            "segments": self.segments,
            "prototypes": self.prototypes,
            "prototype_temperature": self.prototype_temperature,
            "config": self.config,
            **({"learner": self.learner} if self.learner is not None else {}),
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Card:
        if data.get("format") != FORMAT:
            raise CheckpointError(f"card format is {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"card format version {data.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
            )
        try:
            network = NetworkSpec(**data["network"])
            card = cls(
                network=network,
                env_id=data["env"]["id"],
                env_kwargs=dict(data["env"].get("kwargs", {})),
                observation_shape=list(data["observation_shape"]),
                n_actions=int(data["n_actions"]),
                segments=list(data.get("segments", [])),
                prototypes=data.get("prototypes", []),
                prototype_temperature=list(data.get("prototype_temperature", [])),
                config=dict(data.get("config", {})),
                learner=data.get("learner"),
                training=dict(data.get("training", {})),
                package_version=str(data.get("package_version", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"card is incomplete or malformed: {e}") from e
        if card.observation_shape != [network.obs_dim] or card.n_actions != network.n_actions:
            raise CheckpointError("card spaces do not agree with its network spec")
        try:
            card_config(card.config, card.learner)
        except ConfigError as e:
            raise CheckpointError(f"card config: {e}") from None
        _check_prototypes(card)
        return card


def _check_prototypes(card: Card) -> None:
    """Prototypes must be [turns][segment][latent] numbers with a positive temperature per turn."""
    if not card.prototypes:
        return
    z = card.network.memory_dim if card.network.variant == "rl2" else card.network.latent_dim
    try:
        shape_ok = all(
            len(row) == len(card.segments)
            and all(len(v) == z and all(isinstance(x, (int, float)) for x in v) for v in row)
            for row in card.prototypes
        )
    except TypeError:
        shape_ok = False
    if not shape_ok:
        raise CheckpointError(
            f"card prototypes must have one row per segment ({len(card.segments)}) of {z} numbers, per turn count"
        )
    temps = card.prototype_temperature
    if len(temps) != len(card.prototypes) or any(not isinstance(t, (int, float)) or t <= 0 for t in temps):
        raise CheckpointError("card needs one positive prototype temperature per turn count")


def save_checkpoint(path: str | Path, model: ActorCritic, card: Card) -> Path:
    """Write ``model`` and ``card`` to the folder ``path`` (created if needed); returns the folder."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Write to temporary names, then rename: a crash never leaves half a checkpoint.
    tmp_w, tmp_c = folder / (WEIGHTS + ".tmp"), folder / (CARD + ".tmp")
    save_file(tensors, str(tmp_w))
    tmp_c.write_text(json.dumps(card.to_json(), indent=2) + "\n")
    tmp_w.replace(folder / WEIGHTS)
    tmp_c.replace(folder / CARD)
    return folder


def load_checkpoint(
    path: str | Path, *, obs_dim: int | None = None, n_actions: int | None = None
) -> tuple[ActorCritic, Card]:
    """The model and card of a checkpoint folder; ``obs_dim``/``n_actions`` are checked if given."""
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(f"no checkpoint at {folder}")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a checkpoint folder (expected {WEIGHTS} and {CARD} inside)")
    for name in (WEIGHTS, CARD):
        if not (folder / name).is_file():
            raise CheckpointError(f"checkpoint {folder} has no {name}")
    try:
        raw = json.loads((folder / CARD).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{folder / CARD} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{folder / CARD} does not hold a JSON object")
    card = Card.from_json(raw)
    if obs_dim is not None and obs_dim != card.network.obs_dim:
        raise CheckpointError(
            f"checkpoint expects observations of size {card.network.obs_dim}, the environment gives {obs_dim}"
        )
    if n_actions is not None and n_actions != card.network.n_actions:
        raise CheckpointError(f"checkpoint has {card.network.n_actions} actions, the environment has {n_actions}")
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{folder / WEIGHTS} is corrupt or not a safetensors file: {e}") from e
    model = ActorCritic(card.network)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"weights do not match the card's network: missing {missing}, unexpected {unexpected}")
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"weight {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict(tensors)
    model.eval()
    return model, card
