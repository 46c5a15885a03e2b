"""Service latency under open-loop load: act turns and text turns, SQLite and PostgreSQL.

The server runs as its own process (`segdial serve`; `--workers N` uvicorn workers, default 2, one
per core, each with one torch thread and a listening socket of its own, so the 50 connections
spread over them; the load starts once every worker listens). This script is the load
generator: simulated users of every segment hold 50 concurrent conversations over real HTTP on
loopback, and their turns are sent at a fixed offered rate (open loop: a turn's send time does
not wait for earlier replies, only for its own conversation's previous reply). The rate grows in
steps until the service saturates (achieved < 90% of offered, or p99 > 1 s). `/healthz` is
measured in the same run at the same offered rates, as the floor of the HTTP stack.

Bars on this 2-core machine: act turns p99 <= 25 ms at 200 turns/s offered and a peak of
>= 400 act turns/s; text turns p99 <= 60 ms at 30 turns/s offered.

Databases: `sqlite` (the embedded default), `postgresql` (durable commits: each one waits for the
WAL flush to disk) and `postgresql-async-commit` (the same server with `synchronous_commit=off` in
the URL, which trades the last ~0.6 s of turns on a server crash for not waiting on the disk).

Usage: python bench/service_latency.py [--quick] [--json PATH] [--databases sqlite,postgresql,...] [--workers N]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from common import Connection, ServerProcess, check_line, free_port, fresh_postgres, parser, write_json

from dialogue.acts import SystemAct
from dialogue.service.workers import listening_sockets
from simulators.env import SegmentDialogueEnv

ROOT = Path(__file__).resolve().parents[1]
SEGDIAL = [sys.executable, "-m", "segdial.cli"]
CONVERSATIONS = 50


DATABASES = {
    "sqlite": "the embedded default (WAL, synchronous=NORMAL)",
    "postgresql": "PostgreSQL with durable commits (each commit waits for the WAL flush)",
    "postgresql-async-commit": "PostgreSQL with synchronous_commit=off in the URL (a server crash may lose "
    "the last ~0.6 s of turns)",
}


def fresh_database(kind: str, folder: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder}/bench.db"
    return fresh_postgres(
        "segdial_bench", "?options=-csynchronous_commit%3Doff" if kind == "postgresql-async-commit" else ""
    )


class Server(ServerProcess):
    """`segdial serve` in its own process on a free port, on a migrated database with a key of its own."""

    def __init__(self, url: str, workers: int = 1, model: Path | None = None) -> None:
        env = {**os.environ, "SEGDIAL_DATABASE_URL": url}
        subprocess.run([*SEGDIAL, "db", "upgrade"], env=env, check=True, capture_output=True)
        created = subprocess.run(
            [*SEGDIAL, "keys", "create", "bench"], env=env, check=True, capture_output=True, text=True
        )
        self.key = created.stdout.strip().splitlines()[-1]
        port = free_port()
        settings = {"SEGDIAL_WORKERS": str(workers), "SEGDIAL_PORT": str(port), "SEGDIAL_LOG_LEVEL": "warning"}
        if model is not None:
            settings["SEGDIAL_MODEL_PATH"] = str(model)
        super().__init__([*SEGDIAL, "serve"], {"SEGDIAL_DATABASE_URL": url, **settings}, port, "/readyz")
        # /readyz answers once one worker is up; the load starts once every worker listens.
        deadline = time.time() + 120
        while len(listening_sockets(port)) < workers:
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"only {len(listening_sockets(port))} of {workers} workers listen after 120 s")
            time.sleep(0.2)


class SimulatedUser:
    """One conversation slot: a simulated user answering the API's system acts."""

    def __init__(self, seed: int, with_text: bool) -> None:
        self.env = SegmentDialogueEnv()
        self.seed = seed
        self.with_text = with_text
        self.conversation: str | None = None
        self.info: dict[str, Any] = {}

    def body(self) -> dict[str, Any]:
        info = self.info
        if self.with_text:
            return {"text": info["user_utterance"]}
        act = info["user_act"].lower()
        acts: list[dict[str, Any]] = [
            {"act": act if act in ("inform", "negate", "relax") else "inform", "slot": s, "value": v, "confidence": c}
            for s, v, c in info["nlu_informs"]
            if v != "dontcare"
        ]
        acts += [{"act": "relax", "slot": s} for s, v, _ in info["nlu_informs"] if v == "dontcare"]
        acts += [{"act": "request", "slot": r} for r in info["user_requests"]]
        acts += [{"act": "book", "slot": s, "value": v} for s, v in info["user_booking"].items()]
        if act not in ("inform", "negate", "relax") or not acts:
            acts.append({"act": act})
        return {"acts": acts}

    def start(self) -> None:
        self.seed += 1
        _, self.info = self.env.reset(seed=self.seed)
        self.conversation = None

    def answer(self, system_act: str) -> bool:
        """Step the user with the system's act; False when the dialogue is over."""
        _, _, terminated, truncated, self.info = self.env.step(SystemAct[system_act.upper()])
        return not (terminated or truncated)


