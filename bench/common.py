"""Shared plumbing of the benchmark scripts: arguments, the JSON file, the machine description, and a
small keep-alive HTTP client for load generation."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REQUEST_TIMEOUT = 10.0  # seconds; a request that takes longer counts as an error (status 0)


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: --quick and --json PATH."""
    p = argparse.ArgumentParser(prog=f"bench/{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="a short run (smaller samples) to check that it works")
    p.add_argument("--json", type=Path, default=RESULTS / f"{name}.json", help="where to write the figures")
    return p


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, figures: dict[str, Any]) -> None:
    """Write the figures with the machine description; print where they went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **figures}, indent=2, default=float) + "\n")
    print(f"figures written to {path}")


def check_line(name: str, ok: bool, detail: str) -> dict[str, Any]:
    """Print a PASS/FAIL line for a bar and return it as a JSON record."""
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    return {"name": name, "pass": bool(ok), "detail": detail}


def free_port() -> int:
    """A TCP port on loopback that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams (httpx could not generate the load)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str = ""
    ) -> tuple[int, Any]:
        try:
            return await asyncio.wait_for(self._request(method, path, body, key), REQUEST_TIMEOUT)
        except (ConnectionError, asyncio.IncompleteReadError):  # the server closed a kept-alive connection
            self.writer = None
            return await asyncio.wait_for(self._request(method, path, body, key), REQUEST_TIMEOUT)
        except TimeoutError:
            self.close()
            return 0, None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None

    async def _request(self, method: str, path: str, body: dict[str, Any] | None, key: str) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nX-API-Key: {key}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        status_line = await self.reader.readline()
        if not status_line:  # the server closed the idle connection (keep-alive timeout) before reading
            raise ConnectionError("connection closed by the server")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length)
        try:
            return status, json.loads(data) if data else None
        except json.JSONDecodeError:  # an error page in plain text
            return status, data.decode(errors="replace")


PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def fresh_postgres(name: str, options: str = "") -> str:
    """Drop and create the PostgreSQL database ``name`` on this machine's server; returns its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{PG_SERVER}/{name}{options}"


class ServerProcess:
    """A server started as its own process, returned once ``health_path`` answers 200."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, health_path: str, timeout: float = 120) -> None:
        import httpx

        self.port = port
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""
                raise RuntimeError(f"{' '.join(args[-3:])} exited: {err}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{health_path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{' '.join(args[-3:])} did not answer {health_path} within {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
