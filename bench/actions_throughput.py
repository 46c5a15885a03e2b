"""Rasa action server throughput: webhook calls/s through the real server, with the policy in-process.

The server is `segdial actions` in its own process (policy, NLU and a fresh SQLite database in
that process; `--databases sqlite,postgresql` adds the machine's PostgreSQL). This script plays
the Rasa server: simulated users of every segment talk through `POST /webhook`
(`action_segdial_policy`), each user turn sent as Rasa's parse data (intent and entities as the
example assistant's NLU would give them, and the user's words) inside the whole tracker state
(events since the session started, slots) and the example assistant's domain, as Rasa sends them.
The slots the action returns are applied to the tracker, and the simulated user answers the
system act.

- Closed loop: C clients (1, 4, 16), each with one call in flight, run conversations back to
  back; calls/s and latency p50/p95/p99.
- Open loop: calls offered at fixed rates, latency counted from each call's scheduled send time,
  rising until the server saturates (served < 90% of offered, or p99 > 1 s).

Two modes of the action: `acts` (SEGDIAL_RASA_SEND_TEXT=false: Rasa's intent and entities only,
the policy step and the database write) and `acts+text` (the default: the words go too, are stored,
and the NLU reads the user's register from them on every turn with its n-gram classifier).

Bar on this 2-core machine (shared by client and server): >= 300 calls/s, in both modes, with
p99 latency reported.

Usage: python bench/actions_throughput.py [--quick] [--json PATH] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import yaml
from common import Connection, ServerProcess, check_line, free_port, fresh_postgres, parser, write_json
from service_latency import SimulatedUser

from dialogue.rasa.mapping import CONVERSATION_SLOT, SYSTEM_ACT_SLOT
from dialogue.rasa.webhook import RasaTracker, parse_data_of

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = yaml.safe_load((ROOT / "examples" / "rasa" / "domain.yml").read_text())
ACTION = "action_segdial_policy"
BAR_CALLS_PER_S = 300.0
PG_DATABASE = "segdial_bench_actions"  # its own database: bench/service_latency.py drops segdial_bench


def fresh_database(kind: str, folder: str) -> str:
    """A new empty database: a SQLite file in ``folder`` or a PostgreSQL database, migrated."""
    if kind == "sqlite":
        return f"sqlite:///{folder}/actions.db"
    url = fresh_postgres(PG_DATABASE)
    subprocess.run(
        [sys.executable, "-m", "segdial.cli", "db", "upgrade"],
        env={**os.environ, "SEGDIAL_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    return url


class ActionServer(ServerProcess):
    """`segdial actions` in its own process on a free port."""

    def __init__(self, url: str, send_text: bool) -> None:
        port = free_port()
        env = {
            "SEGDIAL_DATABASE_URL": url,
            "SEGDIAL_LOG_LEVEL": "warning",
            "SEGDIAL_RASA_SEND_TEXT": str(send_text).lower(),
            "OMP_NUM_THREADS": "1",
        }
        super().__init__([sys.executable, "-m", "segdial.cli", "actions", "--port", str(port)], env, port, "/health")


class RasaConversation:
    """A simulated user behind a Rasa tracker: makes the next webhook call and takes its result."""

    def __init__(self, seed: int) -> None:
        self.user = SimulatedUser(seed=seed, with_text=False)
        self.tracker: RasaTracker | None = None

    def next_call(self) -> dict[str, Any]:
        if self.tracker is None:
            self.user.start()
            self.tracker = RasaTracker(f"bench-{uuid.uuid4().hex[:12]}", slots=DOMAIN["slots"])
        intent, entities = parse_data_of(self.user.body()["acts"])
        self.tracker.user_says(self.user.info["user_utterance"], intent, entities)
        return self.tracker.action_call(ACTION, DOMAIN)

    def took(self, status: int, result: Any) -> None:
        """Apply the action's result; a failed call, an ended conversation or a finished user starts anew."""
        assert self.tracker is not None
        if status != 200:
            self.tracker = None
            return
        self.tracker.apply(ACTION, result)
        if self.tracker.slots[CONVERSATION_SLOT] is None or not self.user.answer(self.tracker.slots[SYSTEM_ACT_SLOT]):
            self.tracker = None


