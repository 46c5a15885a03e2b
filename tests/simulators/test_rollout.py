"""Rollouts: ``run_dialogues`` (vectorised, whole dialogues per row) and ``run_transcripts`` (text)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dialogue.domain import load_domain
from dialogue.tracker import ObservationLayout
from simulators.env import SUCCESS_REWARD, TURN_PENALTY
from simulators.policies import make_policy
from simulators.profiles import TRAINING_SEGMENTS
from simulators.rollout import DialogueStats, run_dialogues, run_transcripts

LAYOUT = ObservationLayout(load_domain("restaurant").n_slots)


def test_run_dialogues_counts_and_consistency() -> None:
    stats = run_dialogues(make_policy("oracle", LAYOUT), 250, seed=3, batch=100)
    assert stats.n == 300  # rounded up to a multiple of the batch
    assert set(stats.segments) == set(TRAINING_SEGMENTS)
    assert (stats.turns >= 1).all() and (stats.turns <= 20).all()
    # Return = -1 per turn, +20 on success.
    np.testing.assert_allclose(stats.returns, TURN_PENALTY * stats.turns + SUCCESS_REWARD * stats.success)
    assert not (stats.success & stats.hangup).any()


def test_run_dialogues_is_deterministic_and_seeded() -> None:
    policy = make_policy("core", LAYOUT)
    a = run_dialogues(policy, 200, seed=1)
    b = run_dialogues(policy, 200, seed=1)
    c = run_dialogues(policy, 200, seed=2)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.segments, b.segments)
    assert not np.array_equal(a.returns, c.returns)


def test_run_dialogues_progress_and_options() -> None:
    seen: list[int] = []
    stats = run_dialogues(
        make_policy("random", LAYOUT),
        40,
        domain="hotel",
        segments="casual",
        max_turns=4,
        batch=20,
        progress=seen.append,
    )
    assert sum(seen) == stats.n == 40
    assert (stats.segments == "casual").all()
    assert stats.turns.max() <= 4


@pytest.mark.parametrize("n", [0, -1])
def test_run_dialogues_rejects_non_positive_counts(n: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        run_dialogues(make_policy("core", LAYOUT), n)


def test_stats_where_and_summary() -> None:
    stats = DialogueStats(
        returns=np.array([19.0, -3.0, -5.0, 15.0]),
        success=np.array([True, False, False, True]),
        turns=np.array([1, 3, 5, 5]),
        hangup=np.array([False, True, False, False]),
        segments=np.array(["power", "power", "casual", "casual"]),
    )
    s = stats.summary()
    assert s["dialogues"] == 4
    assert s["success_rate"] == 0.5 and s["mean_return"] == 6.5 and s["mean_turns"] == 3.5
    assert s["hangup_rate"] == 0.25
    assert s["return_ci95"] == pytest.approx(1.96 * np.std([19, -3, -5, 15], ddof=1) / 2)
    power = stats.where(stats.segments == "power")
    assert power.n == 2 and power.summary()["mean_return"] == 8.0
    one = stats.where(np.array([True, False, False, False])).summary()
    assert one["dialogues"] == 1 and math.isnan(one["return_ci95"])


def test_run_transcripts() -> None:
    texts = run_transcripts(make_policy("casual", LAYOUT), 3, segments="casual", seed=5)
    assert len(texts) == 3
    for i, text in enumerate(texts):
        lines = text.splitlines()
        assert lines[0] == f"--- dialogue {i + 1}: casual user ---"
        assert lines[1].startswith("USER: ")
        body = lines[2:-1]
        assert body and len(body) % 2 == 0
        assert all(line.startswith("SYSTEM: ") for line in body[::2])
        assert all(line.startswith("USER: ") for line in body[1::2])
        assert lines[-1].startswith("=> ") and "return" in lines[-1]
        assert any(outcome in lines[-1] for outcome in ("success", "hung up", "failure"))
    assert run_transcripts(make_policy("casual", LAYOUT), 3, segments="casual", seed=5) == texts
