"""The optimistic turn path: a turn that loses the race to a concurrent turn reads again.

A turn reads the stored state without a lock, runs the policy step, and writes only if the
conversation is still at the turn count it read. Here the race is made to happen every time, not
left to thread timing: while the service computes a turn, the test stores another turn on the same
conversation (through the same ``Runtime``, in the same thread, which also shows that no database
lock is held during the policy step: SQLite's write queue is not re-entrant). On SQLite and on
PostgreSQL (``database_url``). And on PostgreSQL: a pooled connection whose session the server
ended is replaced at checkout, without the round trip of a ping.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dialogue.service import conversations, db
from dialogue.service.conversations import TURN_ATTEMPTS, Runtime, ServiceError, TurnResult, create_key
from dialogue.service.schemas import TurnIn

AREA = TurnIn.model_validate({"acts": [{"act": "inform", "slot": "area", "value": "centre"}]})
FOOD = TurnIn.model_validate({"acts": [{"act": "inform", "slot": "food", "value": "indian", "confidence": 0.8}]})
PRICE = TurnIn.model_validate({"acts": [{"act": "inform", "slot": "pricerange", "value": "cheap"}]})
Stored = Callable[[str], dict[str, Any]]  # the ``stored`` fixture


class Racer:
    """Stores the next of ``bodies`` on the conversation each time the service computes a turn of it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, runtime: Runtime, client_id: int, cid: str) -> None:
        self.runtime, self.client_id, self.cid = runtime, client_id, cid
        self.bodies: Iterator[TurnIn] = iter(())
        self.stored: list[TurnResult] = []
        self.computed = 0
        self._inside = False
        real = conversations.take_turn

        def racing(*args: Any, **kwargs: Any) -> Any:
            self.computed += 1
            if not self._inside and (body := next(self.bodies, None)) is not None:
                self._inside = True  # the racing turn itself computes without a racer
                try:
                    self.stored.append(self.runtime.user_turn(self.client_id, self.cid, body))
                finally:
                    self._inside = False
            return real(*args, **kwargs)

        monkeypatch.setattr(conversations, "take_turn", racing)

    def race(self, *bodies: TurnIn) -> None:
        self.bodies = iter(bodies)

    def turn(self, body: TurnIn) -> TurnResult:
        return self.runtime.user_turn(self.client_id, self.cid, body)


@pytest.fixture(params=[False, True], ids=["interleaved", "serial"])
def runtime(client: TestClient, request: pytest.FixtureRequest) -> Runtime:
    """The app's runtime, and the same one with serial turns (the Rasa in-process backend's)."""
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return dataclasses.replace(rt, serial_turns=True) if request.param else rt


@pytest.fixture
def racer(runtime: Runtime, make_key: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> Racer:
    """A new client's conversation with one turn stored, and the racer on it."""
    client_id = runtime.client_of(make_key("racer"))
    assert client_id is not None
    cid = runtime.start_conversation(client_id)
    runtime.user_turn(client_id, cid, AREA)
    return Racer(monkeypatch, runtime, client_id, cid)


def replies_in_order(runtime: Runtime, client_id: int, bodies: list[TurnIn]) -> list[dict[str, Any]]:
    """The replies of a fresh conversation given ``bodies`` one after the other (without ids)."""
    cid = runtime.start_conversation(client_id)
    out = []
    for body in bodies:
        reply = runtime.user_turn(client_id, cid, body).reply.model_dump()
        out.append({k: v for k, v in reply.items() if k != "conversation_id"})
    return out


def test_a_turn_that_loses_the_race_is_recomputed_on_the_winners_state(racer: Racer, stored: Stored) -> None:
    racer.race(FOOD)
    result = racer.turn(PRICE)
    assert racer.computed == 3  # the lost attempt, the racing turn, the attempt that was stored
    assert not result.replayed and result.reply.turn_index == 2
    assert racer.stored[0].reply.turn_index == 1
    row = stored(racer.cid)
    assert [t["turn_index"] for t in row["turns"]] == [0, 1, 2] and row["turn_count"] == 3
    assert row["state"]["belief"]["turns"] == 3  # each turn absorbed once, the lost attempt not at all
    assert row["turns"][2]["reply"] == result.reply.model_dump()
    # The stored reply is the one a conversation gets from the same turns in the order they were stored.
    reply = {k: v for k, v in result.reply.model_dump().items() if k != "conversation_id"}
    assert replies_in_order(racer.runtime, racer.client_id, [AREA, FOOD, PRICE])[2] == reply


def test_a_retried_key_that_loses_the_race_to_its_own_first_attempt_gets_the_stored_reply(
    racer: Racer, stored: Stored
) -> None:
    keyed = FOOD.model_copy(update={"idempotency_key": "once"})
    racer.race(keyed)
    result = racer.turn(keyed)
    assert result.replayed and result.reply == racer.stored[0].reply
    turns = stored(racer.cid)["turns"]
    assert [t["turn_index"] for t in turns] == [0, 1] and turns[1]["idempotency_key"] == "once"


def test_a_turn_that_keeps_losing_is_refused_and_stores_nothing(racer: Racer, stored: Stored) -> None:
    racer.race(*[FOOD] * TURN_ATTEMPTS)
    with pytest.raises(ServiceError) as refused:
        racer.turn(PRICE.model_copy(update={"idempotency_key": "loser"}))
    assert refused.value.status == 409 and "retry" in refused.value.message
    turns = stored(racer.cid)["turns"]
    assert [t["turn_index"] for t in turns] == list(range(1 + TURN_ATTEMPTS))
    assert all(t["idempotency_key"] is None for t in turns)
    # Once the others stop, the refused request succeeds when retried.
    assert racer.turn(PRICE).reply.turn_index == 1 + TURN_ATTEMPTS


def test_a_postgresql_session_ended_by_the_server_is_replaced_without_failing_a_request(
    make_app: Callable[[str], FastAPI], postgres_url: str, make_api: Callable[[TestClient, str], Any]
) -> None:
    """The pool drops a pooled connection the server has closed (no ping round trip on checkout)."""
    with TestClient(make_app(postgres_url)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with db.session_factory(runtime.engine)() as session:
            api = make_api(client, create_key(session, "restart"))
        cid = api.create()
        api.turn(cid, [{"act": "hello"}])
        with runtime.engine.connect() as conn:  # sequential requests have used one pooled connection
            assert runtime.engine.pool.checkedin() == 0 and runtime.engine.pool.checkedout() == 1
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        admin = sa.create_engine(postgres_url)
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        admin.dispose()
        time.sleep(0.2)  # the server closes the socket of the ended session
        assert api.turn(cid, [{"act": "inform", "slot": "area", "value": "north"}])["turn_index"] == 1
        assert api.get(cid)["turns"][1]["turn_index"] == 1
