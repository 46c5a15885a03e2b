"""Segment profiles: their parameters, sampling inside the ranges, held-out segments, lookup errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from simulators.profiles import (
    HELD_OUT_SEGMENTS,
    PARAM_INDEX,
    PARAMETERS,
    PROFILES,
    TRAINING_SEGMENTS,
    ProfileError,
    SegmentProfile,
    resolve_profiles,
)


def test_segments() -> None:
    assert TRAINING_SEGMENTS == ("power", "core", "casual")
    assert HELD_OUT_SEGMENTS and set(HELD_OUT_SEGMENTS) == {n for n, p in PROFILES.items() if p.held_out}
    assert not set(TRAINING_SEGMENTS) & set(HELD_OUT_SEGMENTS)
    assert set(PROFILES) == set(TRAINING_SEGMENTS) | set(HELD_OUT_SEGMENTS)
    assert {p: i for i, p in enumerate(PARAMETERS)} == PARAM_INDEX
    assert len(set(PARAMETERS)) == len(PARAMETERS) == 13


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_ranges_are_valid(name: str) -> None:
    profile = PROFILES[name]
    assert profile.name == name and profile.description
    assert set(profile.ranges) == set(PARAMETERS)
    assert (profile.low <= profile.high).all()
    probabilities = [
        "initiative",
        "p_know",
        "confusion",
        "error_rate",
        "hazard",
        "relax",
        "vigilance",
        "verbosity",
    ]
    for p in probabilities:
        lo, hi = profile.ranges[p]
        assert 0.0 <= lo <= hi <= 1.0, p
    assert profile.ranges["patience"][0] > 0 and profile.ranges["turn_cost"][0] > 0


@pytest.mark.parametrize("name", list(PROFILES))
def test_sample_stays_inside_the_ranges(name: str) -> None:
    profile = PROFILES[name]
    users = profile.sample(np.random.default_rng(0), 2000)
    assert users.shape == (2000, len(PARAMETERS))
    assert (users >= profile.low).all() and (users <= profile.high).all()
    wide = profile.high - profile.low > 0
    # Uniform inside the ranges: the sample mean is near the middle.
    mid = (profile.low + profile.high) / 2
    np.testing.assert_allclose(users.mean(0)[wide], mid[wide], atol=0.05 * (profile.high - profile.low)[wide].max())
    again = profile.sample(np.random.default_rng(0), 2000)
    np.testing.assert_array_equal(users, again)


def test_segments_differ_in_behaviour() -> None:
    power, casual = PROFILES["power"], PROFILES["casual"]
    assert power.ranges["p_know"][0] > casual.ranges["p_know"][1]
    assert power.ranges["initiative"][0] > casual.ranges["initiative"][1]
    assert power.ranges["verbosity"][1] < casual.ranges["verbosity"][0]


def test_resolve_profiles() -> None:
    assert resolve_profiles(None) == tuple(PROFILES[n] for n in TRAINING_SEGMENTS)
    assert resolve_profiles("casual") == (PROFILES["casual"],)
    assert resolve_profiles(["power", PROFILES["core"]]) == (PROFILES["power"], PROFILES["core"])
    custom = SegmentProfile("custom", {p: (0.5, 0.5) for p in PARAMETERS})
    assert resolve_profiles(custom) == (custom,)


def test_resolve_profiles_errors() -> None:
    with pytest.raises(ProfileError, match=r"unknown segment 'expert'.*power"):
        resolve_profiles("expert")
    with pytest.raises(ProfileError, match="unknown segment"):
        resolve_profiles(["power", "nobody"])
    with pytest.raises(ProfileError, match="at least one segment"):
        resolve_profiles([])
    assert issubclass(ProfileError, ValueError)


def test_bad_profile_definitions() -> None:
    ranges = {p: (0.0, 1.0) for p in PARAMETERS}
    with pytest.raises(ProfileError, match="missing parameters"):
        SegmentProfile("x", {k: v for k, v in ranges.items() if k != "hazard"})
    with pytest.raises(ProfileError, match="unknown"):
        SegmentProfile("x", {**ranges, "charm": (0.0, 1.0)})
    with pytest.raises(ProfileError, match=re.escape("low 0.9 > high 0.1")):
        SegmentProfile("x", {**ranges, "hazard": (0.9, 0.1)})
