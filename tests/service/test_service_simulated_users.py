"""Simulated users over HTTP: the service drives the dialogue, the simulators' users answer it.

Each user is a ``SimulatedUser`` (the simulators' environment with its agenda-based user): the
service's ``system_act`` is fed to the user, whose answer (acts as the NLU heard them, and its text)
is the next request. Checked here:

- the service tracks these dialogues exactly as the simulator's own tracker does, so the policy
  sees in production what it saw in training (on SQLite and PostgreSQL);
- the register the service reads from a user's text is the one the simulator gave the policy;
- the segment the service names after at most three user turns is the user's true segment for
  at least 90% of 200 users of each training segment (the bar of the issue).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dialogue.acts import SystemAct
from dialogue.service import db
from dialogue.service.app import create_key
from dialogue.tracker import DialogueState
from simulators.profiles import TRAINING_SEGMENTS

ID_USERS = 200  # users per segment
ID_TURNS = 3  # the read-out after at most this many user turns
ID_BAR = 0.9
TRACED_USERS = 10  # per segment, played to the end, for the tracker comparison


def service_url(kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'segdial.db'}"
        db.upgrade(url)
        return url
    return str(request.getfixturevalue("postgres_url"))


Service = Callable[[str], tuple[TestClient, dict[str, str], str]]


@pytest.fixture(scope="module")
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, make_app: Callable[[str], FastAPI]
) -> Iterator[Service]:
    """``service(kind)``: an app started once for this module on ``sqlite`` or ``postgresql``,
    the headers of a key of its own, and the database URL."""
    started: dict[str, tuple[TestClient, dict[str, str], str]] = {}
    with ExitStack() as stack:

        def get(kind: str) -> tuple[TestClient, dict[str, str], str]:
            if kind not in started:
                url = service_url(kind, tmp_path_factory, request)
                client = stack.enter_context(TestClient(make_app(url)))
                engine = db.make_engine(url)
                with db.session_factory(engine)() as session:
                    key = create_key(session, "simulated users")
                engine.dispose()
                started[kind] = (client, {"X-API-Key": key}, url)
            return started[kind]

        yield get


def post(client: TestClient, headers: dict[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


@dataclass
class TracedTurn:
    """One user turn of a traced dialogue: what the service stored and what the simulator tracked."""

    segment: str
    utterance: str | None
    stored: dict[str, Any]  # the service's tracker after its reply
    expected: dict[str, Any]  # the simulator's tracker after the same user turn and system act
    simulator_register: float


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def traced(request: pytest.FixtureRequest, service: Service, simulated_user: Any) -> list[TracedTurn]:
    """``TRACED_USERS`` users of each segment played to the end through the service."""
    client, headers, url = service(request.param)
    engine = db.make_engine(url)
    out = []
    try:
        for segment in TRAINING_SEGMENTS:
            for seed in range(TRACED_USERS):
                user = simulated_user(segment, seed=1000 + seed)
                cid = post(client, headers, "/v1/conversations", {})["id"]
                while True:
                    body = user.request()
                    reply = post(client, headers, f"/v1/conversations/{cid}/turns", body)
                    mirror = DialogueState.from_dict(
                        user.env.domain, user.env.max_turns, copy.deepcopy(user.env.state.to_dict())
                    )
                    mirror.system_acted(SystemAct[reply["system_act"].upper()])
                    with db.session_factory(engine)() as session:
                        conv = session.get(db.Conversation, cid)
                        assert conv is not None
                        tracker = dict(conv.state["tracker"])
                    out.append(
                        TracedTurn(segment, body.get("text"), tracker, mirror.to_dict(), user.env.state.register)
                    )
                    if not user.answer(reply):
                        break
    finally:
        engine.dispose()
    return out


def test_the_service_tracks_simulated_dialogues_like_the_simulator(traced: list[TracedTurn]) -> None:
    assert len(traced) > 3 * TRACED_USERS * 3
    fields = [f for f in traced[0].expected if f != "register"]
    differences = [
        (i, f, t.stored[f], t.expected[f]) for i, t in enumerate(traced) for f in fields if t.stored[f] != t.expected[f]
    ]
    assert differences == []


def test_the_service_reads_the_register_the_simulator_gave_the_policy(traced: list[TracedTurn]) -> None:
    wrong = [(t.utterance, t.stored["register"], t.simulator_register) for t in traced if t.utterance is not None]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert wrong == [], f"{len(wrong)} of {len(traced)} turns, e.g. {wrong[:5]}"


def identification_rate(service: Service, simulated_user: Any, segment: str, text: str) -> float:
    """The fraction of ``ID_USERS`` users whose segment the service names after <= ``ID_TURNS`` turns."""
    client, headers, _ = service("sqlite")
    hits = 0
    for seed in range(ID_USERS):
        user = simulated_user(segment, seed=seed, text=text)
        cid = post(client, headers, "/v1/conversations", {})["id"]
        for turn in range(1, ID_TURNS + 1):
            reply = post(client, headers, f"/v1/conversations/{cid}/turns", user.request())
            assert reply["turn_index"] == turn - 1
            if turn == ID_TURNS or not user.answer(reply):
                break
        hits += reply["segment"] == segment
    return hits / ID_USERS


@pytest.mark.parametrize("text", ["utterance"])
@pytest.mark.parametrize("segment", TRAINING_SEGMENTS)
def test_the_service_names_the_users_segment_within_three_turns(
    segment: str, text: str, service: Service, simulated_user: Any
) -> None:
    """Acts and the user's own text, as a chatbot backend sends them."""
    rate = identification_rate(service, simulated_user, segment, text)
    print(f"identification of {segment} users after <= {ID_TURNS} turns ({text}): {rate:.3f}")
    assert rate >= ID_BAR, f"{segment} ({text}): {rate:.3f} < {ID_BAR}"
