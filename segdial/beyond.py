"""Users between and beyond the segments: does the contextual policy ever do harm?

Two populations of users that no training or tuning step sees (their seeds are ``BEYOND_SEED``
and up, never a training seed):

- **box**: each behaviour parameter uniform over the union of all shipped profiles' ranges,
  widened by 25% of that union's width on each side and clipped to what the parameter can be
  (a probability stays in [0, 1], a cost at >= 0, patience at >= 0.5);
- **mixtures**: a user of one training segment and a user of another, their parameters
  interpolated at a uniform random weight.

Each user is one fixed parameter vector (a point profile), played about ``dialogues_per_user``
times by each policy on the same seed. Reported per population and policy: mean return, success,
hang-ups and turns over all dialogues; the worst decile (the mean return of the 10% of users on
whom the policy does worst, per-user means); and for the contextual policy the no-harm figures
against the agnostic one: the share of users on whom it is not worse (its per-user mean return
at least the agnostic's minus two standard errors of the difference, so that one unlucky dialogue
does not count as harm), and the 10th percentile of the per-user difference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from dialogue.acts import UserAct
from metarl_core.evaluation import EpisodeRecord, make_vec, play
from metarl_core.inference import Agent, BatchBelief, PolicyState
from simulators.profiles import PARAMETERS, PROFILES, TRAINING_SEGMENTS, SegmentProfile

BEYOND_SEED = 7_000_001  # users and dialogues beyond the segments: no training run uses it
WIDEN = 0.25
_PROBABILITIES = {
    "initiative", "p_know", "confusion", "error_rate", "hazard", "relax", "vigilance", "verbosity",
}  # fmt: skip
_FLOOR = {"patience": 0.5}


def widened_box(widen: float = WIDEN) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(low, high) per parameter: the union of every shipped profile's ranges, widened and clipped."""
    low = np.min([p.low for p in PROFILES.values()], axis=0)
    high = np.max([p.high for p in PROFILES.values()], axis=0)
    width = high - low
    low, high = low - widen * width, high + widen * width
    for i, name in enumerate(PARAMETERS):
        low[i] = max(low[i], _FLOOR.get(name, 0.0))
        if name in _PROBABILITIES:
            high[i] = min(high[i], 1.0)
    return low, high


def box_users(n: int, seed: int) -> npt.NDArray[np.float64]:
    """``n`` users drawn uniformly from the widened box."""
    low, high = widened_box()
    return low + (high - low) * np.random.default_rng(seed).random((n, len(PARAMETERS)))


def mixture_users(n: int, seed: int, segments: tuple[str, ...] = TRAINING_SEGMENTS) -> npt.NDArray[np.float64]:
    """``n`` users between two different ``segments``: a user of each, interpolated at a random weight."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(PARAMETERS)))
    for i in range(n):
        a, b = rng.choice(len(segments), size=2, replace=False)
        w = rng.random()
        ua = PROFILES[segments[a]].sample(rng)[0]
        ub = PROFILES[segments[b]].sample(rng)[0]
        out[i] = w * ua + (1 - w) * ub
    return out


def point_profiles(users: npt.NDArray[np.float64], prefix: str) -> list[SegmentProfile]:
    """One profile per user, every range a single point."""
    return [
        SegmentProfile(f"{prefix}-{i:05d}", {p: (float(v), float(v)) for p, v in zip(PARAMETERS, u, strict=True)})
        for i, u in enumerate(users)
    ]


def _per_user(rec: EpisodeRecord, n_users: int) -> tuple[npt.NDArray[np.float64], ...]:
    counts = np.bincount(rec.labels, minlength=n_users).astype(np.float64)
    sums = np.bincount(rec.labels, weights=rec.returns, minlength=n_users)
    squares = np.bincount(rec.labels, weights=rec.returns**2, minlength=n_users)
    seen = np.maximum(counts, 1)
    mean = sums / seen
    var = np.maximum(squares / seen - mean**2, 0.0) * seen / np.maximum(seen - 1, 1)
    return mean, var, counts


def _worst_decile(means: npt.NDArray[np.float64]) -> float:
    k = max(1, len(means) // 10)
    return float(np.sort(means)[:k].mean())


def evaluate_beyond(
    policies: dict[str, Agent],
    env_id: str,
    env_kwargs: dict[str, Any],
    *,
    users: int = 400,
    dialogues_per_user: int = 10,
    seed: int = BEYOND_SEED,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Figures of each policy (``contextual``, ``agnostic``, ``oracle``...) on both populations."""
    populations = {
        "box": box_users(users, seed),
        "mixtures": mixture_users(users, seed + 1),
    }
    low, high = widened_box()
    out: dict[str, Any] = {
        "users": users,
        "dialogues_per_user": dialogues_per_user,
        "seed": seed,
        "box": {"low": low.tolist(), "high": high.tolist(), "parameters": list(PARAMETERS)},
        "populations": {},
    }
    for name, params in populations.items():
        kwargs = {**env_kwargs, "segments": point_profiles(params, name)}
        rows: dict[str, Any] = {}
        per_user: dict[str, tuple[npt.NDArray[np.float64], ...]] = {}
        for who, agent in policies.items():
            rec = play(
                agent,
                env_id,
                kwargs,
                users * dialogues_per_user,
                seed=seed + 2,
                max_turns_id=1,
                progress=progress,
                final_key="user_act",
            )
            per_user[who] = _per_user(rec, users)
            seen = per_user[who][2] > 0
            rows[who] = {
                "dialogues": len(rec.returns),
                "mean_return": float(rec.returns.mean()),
                "success_rate": float(rec.success.mean()),
                "hangup_rate": float((rec.final == UserAct.HANGUP).mean()),
                "mean_turns": float(rec.lengths.mean()),
                "worst_decile_return": _worst_decile(per_user[who][0][seen]),
            }
            if isinstance(agent, GatedAgent):
                rows[who]["unknown_turn_share"] = agent.gated / max(agent.turns, 1)
                agent.gated = agent.turns = 0
        for who in [w for w in per_user if w not in ("agnostic", "oracle")]:
            if "agnostic" not in per_user:
                break
            (cm, cv, cn), (am, av, an) = per_user[who], per_user["agnostic"]
            both = (cn > 1) & (an > 1)
            diff = cm[both] - am[both]
            se = np.sqrt(cv[both] / cn[both] + av[both] / an[both])
            rows[who]["no_harm"] = {
                "users_compared": int(both.sum()),
                "share_not_worse": float((diff >= -2 * se).mean()),
                "share_ahead": float((diff > 0).mean()),
                "difference_p10": float(np.percentile(diff, 10)),
                "mean_difference": float(diff.mean()),
                "worst_decile_gap": rows[who]["worst_decile_return"] - rows["agnostic"]["worst_decile_return"],
            }
        out["populations"][name] = rows
    return out