async def run_step(
    port: int, key: str, rate: float, seconds: float, users: list[SimulatedUser], conns: list[Connection], healthz: bool
) -> dict[str, float]:
    """Offer ``rate`` requests/s for ``seconds``; latency counts from each request's scheduled send
    time (so queueing in front of a busy server is measured, not hidden)."""
    n = max(int(rate * seconds), 1)
    latencies: list[float] = []
    finished: list[float] = []
    errors = 0
    locks = [asyncio.Lock() for _ in users]
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        slot = i % len(users)
        async with locks[slot]:
            conn = conns[slot]
            if healthz:
                status, _ = await conn.request("GET", "/healthz")
                finished.append(time.perf_counter())
                latencies.append(1000 * (finished[-1] - due))
                errors += status != 200
                return
            user = users[slot]
            if user.conversation is None:
                status, created = await conn.request("POST", "/v1/conversations", {}, key)
                if status != 201:
                    errors += 1
                    return
                user.conversation = created["id"]
                due = time.perf_counter()  # a new conversation's first turn is due now
            status, reply = await conn.request("POST", f"/v1/conversations/{user.conversation}/turns", user.body(), key)
            finished.append(time.perf_counter())
            latencies.append(1000 * (finished[-1] - due))
            if status != 200:
                errors += 1
                user.start()
                return
            if reply["ended"] or not user.answer(reply["system_act"]):
                user.start()

    await asyncio.gather(*(one(i) for i in range(n)))
    # Achieved rate: requests served over the window from the first scheduled send to the last
    # reply (not counting the idle lead-in before the first send, which read 400/s as 396/s).
    elapsed = max(finished, default=time.perf_counter()) - start
    lat = np.array(latencies) if latencies else np.array([float("inf")])
    return {
        "offered_per_s": rate,
        "requests": n,
        "achieved_per_s": (n - errors) / elapsed,
        "errors": errors,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


async def ramp(
    server: Server, rates: Sequence[float], seconds: float, with_text: bool | None
) -> list[dict[str, float]]:
    users = [SimulatedUser(seed=1000 * k, with_text=bool(with_text)) for k in range(CONVERSATIONS)]
    for u in users:
        u.start()
    conns = [Connection(server.port) for _ in users]
    out = []
    for rate in rates:
        row = await run_step(server.port, server.key, rate, seconds, users, conns, healthz=with_text is None)
        out.append(row)
        label = "healthz" if with_text is None else "text" if with_text else "act"
        print(
            f"  {label:<7} offered {rate:>6.0f}/s achieved {row['achieved_per_s']:>7.1f}/s"
            f"  p50 {row['p50_ms']:6.1f}  p95 {row['p95_ms']:6.1f}  p99 {row['p99_ms']:7.1f} ms"
            f"  errors {row['errors']}",
            flush=True,
        )
        if row["achieved_per_s"] < 0.9 * rate or row["p99_ms"] > 1000:
            break
    for c in conns:
        c.close()
    return out


def main() -> None:
    p = parser("service_latency", __doc__.splitlines()[0])
    p.add_argument("--databases", default=",".join(DATABASES), help=f"comma-separated: {', '.join(DATABASES)}")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes of the server (SEGDIAL_WORKERS)")
    args = p.parse_args()
    seconds = 2.0 if args.quick else 6.0
    act_rates = [50, 100, 200, 300, 350, 400, 450, 500, 600, 700, 800]
    text_rates = [10, 20, 30, 45, 60, 90]
    kinds = args.databases.split(",")
    unknown = [k for k in kinds if k not in DATABASES]
    if unknown or args.workers < 1:
        p.error(f"unknown database {', '.join(unknown)}" if unknown else "--workers must be at least 1")
    results: dict[str, Any] = {}
    checks = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            print(f"{kind}: {DATABASES[kind]}")
            server = Server(fresh_database(kind, folder), args.workers)
            try:
                act = asyncio.run(ramp(server, act_rates, seconds, with_text=False))
                text_rows = asyncio.run(ramp(server, text_rates, seconds, with_text=True))
                health = asyncio.run(ramp(server, [200, 400, 800, 1200], seconds, with_text=None))
            finally:
                server.stop()
            # The peak: the highest rate served in full (achieved >= 90% of offered, p99 <= 1 s).
            served = [r for r in act if r["achieved_per_s"] >= 0.9 * r["offered_per_s"] and r["p99_ms"] <= 1000]
            peak = max((r["achieved_per_s"] for r in served), default=0.0)
            results[kind] = {"act": act, "text": text_rows, "healthz": health, "peak_act_per_s": peak}
            at200 = next((r for r in act if r["offered_per_s"] == 200), None)
            at30 = next((r for r in text_rows if r["offered_per_s"] == 30), None)
            checks.append(
                check_line(
                    f"{kind}: act p99 <= 25 ms at 200/s",
                    bool(at200 and at200["p99_ms"] <= 25),
                    f"p99 {at200['p99_ms']:.1f} ms" if at200 else "saturated before 200/s",
                )
            )
            checks.append(check_line(f"{kind}: peak >= 400 act turns/s", peak >= 400, f"{peak:.0f} turns/s"))
            checks.append(
                check_line(
                    f"{kind}: text p99 <= 60 ms at 30/s",
                    bool(at30 and at30["p99_ms"] <= 60),
                    f"p99 {at30['p99_ms']:.1f} ms" if at30 else "saturated before 30/s",
                )
            )
    write_json(
        args.json,
        {
            "results": results,
            "checks": checks,
            "seconds_per_step": seconds,
            "conversations": CONVERSATIONS,
            "workers": args.workers,
            "quick": args.quick,
        },
    )


if __name__ == "__main__":
    main()
