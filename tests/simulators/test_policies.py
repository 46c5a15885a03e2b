"""Reference policies: valid actions, lookup errors, and the ranking the simulators must show.

- Every named preset and every member of ``rule_family`` only picks acts the action mask allows
  (vectorised, a few hundred steps, both domains).
- The rule oracle beats random play by far.
- On every training segment, the segment's own preset has a higher mean return than each other
  named preset (power / core / casual / compromise), 2,000 dialogues a cell. The pairs that are
  close are reported with their distance in standard errors in the assertion message.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dialogue.acts import N_SYSTEM_ACTS, SystemAct
from dialogue.domain import load_domain
from dialogue.tracker import ObservationLayout
from simulators.policies import (
    COMPROMISE_RULES,
    SEGMENT_RULES,
    Policy,
    PolicyError,
    RandomPolicy,
    RuleOracle,
    RulePolicy,
    make_policy,
    reference_policy_names,
    rule_family,
)
from simulators.profiles import PROFILES, TRAINING_SEGMENTS
from simulators.rollout import DialogueStats, run_dialogues
from simulators.vector_env import SegmentDialogueVectorEnv

LAYOUT = ObservationLayout(load_domain("restaurant").n_slots)
PRESETS = ("power", "core", "casual", "compromise")
N_RANKING = 2000


def all_policies(layout: ObservationLayout) -> list[Policy]:
    return [make_policy(name, layout) for name in reference_policy_names()] + list(rule_family(layout))


def assert_only_allowed_acts(policies: list[Policy], domain: str, steps: int = 200, rows_each: int = 64) -> None:
    """Each policy drives its own block of rows of one vectorised environment, for ``steps`` steps."""
    n = rows_each * len(policies)
    blocks = np.arange(n).reshape(len(policies), rows_each)
    env = SegmentDialogueVectorEnv(num_envs=n, domain=domain, segments=list(PROFILES))
    obs, info = env.reset(seed=0)
    for _ in range(steps):
        act = np.empty(n, dtype=np.int64)
        for policy, rows in zip(policies, blocks, strict=True):
            chosen = np.asarray(policy(obs[rows], info["action_mask"][rows], info["segment"][rows]))
            assert chosen.shape == (rows_each,) and np.issubdtype(chosen.dtype, np.integer), policy.name
            act[rows] = chosen
        allowed = info["action_mask"][np.arange(n), act] == 1
        bad = [
            f"{policy.name}: {sorted({SystemAct(a).name for a in act[rows][~allowed[rows]]})}"
            for policy, rows in zip(policies, blocks, strict=True)
            if not allowed[rows].all()
        ]
        assert not bad, f"masked acts chosen: {bad}"
        obs, *_, info = env.step(act)


@pytest.mark.parametrize("domain", ["restaurant", "hotel"])
def test_reference_policies_respect_the_action_mask(domain: str) -> None:
    layout = ObservationLayout(load_domain(domain).n_slots)
    policies = all_policies(layout)
    assert len(policies) == len(reference_policy_names()) + 24
    assert_only_allowed_acts(policies, domain)


def test_random_policy_uses_every_allowed_act_and_is_seeded() -> None:
    mask = np.ones((5000, N_SYSTEM_ACTS), dtype=np.int8)
    mask[:, SystemAct.BOOK] = 0
    acts = RandomPolicy(seed=1)(np.zeros((5000, 3), dtype=np.float32), mask)
    assert set(acts.tolist()) == set(range(N_SYSTEM_ACTS)) - {SystemAct.BOOK}
    again = RandomPolicy(seed=1)(np.zeros((5000, 3), dtype=np.float32), mask)
    np.testing.assert_array_equal(acts, again)


def test_family_and_presets() -> None:
    family = rule_family(LAYOUT)
    assert len(family) == 24 and len({p.name for p in family}) == 24
    settings = {(p.ask, p.confirm_below, p.explain_first) for p in family}
    for rules in [*(SEGMENT_RULES[s] for s in TRAINING_SEGMENTS), COMPROMISE_RULES]:
        assert (rules["ask"], rules["confirm_below"], rules["explain_first"]) in settings
    assert set(SEGMENT_RULES) == set(PROFILES), "every segment, held-out ones too, has a rule policy"
    assert set(reference_policy_names()) == {*SEGMENT_RULES, "compromise", "oracle", "random"}
    for name in SEGMENT_RULES:
        policy = make_policy(name, LAYOUT)
        assert isinstance(policy, RulePolicy) and policy.name == name
    assert isinstance(make_policy("oracle", LAYOUT), RuleOracle)
    assert isinstance(make_policy("random", LAYOUT, seed=3), RandomPolicy)


def test_unknown_policy_name() -> None:
    with pytest.raises(PolicyError, match="unknown policy 'greedy'; known policies: power"):
        make_policy("greedy", LAYOUT)
    assert issubclass(PolicyError, ValueError)


def test_oracle_needs_segments() -> None:
    oracle = make_policy("oracle", LAYOUT)
    obs = np.zeros((2, LAYOUT.size), dtype=np.float32)
    mask = np.ones((2, N_SYSTEM_ACTS), dtype=np.int8)
    with pytest.raises(PolicyError, match="needs the true segment"):
        oracle(obs, mask)
    with pytest.raises(PolicyError, match="no policy for segment"):
        oracle(obs, mask, np.array(["power", "alien"]))


def test_oracle_error_names_the_segment_plainly() -> None:
    oracle = make_policy("oracle", LAYOUT)
    obs = np.zeros((2, LAYOUT.size), dtype=np.float32)
    mask = np.ones((2, N_SYSTEM_ACTS), dtype=np.int8)
    with pytest.raises(PolicyError, match=r"no policy for segment 'alien'$"):
        oracle(obs, mask, np.array(["power", "alien"]))


def test_oracle_uses_each_segments_own_policy() -> None:
    env = SegmentDialogueVectorEnv(num_envs=300)
    obs, info = env.reset(seed=0)
    oracle = make_policy("oracle", LAYOUT)
    got = oracle(obs, info["action_mask"], info["segment"])
    for name in TRAINING_SEGMENTS:
        rows = info["segment"] == name
        np.testing.assert_array_equal(got[rows], make_policy(name, LAYOUT)(obs[rows], info["action_mask"][rows]))


def test_rule_policies_follow_their_settings() -> None:
    env = SegmentDialogueVectorEnv(num_envs=500, segments="casual")
    obs, info = env.reset(seed=0)
    lay = LAYOUT
    fresh = obs[:, lay.filled].sum(1) == 0  # nothing said yet
    assert fresh.any()
    for ask, act in (("all", SystemAct.REQUEST_ALL), ("one", SystemAct.REQUEST_ONE), ("suggest", SystemAct.SUGGEST)):
        policy = RulePolicy(ask, lay, ask=ask)  # type: ignore[arg-type]
        assert (policy(obs[fresh], info["action_mask"][fresh]) == act).all()
    explain = RulePolicy("explain", lay, explain_first=True)
    assert (explain(obs, info["action_mask"]) == SystemAct.EXPLAIN).all()
    given = obs[:, lay.filled].sum(1) > 0
    assert given.any()
    always = RulePolicy("always", lay, confirm_below=1.01)
    assert (always(obs[given], info["action_mask"][given]) == SystemAct.CONFIRM).all()
    never = RulePolicy("never", lay, confirm_below=0.0)
    assert not (never(obs, info["action_mask"]) == SystemAct.CONFIRM).any()


def stats_line(name: str, s: DialogueStats) -> str:
    se = float(s.returns.std(ddof=1)) / math.sqrt(s.n)
    return f"{name}: {s.returns.mean():.2f} ± {se:.2f} (SE)"


def test_oracle_beats_random() -> None:
    oracle = run_dialogues(make_policy("oracle", LAYOUT), N_RANKING, seed=1)
    random = run_dialogues(make_policy("random", LAYOUT), N_RANKING, seed=1)
    se = math.sqrt(oracle.returns.var(ddof=1) / oracle.n + random.returns.var(ddof=1) / random.n)
    assert oracle.returns.mean() - random.returns.mean() > 10 * se, (
        stats_line("oracle", oracle),
        stats_line("random", random),
    )
    assert oracle.success.mean() > random.success.mean() + 0.5


@pytest.mark.parametrize("segment", TRAINING_SEGMENTS)
@pytest.mark.parametrize("domain", ["restaurant", "hotel"])
def test_each_segment_is_best_served_by_its_own_preset(domain: str, segment: str) -> None:
    layout = ObservationLayout(load_domain(domain).n_slots)
    results = {
        name: run_dialogues(make_policy(name, layout), N_RANKING, domain=domain, segments=segment, seed=0)
        for name in PRESETS
    }
    own = results[segment]
    for name, other in results.items():
        if name == segment:
            continue
        se = math.sqrt(own.returns.var(ddof=1) / own.n + other.returns.var(ddof=1) / other.n)
        gap = own.returns.mean() - other.returns.mean()
        assert gap > 0, (
            f"on {segment} users ({domain}), {stats_line(segment, own)} is not above {stats_line(name, other)} "
            f"(gap {gap:+.2f} = {gap / se:+.1f} SE)"
        )
