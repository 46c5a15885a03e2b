"""kill -9 under load: `segdial serve` with 2 workers and 8 clients, its whole process group killed with
SIGKILL mid-load and started again on the same database, on SQLite and on PostgreSQL.

Every turn a client got a 200 for must be stored, with the index the reply named, and every
conversation's turn indexes must stay contiguous (none lost, none duplicated). A client whose
request failed on the kill retries it with the same idempotency key once the server is back, as a
real client would; a retry of a turn that was stored before the kill gets the stored reply.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dialogue.service import db
from dialogue.service.conversations import create_key

SEGDIAL = [sys.executable, "-m", "segdial.cli"]
CLIENTS = 8
KILLS = 2
LOAD_SECONDS = 3.0  # of load between two kills
INFORM = [{"act": "inform", "slot": "area", "value": "north"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`segdial serve` with 2 workers in a process group of its own (so SIGKILL reaches every worker)."""

    def __init__(self, url: str, port: int) -> None:
        self.env = {
            **os.environ,
            "SEGDIAL_DATABASE_URL": url,
            "SEGDIAL_PORT": str(port),
            "SEGDIAL_WORKERS": "2",
            "SEGDIAL_LOG_LEVEL": "warning",
            "SEGDIAL_MAX_TURNS": "1000",
        }
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*SEGDIAL, "serve"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "segdial serve exited on start"
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("segdial serve did not become ready in 120 s")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def client_loop(base: str, key: str, stop: threading.Event, acknowledged: list[tuple[str, int, str]]) -> None:
    """Talk until ``stop``: turns with idempotency keys, retried after a failure, a new conversation
    when one ends; every 200 is recorded as (conversation, turn index, key)."""
    headers = {"X-API-Key": key}
    conversation: str | None = None
    pending: str | None = None  # the key of a turn whose outcome is unknown (retried as it was)
    while not stop.is_set():
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
                if conversation is None:
                    r = client.post("/v1/conversations", json={})
                    if r.status_code != 201:
                        time.sleep(0.05)
                        continue
                    conversation = str(r.json()["id"])
                turn_key = pending or uuid.uuid4().hex
                pending = turn_key
                r = client.post(
                    f"/v1/conversations/{conversation}/turns", json={"acts": INFORM, "idempotency_key": turn_key}
                )
                if r.status_code == 200:
                    reply = r.json()
                    acknowledged.append((conversation, int(reply["turn_index"]), turn_key))
                    pending = None
                    if reply["ended"]:
                        conversation = None
                elif r.status_code == 409 and "ended" in r.text:
                    conversation, pending = None, None
                elif r.status_code >= 500:
                    raise AssertionError(f"server error {r.status_code}: {r.text}")
        except httpx.TransportError:  # the server is down: retry the same turn when it is back
            time.sleep(0.1)


@pytest.mark.kill9
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_under_load_loses_no_acknowledged_turn(
    database: str, tmp_path: Path, postgres_scratch: Callable[[str], str]
) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}" if database == "sqlite" else postgres_scratch("kill9")
    db.upgrade(url)
    engine = db.make_engine(url)
    with db.session_factory(engine)() as session:
        key = create_key(session, "kill -9")
    server = Server(url, free_port())
    acknowledged: list[tuple[str, int, str]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=client_loop, args=(server.base, key, stop, acknowledged), daemon=True)
        for _ in range(CLIENTS)
    ]
    try:
        server.start()
        for t in threads:
            t.start()
        for _ in range(KILLS):
            time.sleep(LOAD_SECONDS)
            server.kill()
            server.start()
        time.sleep(LOAD_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.stop()
    print(f"kill -9 on {database}: {len(acknowledged)} acknowledged turns, {KILLS} kills, {CLIENTS} clients")
    assert len(acknowledged) >= 4 * CLIENTS, "too little load to mean anything"
    stored: dict[tuple[str, str], int] = {}
    with db.session_factory(engine)() as session:
        rows: Any = session.execute(select(db.Turn.conversation_id, db.Turn.turn_index, db.Turn.idempotency_key)).all()
        for cid, index, turn_key in rows:
            stored[(cid, turn_key)] = index
        by_conversation: dict[str, list[int]] = {}
        for cid, index, _ in rows:
            by_conversation.setdefault(cid, []).append(index)
        counts = dict(session.execute(select(db.Conversation.id, db.Conversation.turn_count)).all())
    engine.dispose()
    lost = [a for a in acknowledged if stored.get((a[0], a[2])) != a[1]]
    assert lost == [], f"{len(lost)} acknowledged turns not stored as acknowledged: {lost[:5]}"
    for cid, indexes in by_conversation.items():
        assert sorted(indexes) == list(range(len(indexes))), (cid, sorted(indexes))
        assert counts[cid] == len(indexes)
