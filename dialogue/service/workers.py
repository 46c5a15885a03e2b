"""Several uvicorn worker processes, each accepting on a listening socket of its own (Linux).

uvicorn's own supervisor binds one socket in the parent and every worker accepts from it, so the
kernel hands each new connection to whichever worker wakes first. A backend keeps a few long-lived
keep-alive connections, and they can all land on one worker while the other core idles: 50
connections opened at once split 27/23, 41/9 and 50/0 over two workers in three starts here, and
the durable PostgreSQL peak of `bench/service_latency.py` swung between about 300 and 500 turns/s
with it (one worker's capacity, or two).

Here every worker binds a socket of its own to the same address with ``SO_REUSEPORT``, and Linux
spreads new connections over the listening sockets by a hash of their addresses. A worker's
socket starts listening only once its app has started (uvicorn listens after the lifespan), so no
connection waits on a worker that is still loading the policy. The parent restarts a worker that
dies after it started serving (one that failed to start would fail again: then it stops them all),
and stops every worker on SIGINT or SIGTERM. Elsewhere than Linux the kernel does not balance
``SO_REUSEPORT`` sockets, so ``serve_workers`` falls back to uvicorn's supervisor.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from types import FrameType
from typing import NoReturn

from uvicorn.config import STARTUP_FAILURE  # the exit status of a worker that could not start

from dialogue.service.settings import Settings

APP = "dialogue.service.app:create_app"

logger = logging.getLogger("uvicorn.error")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def tcp_sockets(port: int, state: str) -> list[int]:
    """Inodes of this machine's TCP sockets on local ``port`` in ``state`` (Linux ``/proc/net``
    codes: "0A" listening, "01" established)."""
    inodes = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.append(int(fields[9]))
    return inodes


def listening_sockets(port: int) -> list[int]:
    """Inodes of the sockets listening on ``port``: one per worker once every worker has started."""
    return tcp_sockets(port, "0A")


def _worker(settings: Settings, failure: Synchronized[int]) -> None:
    """One worker process: its own socket, the app of ``settings``, uvicorn's server.

    The service layer is opened before uvicorn starts, so that a bad setting is one line on stderr,
    said by the first worker that fails (``failure`` holds its exit status), not uvicorn's traceback.
    """
    import uvicorn

    from dialogue.service.app import create_app
    from dialogue.service.startup import OUTSIDE, StartupError, open_runtime

    try:
        sock = reuse_port_socket(settings.host, settings.port)
    except OSError as exc:
        _could_not_start(failure, f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}", OUTSIDE)
    try:
        runtime = open_runtime(settings)
    except StartupError as e:
        _could_not_start(failure, f"cannot start segdial: {e}", e.status)
    config = uvicorn.Config(
        create_app(settings, runtime=runtime), host=settings.host, port=settings.port, log_level=settings.log_level
    )
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[sock])


def _could_not_start(failure: Synchronized[int], message: str, status: int) -> NoReturn:
    """Say why in one line, unless another worker has, and exit as a worker that could not start."""
    with failure.get_lock():
        if not failure.value:
            print(f"error: {message}", file=sys.stderr)
            failure.value = status
    sys.exit(STARTUP_FAILURE)


def serve_workers(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes until SIGINT or SIGTERM; returns the exit status
    (that of the first worker that could not start, which said why)."""
    host, port = settings.host, settings.port
    if not sys.platform.startswith("linux"):
        import uvicorn

        os.environ.update(settings.environment())  # uvicorn's workers build their app from the environment
        uvicorn.run(APP, factory=True, workers=settings.workers, host=host, port=port, log_level=settings.log_level)
        return 0
    reuse_port_socket(host, port).close()  # the address is free (or shared with SO_REUSEPORT): fail early if not
    spawn = multiprocessing.get_context("spawn")
    failure = spawn.Value("i", 0)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def start() -> BaseProcess:
        process = spawn.Process(target=_worker, args=(settings, failure), daemon=False)
        process.start()
        return process

    processes = [start() for _ in range(settings.workers)]
    status = 0
    while not stop.wait(0.5):
        for i, process in enumerate(processes):
            if process.is_alive():
                continue
            if process.exitcode == STARTUP_FAILURE:
                if not failure.value:  # uvicorn's own start-up failure: it logged why
                    logger.error("a worker could not start; stopping")
                status = failure.value or 1
                stop.set()
                break
            logger.warning("worker %s exited with %s; starting another", process.pid, process.exitcode)
            processes[i] = start()
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: uvicorn shuts the worker down gracefully
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
    return status