def summary(latencies: list[float], served: int, errors: int, elapsed: float) -> dict[str, float]:
    lat = np.array(latencies) if latencies else np.array([float("inf")])
    return {
        "calls": served + errors,
        "errors": errors,
        "calls_per_s": served / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


async def closed_loop(port: int, clients: int, seconds: float, seed: int) -> dict[str, float]:
    """``clients`` callers, each with one call in flight, for ``seconds``."""
    latencies: list[float] = []
    counts = {"served": 0, "errors": 0}
    stop_at = time.perf_counter() + seconds

    async def caller(k: int) -> None:
        conn, conversation = Connection(port), RasaConversation(seed + 1000 * k)
        while time.perf_counter() < stop_at:
            body = conversation.next_call()
            sent = time.perf_counter()
            status, result = await conn.request("POST", "/webhook", body)
            latencies.append(1000 * (time.perf_counter() - sent))
            counts["served" if status == 200 else "errors"] += 1
            conversation.took(status, result)
        conn.close()

    begin = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(clients)))
    return {"clients": clients, **summary(latencies, counts["served"], counts["errors"], time.perf_counter() - begin)}


async def open_loop(port: int, rate: float, seconds: float, seed: int, slots: int = 50) -> dict[str, float]:
    """Offer ``rate`` calls/s for ``seconds`` over ``slots`` conversations; latency from the scheduled time."""
    n = max(int(rate * seconds), 1)
    conversations = [RasaConversation(seed + 1000 * k) for k in range(slots)]
    conns = [Connection(port) for _ in range(slots)]
    locks = [asyncio.Lock() for _ in range(slots)]
    latencies: list[float] = []
    counts = {"served": 0, "errors": 0}
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        k = i % slots
        async with locks[k]:  # one call at a time per conversation, as Rasa does per sender
            body = conversations[k].next_call()
            status, result = await conns[k].request("POST", "/webhook", body)
            latencies.append(1000 * (time.perf_counter() - due))
            counts["served" if status == 200 else "errors"] += 1
            conversations[k].took(status, result)

    begin = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    for c in conns:
        c.close()
    return {
        "offered_per_s": rate,
        **summary(latencies, counts["served"], counts["errors"], time.perf_counter() - begin),
    }


def measure(port: int, quick: bool, rates: list[float]) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    asyncio.run(closed_loop(port, 4, 1.0, seed=99))  # warm-up: first calls, connections, caches
    closed = []
    for clients in (1, 4, 16):
        row = asyncio.run(closed_loop(port, clients, seconds, seed=clients))
        closed.append(row)
        print(
            f"    closed loop {clients:>2} clients: {row['calls_per_s']:7.1f} calls/s  p50 {row['p50_ms']:6.1f}"
            f"  p95 {row['p95_ms']:6.1f}  p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}",
            flush=True,
        )
    opened = []
    for rate in rates:
        row = asyncio.run(open_loop(port, rate, seconds / 2, seed=int(rate)))
        opened.append(row)
        print(
            f"    open loop {rate:>5.0f}/s offered: {row['calls_per_s']:7.1f} calls/s  p50 {row['p50_ms']:6.1f}"
            f"  p95 {row['p95_ms']:6.1f}  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}",
            flush=True,
        )
        if row["calls_per_s"] < 0.9 * rate or row["p99_ms"] > 1000:
            break
    return {"closed_loop": closed, "open_loop": opened, "peak_calls_per_s": max(r["calls_per_s"] for r in closed)}


def main() -> None:
    p = parser("actions_throughput", __doc__.splitlines()[0])
    p.add_argument("--databases", default="sqlite", help="comma-separated: sqlite, postgresql")
    args = p.parse_args()
    rates: list[float] = [100, 200, 300, 400, 500, 600]
    modes = {"acts": (False, rates), "acts+text": (True, rates)}
    results: dict[str, Any] = {}
    checks = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.databases.split(","):
            for mode, (send_text, rates) in modes.items():
                print(f"{kind}, {mode} calls:", flush=True)
                server = ActionServer(fresh_database(kind, folder), send_text)
                try:
                    row = measure(server.port, args.quick, rates)
                finally:
                    server.stop()
                results[f"{kind}/{mode}"] = row
            for mode in modes:
                best = max(results[f"{kind}/{mode}"]["closed_loop"], key=lambda r: r["calls_per_s"])
                checks.append(
                    check_line(
                        f"{kind}: >= {BAR_CALLS_PER_S:.0f} webhook calls/s ({mode}, in-process policy)",
                        best["calls_per_s"] >= BAR_CALLS_PER_S,
                        f"{best['calls_per_s']:.0f} calls/s with {best['clients']} clients, "
                        f"p99 {best['p99_ms']:.1f} ms",
                    )
                )
    # Other work on the machine takes CPU from both the server and this client: say how busy it was.
    load = dict(zip(("1min", "5min", "15min"), os.getloadavg(), strict=True))
    print(f"load average at the end: {load['1min']:.2f} (1 min), {load['5min']:.2f} (5 min)")
    write_json(args.json, {"results": results, "checks": checks, "quick": args.quick, "load_average_end": load})


if __name__ == "__main__":
    main()
