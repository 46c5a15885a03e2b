"""``segdial report``: the figures from a database (production logs, or simulated users) to a page.

``make_report`` reads a database through ``dialogue.analytics``, writes the page and the JSON with
``dialogue.report`` and, when asked, renders the page in headless Chromium and checks it.

``simulate_to_database`` is the ``--simulate`` path: it plays a checkpoint and logs it like the service.

The checkpoint's ``Agent`` plays the simulators' vectorised environment (users of each segment the
checkpoint knows, its card's domain and turn limit, greedy acts as the service plays). Every
conversation is written to a database with the service's own tables and in the service's shape:
one turn row per user turn with the segment probabilities and belief after it, and a closing turn
(system act ``bye``, belief unchanged) when the user says goodbye or hangs up. Two columns only a
simulation knows are filled in too: the user's true segment and the episode's return. The report
then reads this database through ``dialogue.analytics`` exactly as it reads production logs.

Each environment column plays the same number of whole conversations, so short conversations are
not over-represented. Conversations get timestamps spread over the 24 hours before ``end``, in a
seeded random order of segments, so the segment mix over time has something to show.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from dialogue import analytics
from dialogue.acts import SystemAct, UserAct
from dialogue.report import write_report
from dialogue.service import db
from dialogue.service.startup import BAD_INPUT, OUTSIDE, database_failure
from metarl_core.evaluation import make_vec
from metarl_core.inference import Agent, CheckpointError
from segdial.render import RenderError, RenderResult, render_page

SIMULATOR_CLIENT = "simulated users (segdial report --simulate)"
_CLOSING = {int(UserAct.BYE): "bye", int(UserAct.HANGUP): "hangup"}


@dataclass
class _Episode:
    segment: str
    episode_return: float
    success: bool
    closing_act: str | None  # the user's last act when it ends the conversation (bye, hangup)
    turns: list[tuple[int, list[float], list[float], list[float], int]] = field(default_factory=list)
    # per user turn: system act, segment probabilities, belief eta, belief precision, turns seen

    @property
    def outcome(self) -> str:
        if self.success:
            return "success"
        return "abandoned" if self.closing_act == "hangup" else "failure"


def play_segment(
    agent: Agent,
    segment: str,
    conversations: int,
    *,
    seed: int,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> list[_Episode]:
    """At least ``conversations`` conversations with users of ``segment`` (a multiple of the batch)."""
    card = agent.card
    assert card is not None
    b = min(batch, conversations)
    quota = math.ceil(conversations / b)
    envs = make_vec(card.env_id, b, **{**card.env_kwargs, "segments": [segment]})
    obs, info = envs.reset(seed=seed)
    belief = agent.initial_belief(b)
    open_turns: list[list[Any]] = [[] for _ in range(b)]
    done_count = np.zeros(b, dtype=np.int64)
    episodes: list[_Episode] = []
    while (done_count < quota).any():
        act = agent.step(obs, info["action_mask"], belief)
        probs = agent.segment_probabilities(belief).tolist()
        eta, precision, seen = belief.eta.tolist(), belief.precision.tolist(), belief.turns.tolist()
        for i in range(b):
            open_turns[i].append((int(act[i]), probs[i], eta[i], precision[i], seen[i]))
        obs, _, terminated, truncated, info = envs.step(act)
        ended = np.asarray(terminated | truncated)
        for i in map(int, np.nonzero(ended)[0]):
            if done_count[i] < quota:
                closing = _CLOSING.get(int(info["user_act"][i])) if terminated[i] else None
                episodes.append(
                    _Episode(
                        str(info["episode_segment"][i]),
                        float(info["episode_return"][i]),
                        bool(info["success"][i]),
                        closing,
                        open_turns[i],
                    )
                )
                done_count[i] += 1
                if progress is not None:
                    progress(1)
            open_turns[i] = []
        belief.reset(torch.as_tensor(ended))
    return episodes


def simulate_to_database(
    checkpoint: str | Path,
    url: str,
    conversations: int,
    *,
    seed: int = 0,
    segments: Sequence[str] | None = None,
    end: datetime | None = None,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Play ``conversations`` users per segment and log them into the (new or empty) database at ``url``.

    ``progress`` hears of every finished conversation, ``total`` once of how many there will be.
    Returns what was simulated (checkpoint, segments, conversations per segment, seed).
    """
    agent = Agent.load(checkpoint)
    if not agent.contextual or agent.prototypes is None or agent.card is None:
        raise ValueError(f"{checkpoint} is not a contextual policy with segment prototypes")
    names = list(segments or agent.segments)
    unknown = [s for s in names if s not in agent.segments]
    if unknown:
        raise ValueError(
            f"the checkpoint has no prototype for {', '.join(unknown)}; it knows {', '.join(agent.segments)}"
        )
    if total is not None:
        total(len(names) * math.ceil(conversations / min(batch, conversations)) * min(batch, conversations))
    episodes = [
        ep
        for k, seg in enumerate(names)
        for ep in play_segment(agent, seg, conversations, seed=seed + 1000 * k, batch=batch, progress=progress)
    ]
    order = np.random.default_rng(seed).permutation(len(episodes))
    end = (end or datetime.now(UTC)).astimezone(UTC)
    spacing = timedelta(days=1) / max(len(episodes), 1)
    start = end - spacing * len(episodes)
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        with db.session_factory(db.writer(engine))() as session:
            client = db.ApiKey(name=SIMULATOR_CLIENT, key_hash=secrets.token_hex(32))  # a key no one holds
            session.add(client)
            session.flush()
            conv_rows, turn_rows = [], []
            for slot, index in enumerate(order):
                conv, turns = _rows(episodes[index], agent, client.id, start + slot * spacing)
                conv_rows.append(conv)
                turn_rows.extend(turns)
            session.execute(insert(db.Conversation), conv_rows)
            session.execute(insert(db.Turn), turn_rows)
            session.commit()
    finally:
        engine.dispose()
    return {
        "checkpoint": str(checkpoint),
        "segments": names,
        "conversations_per_segment": len(episodes) // max(len(names), 1),
        "seed": seed,
        "domain": agent.card.env_kwargs.get("domain"),
    }


