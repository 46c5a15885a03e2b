"""The analytics figures on hand-made conversations whose figures are worked out by hand.

Every test runs on SQLite and on PostgreSQL. The conversations (``LOG``) cover: a late flip of the
most probable segment, a last read-out below the threshold, a closing bye and a hang-up turn
(which must not count as read-outs), an ``abandoned`` outcome, a conversation without any user
turn, a simulated user read as the wrong segment, and a second client.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.orm import Session

from dialogue import analytics
from dialogue.analytics import Window
from dialogue.service import db

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
SEGMENTS = ["power", "core", "casual"]


def p(top: str, prob: float) -> dict[str, float]:
    """Probabilities with ``top`` at ``prob`` and the rest shared by the other segments."""
    return {s: prob if s == top else (1 - prob) / 2 for s in SEGMENTS}


@dataclass
class Logged:
    name: str
    minutes: float
    readouts: list[dict[str, float]]
    true: str | None = None
    outcome: str | None = None
    closing: str | None = None  # bye / hangup: a last turn that repeats the last read-out
    episode_return: float | None = None
    client: str = "main"


LOG = [
    Logged("A", 0, [p("power", 0.5), p("power", 0.9), p("power", 0.95)], "power", "success", "bye", 15.0),
    Logged("B", 10, [p("core", 0.85), p("power", 0.85), p("core", 0.9)], "core", "failure", None, 5.0),
    Logged("G", 30, [p("power", 0.99)], client="other"),
    Logged("C", 65, [p("casual", 0.9), p("casual", 0.7)], "casual", "success", None, 9.0),
    Logged("D", 120, [p("power", 0.6), p("power", 0.85)], closing="hangup"),
    Logged("E", 150, []),
    Logged("H", 170, [p("power", 0.95)], "core", "failure", None, 2.0),
    Logged("F", 180, [p("casual", 0.99)], outcome="abandoned"),
]


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = db.make_engine(database_url)
    with db.session_factory(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def clients(session: Session) -> dict[str, int]:
    """Writes ``LOG``; returns the id of each client."""
    ids = {}
    for name in ("main", "other"):
        key = db.ApiKey(name=name, key_hash=secrets.token_hex(32))
        session.add(key)
        session.flush()
        ids[name] = key.id
    for item in LOG:
        created = T0 + timedelta(minutes=item.minutes)
        turns = [(probs, k + 1, [{"act": "inform"}]) for k, probs in enumerate(item.readouts)]
        if item.closing:
            turns.append((item.readouts[-1], len(item.readouts), [{"act": item.closing}]))
        last = item.readouts[-1] if item.readouts else None
        conv = db.Conversation(
            id=f"00000000-0000-0000-0000-00000000000{item.name}",
            api_key_id=ids[item.client],
            domain="restaurant",
            created_at=created,
            state={},
            turn_count=len(turns),
            segment=max(last, key=lambda s: last[s]) if last else None,
            confidence=max(last.values()) if last else None,
            outcome=item.outcome,
            true_segment=item.true,
            episode_return=item.episode_return,
        )
        session.add(conv)
        for index, (probs, seen, acts) in enumerate(turns):
            conv.turns.append(
                db.Turn(
                    turn_index=index,
                    user_acts=acts,
                    system_act="request",
                    system_text="",
                    belief={"eta": [float(seen), -float(seen)], "precision": [2.0, 2.0], "turns": seen},
                    segment_probabilities=probs,
                    reply={},
                    latency_ms=1.0,
                    created_at=created,
                )
            )
    session.commit()
    return ids


def test_the_segment_mix_counts_conversations_per_hour_and_inferred_segment(
    session: Session, clients: dict[str, int]
) -> None:
    mix = analytics.segment_mix(session, Window(client_id=clients["main"]), SEGMENTS)
    assert mix["bucket"] == "hour"
    assert mix["buckets"] == [(T0 + timedelta(hours=h)).isoformat() for h in range(4)]
    assert mix["segments"] == ["power", "core", "casual", "unidentified"]
    assert mix["counts"] == {
        "power": [1, 0, 2, 0],  # A; D and H
        "core": [1, 0, 0, 0],  # B
        "casual": [0, 1, 0, 1],  # C; F
        "unidentified": [0, 0, 1, 0],  # E has no user turn
    }
    everyone = analytics.segment_mix(session, Window(), SEGMENTS)
    assert everyone["totals"]["power"] == 4  # G, of the other client, too


def test_turns_to_identification_follows_its_definition(session: Session, clients: dict[str, int]) -> None:
    tti = analytics.turns_to_identification(session, Window(client_id=clients["main"]), 0.8, SEGMENTS)
    assert tti["reference"] == "true segment where known, else inferred segment"
    assert tti["max_turn"] == 3
    segs = tti["segments"]
    # A: turn 1 is below 0.8, so 2; D (no true segment: its inferred power): 2.
    assert segs["power"]["histogram"] == [0, 2, 0] and segs["power"]["never"] == 0
    # B flips to power at turn 2 and back: identified from turn 3; H (core read as power): never.
    assert segs["core"]["histogram"] == [0, 0, 1] and segs["core"]["never"] == 1
    # F at once; C's last read-out (0.7) is below the threshold: never.
    assert segs["casual"]["histogram"] == [1, 0, 0] and segs["casual"]["never"] == 1
    assert segs["casual"]["identified_share"] == 0.5
    assert segs["power"]["mean"] == 2.0 and segs["power"]["median"] == 2.0
    assert "unidentified" not in segs  # E has nothing to identify
    looser = analytics.turns_to_identification(session, Window(client_id=clients["main"]), 0.5, SEGMENTS)
    assert looser["segments"]["power"]["histogram"] == [2, 0, 0]
    assert looser["segments"]["casual"]["histogram"] == [2, 0, 0]


def test_outcomes_per_inferred_segment(session: Session, clients: dict[str, int]) -> None:
    out = analytics.outcomes_by_segment(session, Window(client_id=clients["main"]), SEGMENTS)["segments"]
    assert list(out) == ["power", "core", "casual", "unidentified"]
    power = out["power"]  # A (success, 4 turns with its bye), D (hang-up turn, no outcome), H (failure)
    assert power["conversations"] == 3 and power["with_outcome"] == 2
    assert power["success_rate"] == 0.5
    assert power["mean_return"] == pytest.approx(8.5) and power["with_return"] == 2
    assert power["mean_turns"] == pytest.approx((4 + 3 + 1) / 3)
    assert power["hangup_rate"] == pytest.approx(1 / 3)
    casual = out["casual"]  # C (success), F (abandoned: a hang-up)
    assert casual["success_rate"] == 0.5 and casual["hangup_rate"] == 0.5
    assert casual["mean_return"] == 9.0 and casual["with_return"] == 1
    assert out["unidentified"] == {
        "conversations": 1,
        "with_outcome": 0,
        "success_rate": None,
        "mean_return": None,
        "with_return": 0,
        "mean_turns": 0.0,
        "hangup_rate": 0.0,
    }


def test_the_confusion_matrix_covers_simulated_users_only(session: Session, clients: dict[str, int]) -> None:
    conf = analytics.confusion(session, Window(), SEGMENTS)
    assert conf["conversations"] == 4  # A, B, C, H
    assert conf["true"] == SEGMENTS and conf["inferred"] == SEGMENTS
    assert conf["counts"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert conf["accuracy"] == 0.75


def test_calibration_is_the_top_label_ece_over_every_readout(session: Session, clients: dict[str, int]) -> None:
    cal = analytics.calibration(session, Window(), bins=15)
    # Read-outs (confidence, correct): A .5 y, .9 y, .95 y (its bye not counted); B .85 y, .85 n,
    # .9 y; C .9 y, .7 y; H .95 n. Bins of 1/15: {.5}: |1-.5|; {.7}: .3; {.85, .85}: |.5-.85|;
    # {.9 x3}: .1; {.95, .95}: |.5-.95|.
    assert cal["readouts"] == 9 and cal["conversations"] == 4
    assert cal["ece"] == pytest.approx((0.5 + 0.3 + 2 * 0.35 + 3 * 0.1 + 2 * 0.45) / 9)
    assert cal["accuracy"] == pytest.approx(7 / 9)
    filled = {round(b["low"] * 15): (b["readouts"], b["accuracy"]) for b in cal["reliability"] if b["readouts"]}
    assert filled == {7: (1, 1.0), 10: (1, 1.0), 12: (2, 0.5), 13: (3, 1.0), 14: (2, 0.5)}
    assert [t["readouts"] for t in cal["by_turn"]] == [4, 3, 2]


def test_the_window_is_half_open_and_can_be_one_clients(session: Session, clients: dict[str, int]) -> None:
    window = Window(T0 + timedelta(minutes=65), T0 + timedelta(minutes=180), client_id=clients["main"])
    assert analytics.overview(session, window)["conversations"] == 4  # C (at since), D, E, H; not F (at until)
    naive = Window((T0 + timedelta(minutes=65)).replace(tzinfo=None), None)  # naive times are UTC
    assert analytics.overview(session, naive)["conversations"] == 5  # C, D, E, H, F
    assert analytics.overview(session, Window())["conversations"] == len(LOG)
    assert analytics.overview(session, Window(client_id=clients["other"]))["conversations"] == 1
    assert analytics.overview(session, Window(T0, T0))["conversations"] == 0  # an empty window: no conversation
    with pytest.raises(ValueError, match="outside the years"):
        Window(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))  # once an OverflowError


def test_trajectories_project_posterior_means_with_the_prototypes(session: Session, clients: dict[str, int]) -> None:
    # Axes of these prototypes: exactly (1, -1) and (1, 1), up to sign.
    prototypes = [[[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]], [[2.0, -2.0], [0.5, 0.5], [-2.0, 2.0]]]
    traj = analytics.belief_trajectories(session, Window(), prototypes, SEGMENTS, per_segment=1)
    assert traj["axes"] == "principal axes of the segment prototypes"
    chosen = {c["id"][-1]: c for c in traj["conversations"]}
    assert set(chosen) == {"A", "B", "C"}  # the earliest with two read-outs per reference segment
    assert len(chosen["A"]["points"]) == 3  # its bye turn repeats a read-out and is not a point
    assert list(traj["prototypes"]) == SEGMENTS and len(traj["prototypes"]["power"]) == 2
    # The posterior means (k/2, -k/2) lie on the prototypes' first axis: second coordinates agree.
    a = chosen["A"]["points"]
    assert a[0][1] == pytest.approx(a[2][1], abs=1e-3)
    assert abs(a[2][0] - a[0][0]) == pytest.approx(2**0.5, abs=1e-3)  # from (.5, -.5) to (1.5, -1.5)


def test_an_empty_database_gives_empty_figures(session: Session) -> None:
    figures = analytics.all_figures(session, Window(), segments=SEGMENTS)
    assert figures["overview"]["conversations"] == 0
    assert figures["segment_mix"]["buckets"] == []
    assert figures["turns_to_identification"]["segments"] == {}
    assert figures["outcomes"]["segments"] == {}
    assert figures["confusion"]["conversations"] == 0 and figures["confusion"]["accuracy"] is None
    assert figures["calibration"]["ece"] is None and figures["calibration"]["readouts"] == 0
    assert figures["trajectories"]["conversations"] == []
