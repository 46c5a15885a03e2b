"""Segment-adaptation analytics: the figures an analyst reads, computed from the service's database.

One function per figure, each ``figure(session, window, ...) -> dict`` of plain JSON values. The
report (``dialogue.report``, ``segdial report``) and the HTTP API (``/v1/analytics``) both call
these functions, so they give the same numbers for the same window. Simulated conversations
(``segdial report --simulate``) are written to the same tables, with the user's true segment and
the episode's return in columns a real conversation leaves empty, so one path serves both.

Definitions (the report prints them):

- A conversation is in the window when ``since <= created_at < until`` (either bound may be open;
  a window with ``since >= until`` is empty). The bounds are ISO 8601 times from year
  1900 to 2999 (``parse_time``); naive times are UTC.
- A *read-out* is the segment probabilities after a user turn that updated the belief. A closing
  bye or hang-up turn, which the service answers without updating the belief, repeats the last
  read-out and is not counted again.
- The *inferred segment* of a conversation is its last read-out's most probable segment.
- The *reference segment* is the true segment where it is known (simulated users), otherwise the
  inferred segment.
- *Turns to identification*: the smallest k such that every read-out from user turn k to the end
  names the reference segment with probability >= ``threshold``; "never" when the last one does not.
- *Hang-up*: the user's last act is a hang-up, or the conversation's outcome is ``abandoned``.
- *Calibration* (conversations with a known true segment): top-label expected calibration error,
  ECE = sum over equal-width confidence bins of (share of read-outs in the bin) x |accuracy -
  mean confidence|, over every read-out, where confidence is the largest probability and a
  read-out is correct when that segment is the true one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from dialogue.service import db

UNIDENTIFIED = "unidentified"  # conversations without a read-out yet (no user turn)
DEFAULT_THRESHOLD = 0.8
DEFAULT_BINS = 15
ECE_BAR = 0.05


@dataclass(frozen=True)
class Window:
    """Which conversations a figure covers: ``since <= created_at < until``, and optionally one client.

    Naive datetimes are read as UTC. ``client_id`` limits the figures to one API client's
    conversations (the HTTP API does this); None covers every client (the report).
    """

    since: datetime | None = None
    until: datetime | None = None
    client_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "since", _utc(self.since))
        object.__setattr__(self, "until", _utc(self.until))

    def to_json(self) -> dict[str, str | None]:
        return {k: v.isoformat() if v else None for k, v in (("since", self.since), ("until", self.until))}

    def where(self, query: Select) -> Select:
        """``query`` (over conversations) restricted to the window."""
        c = db.Conversation
        if self.since:
            query = query.where(c.created_at >= self.since)
        if self.until:
            query = query.where(c.created_at < self.until)
        if self.client_id is not None:
            query = query.where(c.api_key_id == self.client_id)
        return query


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    if not MIN_YEAR <= t.year <= MAX_YEAR:  # also keeps the conversion to UTC from overflowing
        raise ValueError(f"{t.isoformat()} is outside the years {MIN_YEAR} to {MAX_YEAR}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


MIN_YEAR, MAX_YEAR = 1900, 2999
# ISO 8601 as the API takes it: a calendar date (years MIN_YEAR to MAX_YEAR), optionally a time
# (hours and minutes, optional seconds and fraction) and a UTC offset. Exact: every string it
# matches is a real date that ``datetime.fromisoformat`` reads, so the schema can promise it.
_LEAP = r"(19(0[48]|[2468][048]|[13579][26])|2[0-9](0[48]|[2468][048]|[13579][26])|2000|2400|2800)"
_DATE = (
    r"((19|2[0-9])[0-9][0-9]-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|02-(0[1-9]|1[0-9]|2[0-8]))|" + _LEAP + r"-02-29)"
)
_TIME = r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?"
ISO_TIME_PATTERN = f"^{_DATE}{_TIME}$"
_ISO_TIME = re.compile(_DATE + _TIME)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as ``ISO_TIME_PATTERN`` takes it (a bare number is not one); ValueError otherwise."""
    if not _ISO_TIME.fullmatch(text):
        raise ValueError(
            f"{text!r} is not an ISO 8601 time from {MIN_YEAR} to {MAX_YEAR} (e.g. 2025-01-31 or 2025-01-31T12:00Z)"
        )
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- reading the database ---------------------------------------------------------------------
@dataclass
class _Conversation:
    id: str
    created_at: datetime
    segment: str | None
    turn_count: int
    outcome: str | None
    true_segment: str | None
    episode_return: float | None

    @property
    def inferred(self) -> str:
        return self.segment or UNIDENTIFIED

    @property
    def reference(self) -> str:
        return self.true_segment or self.inferred


