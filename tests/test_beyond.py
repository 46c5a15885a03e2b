"""Users beyond the segments (``segdial.beyond``): the populations, the fit gate and the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metarl_core.evaluation import make_vec, play
from metarl_core.inference import Agent
from segdial.beyond import (
    GatedAgent,
    beyond_checks,
    box_users,
    calibrate_fit,
    evaluate_beyond,
    mixture_users,
    point_profiles,
    widened_box,
)
from simulators.profiles import PARAMETERS, PROFILES, TRAINING_SEGMENTS

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"
ENV = "simulators:simulators/SegmentDialogue-v0"


@pytest.fixture(scope="module")
def agents() -> tuple[Agent, Agent]:
    agent = Agent.load(DEFAULT)
    return agent, Agent.load(DEFAULT / "comparators" / "agnostic", obs_dim=agent.spec.obs_dim)


def test_the_box_is_wider_than_every_profile_and_stays_possible() -> None:
    low, high = widened_box()
    for p in PROFILES.values():
        assert (low <= p.low + 1e-12).all() and (high >= p.high - 1e-12).all()
    union_low = np.min([p.low for p in PROFILES.values()], axis=0)
    union_high = np.max([p.high for p in PROFILES.values()], axis=0)
    assert (high - low >= union_high - union_low).all()
    assert (high - low > union_high - union_low).any()
    p_know = PARAMETERS.index("p_know")
    assert low[p_know] >= 0.0 and high[p_know] <= 1.0
    users = box_users(500, seed=1)
    assert ((users >= low) & (users <= high)).all()


def test_mixtures_lie_between_two_training_segments() -> None:
    users = mixture_users(300, seed=2)
    low = np.min([PROFILES[s].low for s in TRAINING_SEGMENTS], axis=0)
    high = np.max([PROFILES[s].high for s in TRAINING_SEGMENTS], axis=0)
    assert ((users >= low - 1e-12) & (users <= high + 1e-12)).all()
    inside_one = [
        any(((u >= PROFILES[s].low) & (u <= PROFILES[s].high)).all() for s in TRAINING_SEGMENTS) for u in users
    ]
    assert np.mean(inside_one) < 0.5  # most mixtures are nobody's segment


def test_a_point_profile_is_one_user() -> None:
    users = box_users(2, seed=3)
    profiles = point_profiles(users, "u")
    assert [p.name for p in profiles] == ["u-00000", "u-00001"]
    assert np.allclose(profiles[1].sample(np.random.default_rng(0), 3), users[1])


def test_the_gate_takes_the_fallback_only_where_the_fit_is_poor(agents: tuple[Agent, Agent]) -> None:
    agent, agnostic = agents
    envs = make_vec(ENV, 64, segments=list(TRAINING_SEGMENTS))
    obs, info = envs.reset(seed=5)
    for thresholds, expect in (([float("inf")], agent), ([-1.0], agnostic)):
        gated = GatedAgent(agent, agnostic, thresholds)
        belief, mine = gated.initial_state(64), expect.initial_state(64)
        acts = gated.step(obs, info["action_mask"], belief)
        assert (acts == expect.step(obs, info["action_mask"], mine)).all()
        assert gated.gated == (0 if expect is agent else 64)
    envs.close()


def test_calibration_flags_few_held_in_turns_and_many_beyond(agents: tuple[Agent, Agent]) -> None:

    agent, agnostic = agents
    thresholds = calibrate_fit(agent, ENV, {}, episodes=500, seed=11)
    assert agent.prototypes is not None and len(thresholds) == agent.prototypes.shape[0]
    gated = GatedAgent(agent, agnostic, thresholds)
    play(gated, ENV, {"segments": list(TRAINING_SEGMENTS)}, 300, seed=12, max_turns_id=1)
    held_in = gated.gated / gated.turns
    gated.gated = gated.turns = 0
    play(gated, ENV, {"segments": point_profiles(box_users(100, seed=13), "b")}, 300, seed=14, max_turns_id=1)
    beyond = gated.gated / gated.turns
    assert held_in < 0.08 and beyond > 2 * held_in, (held_in, beyond)


def test_the_figures_compare_every_policy_with_the_agnostic_one(agents: tuple[Agent, Agent]) -> None:
    agent, agnostic = agents
    results = evaluate_beyond({"contextual": agent, "agnostic": agnostic}, ENV, {}, users=20, dialogues_per_user=4)
    for name in ("box", "mixtures"):
        rows = results["populations"][name]
        assert rows["contextual"]["dialogues"] >= 80 and 0.0 <= rows["agnostic"]["hangup_rate"] <= 1.0
        harm = rows["contextual"]["no_harm"]
        assert 0.0 <= harm["share_not_worse"] <= 1.0 and harm["users_compared"] > 0
    checks = beyond_checks(results)
    assert len(checks) == 4 and all(isinstance(c["pass"], bool) for c in checks)
