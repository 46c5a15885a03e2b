"""Trained checkpoints as simulator policies (``segdial simulate --policy CHECKPOINT``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from dialogue.tracker import ObservationLayout
from metarl_core.inference import Agent


class CheckpointPolicy:
    """A trained ``Agent`` behind the simulators' batched policy interface.

    It keeps one belief per row and starts it afresh where the observation is the first of a
    dialogue (turn feature 0), so it works with the simulators' autoresetting rollouts.
    """

    def __init__(self, path: str | Path, layout: ObservationLayout) -> None:
        self.agent = Agent.load(path, obs_dim=layout.size)
        if self.agent.spec.variant == "oracle":
            raise ValueError("an oracle checkpoint needs the true user parameters; simulate it with segdial evaluate")
        self.name = f"checkpoint:{Path(path).name}"
        self.layout = layout
        self.belief = self.agent.initial_belief(0)

    def __call__(
        self, obs: npt.NDArray[np.float32], mask: npt.NDArray[np.int8], segments: npt.NDArray[np.str_] | None = None
    ) -> npt.NDArray[np.int64]:
        if self.belief.eta.shape[0] != len(obs):
            self.belief = self.agent.initial_belief(len(obs))
        self.belief.reset(torch.as_tensor(obs[:, self.layout.turn] == 0))
        return self.agent.step(obs, mask, self.belief)