def _conversations(session: Session, window: Window, *, simulated_only: bool = False) -> list[_Conversation]:
    c = db.Conversation
    query = select(c.id, c.created_at, c.segment, c.turn_count, c.outcome, c.true_segment, c.episode_return).order_by(
        c.created_at, c.id
    )
    if simulated_only:
        query = query.where(c.true_segment.is_not(None))
    return [
        _Conversation(cid, _utc(created) or created, segment, turns, outcome, true_segment, ret)
        for cid, created, segment, turns, outcome, true_segment, ret in session.execute(window.where(query))
    ]


@dataclass
class _Readout:
    probabilities: dict[str, float]
    belief: dict[str, Any]

    @property
    def top(self) -> tuple[str, float]:
        segment = max(self.probabilities, key=lambda s: self.probabilities[s])
        return segment, float(self.probabilities[segment])


def _readouts(
    session: Session, window: Window, *, simulated_only: bool = False, ids: Sequence[str] | None = None
) -> dict[str, list[_Readout]]:
    """Each conversation's read-outs in turn order (see the module docstring); ``ids`` narrows it."""
    t, c = db.Turn, db.Conversation
    query = window.where(
        select(t.conversation_id, t.segment_probabilities, t.belief)
        .join(c, c.id == t.conversation_id)
        .order_by(t.conversation_id, t.turn_index)
    )
    if simulated_only:
        query = query.where(c.true_segment.is_not(None))
    if ids is not None:
        query = query.where(t.conversation_id.in_(ids))
    out: dict[str, list[_Readout]] = {}
    seen: dict[str, int] = {}
    for conversation_id, probabilities, belief in session.execute(query):
        turns = int(belief.get("turns", 0))
        if not probabilities or turns <= seen.get(conversation_id, 0):
            continue
        seen[conversation_id] = turns
        out.setdefault(conversation_id, []).append(_Readout(probabilities, belief))
    return out


def _last_user_acts(session: Session, window: Window) -> dict[str, list[str]]:
    t, c = db.Turn, db.Conversation
    query = window.where(
        select(t.conversation_id, t.user_acts)
        .join(c, c.id == t.conversation_id)
        .where(t.turn_index == c.turn_count - 1)
    )
    return {cid: [str(a.get("act", "")).lower() for a in acts or []] for cid, acts in session.execute(query)}


def _segment_order(names: Iterable[str], known: Sequence[str] = ()) -> list[str]:
    """``known`` segments first (the policy's order), then any other name, 'unidentified' last."""
    names = set(names)
    rest = sorted(n for n in names if n not in known and n != UNIDENTIFIED)
    return [s for s in known if s in names] + rest + ([UNIDENTIFIED] if UNIDENTIFIED in names else [])


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


# -- the figures ------------------------------------------------------------------------------
def overview(session: Session, window: Window) -> dict[str, Any]:
    """How many conversations and user turns the window holds, and how many are simulated."""
    convs = _conversations(session, window)
    return {
        "conversations": len(convs),
        "user_turns": sum(c.turn_count for c in convs),
        "simulated": sum(c.true_segment is not None for c in convs),
        "first": convs[0].created_at.isoformat() if convs else None,
        "last": convs[-1].created_at.isoformat() if convs else None,
    }