def _rows(ep: _Episode, agent: Agent, client_id: int, created: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The conversation row and its turn rows, shaped as the service stores them."""
    conv_id = str(uuid.uuid4())
    turns = list(ep.turns)
    if ep.closing_act is not None:  # the service stores the user's goodbye as a turn answered with bye
        _, probs, eta, precision, seen = turns[-1]
        turns.append((int(SystemAct.BYE), probs, eta, precision, seen))
    rows = []
    for index, (act, probs, eta, precision, seen) in enumerate(turns):
        closing = ep.closing_act is not None and index == len(turns) - 1
        readout = dict(zip(agent.segments, probs, strict=True))
        rows.append(
            {
                "conversation_id": conv_id,
                "turn_index": index,
                "user_acts": [{"act": ep.closing_act}] if closing else [],
                "system_act": SystemAct(act).name.lower(),
                "system_text": "",
                "belief": {"eta": eta, "precision": precision, "turns": seen},
                "segment_probabilities": readout,
                "reply": {},
                "latency_ms": 0.0,
                "created_at": created + timedelta(seconds=index),
            }
        )
    last = dict(zip(agent.segments, turns[-1][1], strict=True))
    segment = max(last, key=lambda s: last[s])
    ended = created + timedelta(seconds=len(turns))
    conv = {
        "id": conv_id,
        "api_key_id": client_id,
        "domain": str(agent.card.env_kwargs.get("domain", "restaurant")) if agent.card else "restaurant",
        "created_at": created,
        "updated_at": ended,
        "state": {"simulated": True},
        "turn_count": len(turns),
        "segment": segment,
        "confidence": last[segment],
        "ended_at": ended,
        "outcome": ep.outcome,
        "true_segment": ep.segment,
        "episode_return": ep.episode_return,
    }
    return conv, rows


# -- the report -------------------------------------------------------------------------------
class ReportError(ValueError):
    """A report that cannot be made: bad window, unreadable database, bad checkpoint, bad page.

    ``status`` is the exit status: 2 for bad input, 1 when the database cannot be reached or is not migrated."""

    def __init__(self, message: str, status: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ReportResult:
    page: Path
    figures_path: Path
    figures: dict[str, Any]
    rendered: RenderResult | None = None


def parse_window(since: str | None, until: str | None) -> analytics.Window:
    """ISO 8601 bounds (UTC when no offset is given) -> a window; ReportError names a bad one."""
    bounds = []
    for name, text in (("--since", since), ("--until", until)):
        try:
            bounds.append(analytics.parse_time(text) if text else None)
        except ValueError as e:
            raise ReportError(f"{name} {e}") from None
    window = analytics.Window(bounds[0], bounds[1])
    if window.since and window.until and window.since >= window.until:
        raise ReportError(f"the window is empty: --since ({window.since.isoformat()}) is not before --until")
    return window


def check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ReportError(f"--threshold must be in (0, 1], got {threshold}")


def open_database(url: str) -> Engine:
    """An engine on an existing database at the current schema (the report only reads)."""
    try:
        parsed = make_url(url)
    except Exception as e:  # SQLAlchemy raises ArgumentError and ValueError alike for bad URLs
        raise ReportError(f"{db.safe_url(url)!r} is not a database URL") from e
    on_disk = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if on_disk and not Path(str(parsed.database)).is_file():
        raise ReportError(f"no database file at {parsed.database}")
    try:
        engine = db.make_engine(url)
        revision = db.current_revision(engine)
    except (SQLAlchemyError, ImportError) as e:
        failure = database_failure(e, url)
        raise ReportError(str(failure), failure.status) from e
    if revision is None:
        engine.dispose()
        shown = db.safe_url(url)
        raise ReportError(
            f"{shown} has no segdial tables: run `segdial db upgrade` with SEGDIAL_DATABASE_URL={shown}", OUTSIDE
        )
    try:
        db.check_schema(engine)
    except db.SchemaError as e:
        engine.dispose()
        raise ReportError(str(e), OUTSIDE) from e
    return engine


def make_report(
    out: Path,
    url: str,
    window: analytics.Window,
    *,
    model: str | Path | None,
    description: str,
    threshold: float = analytics.DEFAULT_THRESHOLD,
    png: Path | None = None,
) -> ReportResult:
    """Figures of ``window`` from the database at ``url`` -> ``out/report.html`` and ``out/figures.json``.

    ``model`` (a checkpoint) gives the segment order, the prototypes of the trajectory plot and the
    method comparison (its ``eval/evaluation.json``); ``png`` renders and checks the page.
    """
    check_threshold(threshold)
    segments: list[str] = []
    prototypes: list[Any] = []
    if model is not None:
        try:
            card = Agent.load(model).card
        except CheckpointError as e:
            raise ReportError(str(e)) from e
        if card is not None:
            segments, prototypes = list(card.segments), list(card.prototypes)
    engine = open_database(url)
    try:
        with db.session_factory(engine)() as session:
            figures = analytics.all_figures(
                session, window, segments=segments, prototypes=prototypes, model_path=model, threshold=threshold
            )
    finally:
        engine.dispose()
    figures["source"] = {"description": description, "database": make_url(url).render_as_string(hide_password=True)}
    page, data = write_report(figures, out)
    result = ReportResult(page, data, figures)
    if png is not None:
        try:
            result.rendered = render_page(page, png)
        except RenderError as e:
            raise ReportError(str(e)) from e
    return result