def beyond_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The bars of the no-harm issue on each population, for every policy compared with the agnostic one."""
    checks = []
    for name, rows in results["populations"].items():
        for who, c in rows.items():
            if "no_harm" not in c:
                continue
            a, gap = rows["agnostic"], c["no_harm"]["worst_decile_gap"]
            checks.append({
                "name": f"{name}: {who} mean return >= agnostic",
                "pass": c["mean_return"] >= a["mean_return"],
                "detail": f"{c['mean_return']:.2f} vs {a['mean_return']:.2f}",
            })  # fmt: skip
            checks.append({
                "name": f"{name}: {who} worst decile no more than 1.0 below the agnostic's",
                "pass": gap >= -1.0,
                "detail": f"{c['worst_decile_return']:.2f} vs {a['worst_decile_return']:.2f} ({gap:+.2f})",
            })  # fmt: skip
    return checks


# -- knowing when the user fits no segment -------------------------------------------------------
FIT_SEED = 6_000_001  # the held-in users the thresholds are calibrated on (no evaluation uses it)
FIT_QUANTILE = 0.97  # a held-in user is "unknown" after a turn w.p. about 1 - this (chosen, not tuned)


def fit_distance(agent: Agent, belief: BatchBelief) -> npt.NDArray[np.float64]:
    """``(B,)`` squared distance of each belief to its nearest segment prototype (of its turn count)."""
    d2, _ = agent.prototype_distances(belief)
    return d2.min(-1).values.double().numpy()


def calibrate_fit(
    agent: Agent, env_id: str, env_kwargs: dict[str, Any], *, episodes: int = 1500, seed: int = 0
) -> list[float]:
    """Per turn count (1..K of the prototypes), the ``FIT_QUANTILE`` of the held-in users' fit
    distance: beyond it a conversation fits no known segment."""
    assert agent.prototypes is not None
    turns = agent.prototypes.shape[0]
    envs = make_vec(env_id, min(episodes, 500), **{**env_kwargs, "segments": list(agent.segments)})
    obs, info = envs.reset(seed=seed)
    belief = agent.initial_state(envs.num_envs)
    assert isinstance(belief, BatchBelief)
    seen: list[list[float]] = [[] for _ in range(turns)]
    finished = 0
    while finished < episodes:
        acts = agent.step(obs, info["action_mask"], belief)
        d = fit_distance(agent, belief)
        k = (belief.turns.numpy() - 1).clip(0, turns - 1)
        for j in range(turns):
            seen[j].extend(d[k == j].tolist())
        obs, _, terminated, truncated, info = envs.step(acts)
        ended = np.asarray(terminated | truncated)
        finished += int(ended.sum())
        if ended.any():
            belief.reset(torch.as_tensor(ended))
    envs.close()
    return [float(np.quantile(s, FIT_QUANTILE)) if s else float("inf") for s in seen]


class GatedAgent(Agent):
    """The contextual policy while the conversation fits a known segment, the agnostic one where it
    fits none (its fit distance beyond the calibrated threshold of its turn count)."""

    def __init__(self, contextual: Agent, fallback: Agent, thresholds: list[float]) -> None:
        super().__init__(contextual.model, contextual.card)
        self.fallback = fallback
        self.thresholds = torch.tensor(thresholds, dtype=torch.float64)
        self.gated = 0
        self.turns = 0

    def unknown(self, belief: BatchBelief) -> npt.NDArray[np.bool_]:
        """Which conversations fit no known segment after their latest turn."""
        k = (belief.turns.clamp(min=1) - 1).clamp(max=len(self.thresholds) - 1)
        return fit_distance(self, belief) > self.thresholds[k].numpy()

    def step(
        self,
        obs: npt.NDArray[np.float32],
        mask: npt.NDArray[np.integer],
        belief: PolicyState,
        *,
        task: npt.NDArray[np.floating] | None = None,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> npt.NDArray[np.int64]:
        acts = super().step(obs, mask, belief, task=task, deterministic=deterministic, generator=generator)
        assert isinstance(belief, BatchBelief)
        unknown = self.unknown(belief)
        self.gated += int(unknown.sum())
        self.turns += len(unknown)
        if unknown.any():
            other = self.fallback.step(
                obs, mask, self.fallback.initial_state(len(obs)), deterministic=deterministic, generator=generator
            )
            acts = np.where(unknown, other, acts)
        return acts
