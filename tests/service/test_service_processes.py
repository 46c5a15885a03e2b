"""`segdial serve` as real processes: several uvicorn workers on one SQLite file, and bad settings.

Each worker accepts on a listening socket of its own (``dialogue.service.workers``): connections
spread over the workers, and a worker that dies is replaced.

Two worker processes share the embedded SQLite database (their writers queue on
``db.SqliteWriteQueue``, a file lock across processes). Concurrent turns on many conversations must
succeed or be refused cleanly, and leave every conversation's turn indexes contiguous.

kill -9 under load (marker ``kill9``): `segdial serve` with 2 workers and 8 clients, its whole
process group killed with SIGKILL mid-load and started again on the same database, on SQLite and
on PostgreSQL.

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
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dialogue.service import db
from dialogue.service.conversations import create_key
from dialogue.service.workers import listening_sockets, tcp_sockets

SEGDIAL = [sys.executable, "-m", "segdial.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """`segdial serve` with SEGDIAL_WORKERS=2 on a fresh SQLite file: (base URL, API key, database URL)."""
    url = f"sqlite:///{tmp_path / 'segdial.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    with db.session_factory(engine)() as session:
        key = create_key(session, "two workers")
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "SEGDIAL_DATABASE_URL": url,
        "SEGDIAL_PORT": str(port),
        "SEGDIAL_WORKERS": "2",
        "SEGDIAL_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen([*SEGDIAL, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"segdial serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("segdial serve with two workers did not become ready in 120 s")
            time.sleep(0.3)
        yield base, key, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_two_worker_processes_on_one_sqlite_file_lose_no_turn(two_workers: tuple[str, str, str]) -> None:
    base, key, url = two_workers
    headers = {"X-API-Key": key}
    inform = {"acts": [{"act": "inform", "slot": "area", "value": "north"}]}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        ids = [client.post("/v1/conversations", json={}).json()["id"] for _ in range(8)]

        def talk(conversation_id: str) -> list[int]:
            statuses = []
            with httpx.Client(base_url=base, headers=headers, timeout=30) as own:
                for _ in range(6):  # fresh connections spread the requests over both workers
                    r = own.post(f"/v1/conversations/{conversation_id}/turns", json=inform)
                    statuses.append(r.status_code)
                    if r.status_code != 200 or r.json()["ended"]:
                        break
            return statuses

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(talk, ids * 2))  # two clients per conversation, at once
    statuses = [s for r in results for s in r]
    # A turn that lost the race for its conversation's row may be refused with 409; none may fail.
    assert set(statuses) <= {200, 409}, statuses
    assert statuses.count(200) >= len(ids), statuses
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as session:
            for cid in ids:
                indexes = session.scalars(
                    select(db.Turn.turn_index).where(db.Turn.conversation_id == cid).order_by(db.Turn.turn_index)
                ).all()
                count = session.scalar(select(db.Conversation.turn_count).where(db.Conversation.id == cid))
                assert list(indexes) == list(range(len(indexes))), (cid, indexes)
                assert count == len(indexes)
    finally:
        engine.dispose()


def socket_owners(inodes: set[int]) -> dict[int, int]:
    """Which process holds each of these socket inodes: {inode: pid} (Linux /proc)."""
    owners = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                    owners[int(link[8:-1])] = int(pid)
        except OSError:  # a process that ended, or one we may not read
            continue
    return owners


def accepted_by_process(port: int) -> Counter[int]:
    """Established connections to ``port`` on this machine, counted by the process that accepted them."""
    return Counter(socket_owners(set(tcp_sockets(port, "01"))).values())


def wait_for_listeners(port: int, n: int, timeout: float = 120) -> set[int]:
    """The pids of the ``n`` workers once each listens on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        inodes = set(listening_sockets(port))
        owners = set(socket_owners(inodes).values())  # a dead worker's socket may linger, owned by none
        if len(inodes) == len(owners) == n:
            return owners
        assert time.monotonic() < deadline, f"{len(owners)} of {n} workers listen on {port}"
        time.sleep(0.2)


def test_connections_spread_over_the_workers(two_workers: tuple[str, str, str]) -> None:
    """40 keep-alive connections opened at once: each worker accepts a fair share (a socket shared by
    both workers gave splits such as 50/0)."""
    base = two_workers[0]
    port = int(base.rsplit(":", 1)[1])
    workers = wait_for_listeners(port, 2)
    assert len(workers) == 2
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        for c in clients:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for c in clients:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
        counts = accepted_by_process(port)
    finally:
        for c in clients:
            c.close()
    assert set(counts) == workers and sum(counts.values()) == 40, counts
    # A fair coin puts fewer than 8 of 40 on one side with probability 4e-5.
    assert min(counts.values()) >= 8, counts


def test_a_dead_worker_is_replaced(two_workers: tuple[str, str, str]) -> None:
    base = two_workers[0]
    port = int(base.rsplit(":", 1)[1])
    first, second = sorted(wait_for_listeners(port, 2))
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while first in (workers := wait_for_listeners(port, 2)):
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.2)
    assert second in workers and len(workers) == 2
    assert httpx.get(base + "/readyz", timeout=10).status_code == 200


def test_serve_with_workers_reports_a_taken_port_in_one_line(
    tmp_path: Path, run_cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("SEGDIAL_PORT", str(port))
        monkeypatch.setenv("SEGDIAL_WORKERS", "2")
        code, out, err = run_cli(f"sqlite:///{tmp_path / 'x.db'}", "serve")
    assert code == 1 and out == ""  # a failure outside: another process has the port
    assert err == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n", err


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("SEGDIAL_PORT", "eighty", "error: Invalid value for '--port' (env var: 'SEGDIAL_PORT'): Input should be a"),
        ("SEGDIAL_WORKERS", "0", "error: bad setting SEGDIAL_WORKERS (--workers) = 0: Input should be greater than"),
        ("SEGDIAL_LOG_LEVEL", "loud", "error: bad setting SEGDIAL_LOG_LEVEL (--log-level) = 'loud': Input should be"),
        ("SEGDIAL_MAX_TURNS", "0", "error: bad setting SEGDIAL_MAX_TURNS = '0': Input should be greater than"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(
    setting: str,
    value: str,
    message: str,
    tmp_path: Path,
    run_cli: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(setting, value)
    code, out, err = run_cli(f"sqlite:///{tmp_path / 'x.db'}", "serve")
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err


# -- kill -9 under load ------------------------------------------------------------------------
CLIENTS = 8
KILLS = 2
LOAD_SECONDS = 3.0  # of load between two kills
INFORM = [{"act": "inform", "slot": "area", "value": "north"}]


class KillableServer:
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
    server = KillableServer(url, free_port())
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
