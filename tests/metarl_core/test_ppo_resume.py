"""Resuming an interrupted training run (``Trainer.save_state`` / ``Trainer.try_resume``).

A run stopped after two of four updates (``train(stop_after=2)``, a checkpoint every update) is
continued by a new ``Trainer`` on the same folder and configuration: it starts from the saved
update, step count, parameters, optimiser state and learning-rate schedule, and finishes exactly
the remaining updates. A run resumes from its last checkpoint, not from where it was killed; an
empty folder is not resumed; another configuration in the same folder is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from metarl_core.config import PPOConfig
from metarl_core.ppo import PPOTrainer

BATCH = 64 * 16  # turns per update of the small config


def test_resume_continues_where_it_stopped(make_config: Callable[..., PPOConfig], tmp_path: Path) -> None:
    cfg = make_config(total_steps=4 * BATCH, checkpoint_every=1)
    first = PPOTrainer(cfg, tmp_path)
    assert not first.try_resume(), "nothing to resume in an empty folder"
    first.train(stop_after=2)
    assert (first.update, first.global_step, first.n_updates) == (2, 2 * BATCH, 4)
    assert first.state_path.is_file()

    second = PPOTrainer(cfg, tmp_path)
    assert second.update == 0
    assert second.try_resume()
    assert (second.update, second.global_step) == (2, 2 * BATCH)
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), key
    saved, loaded = first.optimizer.state_dict(), second.optimizer.state_dict()
    for pid, state in saved["state"].items():
        assert float(loaded["state"][pid]["step"]) == float(state["step"]) == 2 * cfg.update_epochs * cfg.minibatches
        assert torch.equal(loaded["state"][pid]["exp_avg"], state["exp_avg"])

    seen: list[tuple[int, float]] = []

    def progress(step: int, scalars: dict[str, float]) -> None:
        seen.append((step, second.optimizer.param_groups[0]["lr"]))

    second.train(progress)
    assert (second.update, second.global_step) == (4, 4 * BATCH)
    assert [step for step, _ in seen] == [3 * BATCH, 4 * BATCH], "not exactly the remaining updates"
    # The linear annealing continues (updates 3 and 4 of 4), it does not restart.
    assert [lr for _, lr in seen] == pytest.approx([0.5 * cfg.learning_rate, 0.25 * cfg.learning_rate])
    assert [h["step"] for h in second.history] == [4 * BATCH], "the final evaluation is missing"
    assert second.wall_time > first.wall_time

    # A finished run resumes as finished and trains no more.
    third = PPOTrainer(cfg, tmp_path)
    assert third.try_resume()
    third.train(lambda step, scalars: pytest.fail("a finished run trained again"))
    assert (third.update, third.global_step) == (4, 4 * BATCH)
    assert third.history == second.history


def test_resume_starts_from_the_last_checkpoint(make_config: Callable[..., PPOConfig], tmp_path: Path) -> None:
    cfg = make_config(total_steps=4 * BATCH, checkpoint_every=2)
    first = PPOTrainer(cfg, tmp_path)
    first.train(stop_after=3)  # killed after update 3; the last checkpoint is at update 2
    assert first.update == 3
    second = PPOTrainer(cfg, tmp_path)
    assert second.try_resume()
    assert (second.update, second.global_step) == (2, 2 * BATCH)
    second.train()
    assert (second.update, second.global_step) == (4, 4 * BATCH)


def test_another_configuration_in_the_same_folder_is_refused(
    make_config: Callable[..., PPOConfig], tmp_path: Path
) -> None:
    first = PPOTrainer(make_config(total_steps=4 * BATCH), tmp_path)
    first.train(stop_after=1)
    before = first.state_path.read_bytes()
    for other in (make_config(total_steps=4 * BATCH, learning_rate=0.01), make_config(total_steps=8 * BATCH)):
        with pytest.raises(ValueError, match="another configuration"):
            PPOTrainer(other, tmp_path).try_resume()
    assert first.state_path.read_bytes() == before