def segment_mix(session: Session, window: Window, segments: Sequence[str] = ()) -> dict[str, Any]:
    """Conversations per inferred segment per hour (a span up to two days) or per day."""
    convs = _conversations(session, window)
    if not convs:
        return {"bucket": None, "buckets": [], "segments": [], "counts": {}, "totals": {}}
    first, last = convs[0].created_at, convs[-1].created_at
    hourly = last - first <= timedelta(days=2)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    start = first.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        start = start.replace(hour=0)
    n = int((last - start) // step) + 1
    order = _segment_order((c.inferred for c in convs), segments)
    counts = {s: [0] * n for s in order}
    for conv in convs:
        counts[conv.inferred][int((conv.created_at - start) // step)] += 1
    return {
        "bucket": "hour" if hourly else "day",
        "buckets": [(start + i * step).isoformat() for i in range(n)],
        "segments": order,
        "counts": counts,
        "totals": {s: sum(v) for s, v in counts.items()},
    }


def turns_to_identification(
    session: Session, window: Window, threshold: float = DEFAULT_THRESHOLD, segments: Sequence[str] = ()
) -> dict[str, Any]:
    """Histogram of turns to identification per reference segment (definition in the module docstring)."""
    convs = _conversations(session, window)
    readouts = _readouts(session, window)
    found: dict[str, list[int | None]] = {}
    for conv in convs:
        seq = readouts.get(conv.id)
        if seq:
            found.setdefault(conv.reference, []).append(_identified_at(seq, conv.reference, threshold))
    max_turn = max((k for ks in found.values() for k in ks if k is not None), default=0)
    per_segment = {}
    for seg in _segment_order(found, segments):
        ks = found[seg]
        hits = [k for k in ks if k is not None]
        per_segment[seg] = {
            "conversations": len(ks),
            "histogram": [hits.count(k) for k in range(1, max_turn + 1)],
            "never": len(ks) - len(hits),
            "identified_share": len(hits) / len(ks),
            "mean": _mean(hits),
            "median": float(np.median(hits)) if hits else None,
        }
    return {
        "threshold": threshold,
        "reference": _reference_kind(convs),
        "max_turn": max_turn,
        "segments": per_segment,
    }


def _reference_kind(convs: Sequence[_Conversation]) -> str:
    simulated = sum(c.true_segment is not None for c in convs)
    if not convs:
        return "true segment where known, else inferred segment"
    if simulated == len(convs):
        return "true segment"
    return "inferred segment" if simulated == 0 else "true segment where known, else inferred segment"


def _identified_at(seq: Sequence[_Readout], reference: str, threshold: float) -> int | None:
    k = None
    for i in range(len(seq) - 1, -1, -1):
        segment, p = seq[i].top
        if segment != reference or p < threshold:
            break
        k = i + 1
    return k


def outcomes_by_segment(session: Session, window: Window, segments: Sequence[str] = ()) -> dict[str, Any]:
    """Per inferred segment: conversations, success rate (of those with an outcome), mean return
    (where known: simulated users), mean user turns and hang-up rate."""
    convs = _conversations(session, window)
    last_acts = _last_user_acts(session, window)
    groups: dict[str, list[_Conversation]] = {}
    for conv in convs:
        groups.setdefault(conv.inferred, []).append(conv)
    out = {}
    for seg in _segment_order(groups, segments):
        rows = groups[seg]
        with_outcome = [c for c in rows if c.outcome is not None]
        returns = [c.episode_return for c in rows if c.episode_return is not None]
        hangups = [c for c in rows if c.outcome == "abandoned" or "hangup" in last_acts.get(c.id, [])]
        out[seg] = {
            "conversations": len(rows),
            "with_outcome": len(with_outcome),
            "success_rate": _mean([c.outcome == "success" for c in with_outcome]),
            "mean_return": _mean(returns),
            "with_return": len(returns),
            "mean_turns": _mean([c.turn_count for c in rows]),
            "hangup_rate": len(hangups) / len(rows),
        }
    return {"segments": out}


def confusion(session: Session, window: Window, segments: Sequence[str] = ()) -> dict[str, Any]:
    """True segment (rows) against inferred segment (columns), over simulated conversations."""
    convs = _conversations(session, window, simulated_only=True)
    true = _segment_order((c.reference for c in convs), segments)
    inferred = _segment_order([*true, *(c.inferred for c in convs)], segments)
    pairs = Counter((c.reference, c.inferred) for c in convs)
    return {
        "conversations": len(convs),
        "true": true,
        "inferred": inferred,
        "counts": [[pairs[(t, i)] for i in inferred] for t in true],
        "accuracy": _mean([c.reference == c.inferred for c in convs]),
    }


def calibration(session: Session, window: Window, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Top-label ECE and the reliability diagram over every read-out of simulated conversations."""
    convs = _conversations(session, window, simulated_only=True)
    truth = {c.id: c.reference for c in convs}
    readouts = _readouts(session, window, simulated_only=True)
    conf, correct, turn = [], [], []
    for cid, seq in readouts.items():
        for k, r in enumerate(seq, start=1):
            segment, p = r.top
            conf.append(p)
            correct.append(segment == truth[cid])
            turn.append(k)
    c, a, t = np.array(conf), np.array(correct, dtype=float), np.array(turn)
    by_turn = []
    for k in range(1, int(t.max(initial=0)) + 1):
        m = t == k
        if m.any():
            by_turn.append({"turn": k, "readouts": int(m.sum()), **_ece(c[m], a[m], bins)})
    return {
        "bins": bins,
        "conversations": len(readouts),
        "readouts": len(c),
        **_ece(c, a, bins),
        "reliability": _reliability(c, a, bins),
        "by_turn": by_turn,
        "bar": ECE_BAR,
    }


def _bin_index(conf: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((conf * bins).astype(int), bins - 1)


def _reliability(conf: np.ndarray, correct: np.ndarray, bins: int) -> list[dict[str, Any]]:
    idx = _bin_index(conf, bins)
    out = []
    for b in range(bins):
        m = idx == b
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "readouts": int(m.sum()),
                "confidence": float(conf[m].mean()) if m.any() else None,
                "accuracy": float(correct[m].mean()) if m.any() else None,
            }
        )
    return out


def _ece(conf: np.ndarray, correct: np.ndarray, bins: int) -> dict[str, float | None]:
    if not len(conf):
        return {"ece": None, "accuracy": None, "confidence": None}
    idx = _bin_index(conf, bins)
    ece = 0.0
    for b in np.unique(idx):
        m = idx == b
        ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return {"ece": float(ece), "accuracy": float(correct.mean()), "confidence": float(conf.mean())}


def belief_trajectories(
    session: Session,
    window: Window,
    prototypes: Sequence[Sequence[Sequence[float]]] = (),
    segments: Sequence[str] = (),
    per_segment: int = 3,
) -> dict[str, Any]:
    """Posterior means of a few conversations per reference segment (the earliest with two or more
    read-outs), projected on the two principal axes of the segment prototypes (of every turn
    count), with the prototypes themselves; without prototypes, the axes of the plotted points."""
    # Candidates first (a few per segment with enough turns), so only their turns are read.
    candidates: dict[str, list[_Conversation]] = {}
    for conv in _conversations(session, window):
        group = candidates.setdefault(conv.reference, [])
        if conv.turn_count >= 2 and len(group) < 4 * per_segment:
            group.append(conv)
    convs = sorted((c for group in candidates.values() for c in group), key=lambda c: (c.created_at, c.id))
    readouts = _readouts(session, window, ids=[c.id for c in convs])
    chosen: dict[str, list[_Conversation]] = {}
    for conv in convs:
        picked = chosen.setdefault(conv.reference, [])
        if len(picked) < per_segment and len(readouts.get(conv.id, [])) >= 2:
            picked.append(conv)
    paths = {
        conv.id: np.array([_posterior_mean(r.belief) for r in readouts[conv.id]])
        for group in chosen.values()
        for conv in group
    }
    protos = np.asarray(prototypes, dtype=float)  # (turns, segments, latent)
    if protos.size:
        basis_points = protos.reshape(-1, protos.shape[-1])
    else:
        basis_points = np.concatenate(list(paths.values())) if paths else np.zeros((0, 1))
    if len(basis_points) < 2:
        return {"axes": None, "prototypes": {}, "conversations": []}
    center, axes, explained = _principal_axes(basis_points)

    def project(x: np.ndarray) -> list[list[float]]:
        return ((x - center) @ axes.T).round(4).tolist()

    return {
        "axes": "principal axes of the segment prototypes" if protos.size else "principal axes of the trajectories",
        "explained_variance": explained,
        "prototypes": {s: project(protos[:, i, :]) for i, s in enumerate(segments)} if protos.size else {},
        "conversations": [
            {"id": conv.id, "segment": seg, "inferred": conv.inferred, "points": project(paths[conv.id])}
            for seg in _segment_order(chosen, segments)
            for conv in chosen[seg]
        ],
    }


def _posterior_mean(belief: dict[str, Any]) -> list[float]:
    return [e / p for e, p in zip(belief["eta"], belief["precision"], strict=True)]


def _principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    center = points.mean(0)
    _, s, vt = np.linalg.svd(points - center, full_matrices=False)
    axes = np.zeros((2, points.shape[1]))
    axes[: min(2, len(vt))] = vt[:2]
    var = s**2
    explained = (var[:2] / var.sum()).tolist() if var.sum() > 0 else [0.0, 0.0]
    return center, axes, [float(v) for v in explained]


def method_comparison(model_path: str | Path | None) -> dict[str, Any] | None:
    """The checkpoint's evaluation against its comparators (``segdial evaluate``), when it has one."""
    if model_path is None:
        return None
    path = Path(model_path) / "eval" / "evaluation.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    rows = {}
    for name, row in data.get("task_sets", {}).items():
        rows[name] = {"held_out": bool(row.get("held_out"))} | {
            who: {k: row[who].get(k) for k in ("success_rate", "mean_return", "mean_turns")}
            for who in row
            if isinstance(row[who], dict)
        }
    return {
        "source": str(path),
        "episodes_per_set": data.get("episodes_per_set"),
        "task_sets": rows,
        "mix_mean_return": data.get("mix_mean_return", {}),
    }


def all_figures(
    session: Session,
    window: Window,
    *,
    segments: Sequence[str] = (),
    prototypes: Sequence[Sequence[Sequence[float]]] = (),
    model_path: str | Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """Every figure of the report for one window (what the report's JSON and ``/v1/analytics/report`` hold)."""
    return {
        "window": window.to_json(),
        "overview": overview(session, window),
        "segment_mix": segment_mix(session, window, segments),
        "turns_to_identification": turns_to_identification(session, window, threshold, segments),
        "outcomes": outcomes_by_segment(session, window, segments),
        "confusion": confusion(session, window, segments),
        "calibration": calibration(session, window),
        "trajectories": belief_trajectories(session, window, prototypes, segments),
        "methods": method_comparison(model_path),
    }
