"""``--simulate``: simulated users logged like the service, and the report's figures against that database.

- The recorded read-outs are the policy's own: the same users played by ``metarl_core``'s
  ``play`` (same seed and batch) give the same conversation lengths and top-segment confidences.
- The JSON figures match the database, read back with plain SQL.
- The shipped checkpoint's segment probabilities are calibrated: ECE <= 0.05 over every read-out
  of 2,000 simulated held-in users per segment (the issue's bar).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from dialogue import analytics
from dialogue.service import db
from dialogue.service.settings import DEFAULT_MODEL
from metarl_core.evaluation import play
from metarl_core.inference import Agent
from segdial.reporting import simulate_to_database

PER_SEGMENT = 60  # conftest.SIMULATED_PER_SEGMENT
SEED, BATCH = 5, 30


def figures_of(url: str, agent: Agent) -> dict:
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as session:
            assert agent.card is not None
            return analytics.all_figures(
                session, analytics.Window(), segments=agent.segments, prototypes=agent.card.prototypes
            )
    finally:
        engine.dispose()


def rows(url: str, query: str) -> list[tuple]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def test_the_logged_readouts_are_the_policys_own(simulated_url: str, agent: Agent) -> None:
    assert agent.card is not None
    engine = db.make_engine(simulated_url)
    with db.session_factory(engine)() as session:
        readouts = analytics._readouts(session, analytics.Window())
        truth = dict(session.execute(sa.select(db.Conversation.id, db.Conversation.true_segment)).all())
    engine.dispose()
    for k, segment in enumerate(agent.segments):
        logged = sorted(
            tuple(round(r.top[1], 5) for r in seq) for cid, seq in readouts.items() if truth[cid] == segment
        )
        rec = play(
            agent,
            agent.card.env_id,
            {**agent.card.env_kwargs, "segments": [segment]},
            PER_SEGMENT,
            seed=SEED + 1000 * k,
            batch=BATCH,
            label_map=np.array([k]),
            max_turns_id=agent.card.env_kwargs["max_turns"],
        )
        played = sorted(tuple(np.round(rec.confidence[i, : rec.lengths[i]], 5)) for i in range(len(rec.lengths)))
        assert len(logged) == PER_SEGMENT
        assert logged == played, segment


def test_the_json_figures_match_the_database(simulated_url: str, agent: Agent) -> None:
    figures = figures_of(simulated_url, agent)
    per_segment = dict(rows(simulated_url, "SELECT segment, COUNT(*) FROM conversations GROUP BY segment"))
    assert figures["segment_mix"]["totals"] == per_segment
    assert figures["overview"]["conversations"] == 3 * PER_SEGMENT == figures["overview"]["simulated"]
    assert figures["overview"]["user_turns"] == rows(simulated_url, "SELECT COUNT(*) FROM turns")[0][0]
    outcomes = figures["outcomes"]["segments"]
    for segment, success, mean_return, turns, abandoned in rows(
        simulated_url,
        "SELECT segment, AVG(CASE WHEN outcome = 'success' THEN 1.0 ELSE 0.0 END), AVG(episode_return), "
        "AVG(turn_count), AVG(CASE WHEN outcome = 'abandoned' THEN 1.0 ELSE 0.0 END) "
        "FROM conversations GROUP BY segment",
    ):
        assert outcomes[segment]["success_rate"] == pytest.approx(success)
        assert outcomes[segment]["mean_return"] == pytest.approx(mean_return)
        assert outcomes[segment]["mean_turns"] == pytest.approx(turns)
        assert outcomes[segment]["hangup_rate"] == pytest.approx(abandoned)  # every simulated hang-up is abandoned
    pairs = Counter(
        {
            (t, s): n
            for t, s, n in rows(
                simulated_url, "SELECT true_segment, segment, COUNT(*) FROM conversations GROUP BY 1, 2"
            )
        }
    )
    conf = figures["confusion"]
    assert conf["counts"] == [[pairs[(t, s)] for s in conf["inferred"]] for t in conf["true"]]
    # Read-outs: every turn but the closing bye / hang-up turns.
    closing = rows(simulated_url, "SELECT COUNT(*) FROM turns WHERE system_act = 'bye' AND user_acts != '[]'")[0][0]
    assert figures["calibration"]["readouts"] == figures["overview"]["user_turns"] - closing
    # Each conversation's last turn holds the read-out the conversation row names.
    last = rows(
        simulated_url,
        "SELECT c.segment, c.confidence, t.segment_probabilities FROM conversations c "
        "JOIN turns t ON t.conversation_id = c.id AND t.turn_index = c.turn_count - 1",
    )
    for segment, confidence, probabilities in last:
        probs = json.loads(probabilities)  # raw SQL on SQLite: the JSON column's text
        assert max(probs, key=probs.get) == segment and max(probs.values()) == pytest.approx(confidence)


def test_simulation_refuses_a_policy_without_prototypes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a contextual policy"):
        simulate_to_database(DEFAULT_MODEL / "comparators" / "agnostic", f"sqlite:///{tmp_path / 'x.db'}", 5)
    with pytest.raises(ValueError, match="no prototype for impatient_novice"):
        simulate_to_database(DEFAULT_MODEL, f"sqlite:///{tmp_path / 'y.db'}", 5, segments=["impatient_novice"])


def test_the_shipped_policy_is_calibrated_on_held_in_users(tmp_path: Path, agent: Agent) -> None:
    url = f"sqlite:///{tmp_path / 'calibration.db'}"
    simulate_to_database(DEFAULT_MODEL, url, 2000, seed=11)
    cal = figures_of(url, agent)["calibration"]
    assert cal["conversations"] == 6000
    assert cal["readouts"] > 6000 * 4  # every user turn, not only the first
    assert cal["ece"] <= analytics.ECE_BAR, cal["ece"]
