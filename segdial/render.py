"""Render an HTML file in headless Chromium (Debian's ``chromium``) and check what a reader sees.

``render_page(html, png)`` opens the file from disk in a fresh headless Chromium, waits for the
load event, reads every ``<img>`` (has it loaded, its natural width, its ``data-plot`` name),
collects console errors and uncaught exceptions, and saves a full-page screenshot. It talks to the
browser over the DevTools protocol (a websocket), so errors are read from the browser's own
events rather than guessed from its log.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import connect
from websockets.sync.connection import Connection

IMAGES_JS = (
    "JSON.stringify(Array.from(document.images).map(i => "
    "({plot: i.dataset.plot || null, alt: i.alt, complete: i.complete, width: i.naturalWidth})))"
)


class RenderError(RuntimeError):
    """Chromium is missing, did not start, or did not load the page in time."""


@dataclass
class RenderResult:
    images: list[dict[str, Any]]
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    text: str = ""

    @property
    def plots(self) -> list[str]:
        return [str(i["plot"]) for i in self.images if i["plot"]]

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not (i["complete"] and i["width"] > 0)]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RenderError("headless Chromium is not installed: apt-get install chromium (scripts/setup.sh does)")


def render_page(
    page: str | Path, png: str | Path | None = None, width: int = 1200, timeout: float = 60.0
) -> RenderResult:
    """Load ``page`` (a file) in headless Chromium; see the module docstring."""
    url = Path(page).resolve().as_uri()
    # Chromium's helpers can still write to the profile while the browser exits: the whole process
    # group is stopped, and a file one of them left behind does not fail the render.
    with tempfile.TemporaryDirectory(prefix="segdial-chromium-", ignore_cleanup_errors=True) as profile:
        args = [
            find_chromium(),
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={width},900",
            "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root (CI)
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            endpoint = _devtools_endpoint(proc, time.monotonic() + timeout)
            with connect(endpoint, max_size=None, open_timeout=timeout) as ws:
                return _Session(ws, time.monotonic() + timeout).render(url, png, width)
        finally:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()


def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _devtools_endpoint(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stderr is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line.strip())
        found = re.search(r"DevTools listening on (ws://\S+)", line)
        if found:
            return found.group(1)
    raise RenderError("chromium did not start: " + " | ".join(seen[-5:]))


class _Session:
    """A minimal DevTools client: one browser connection, one page target (flattened session)."""

    def __init__(self, ws: Connection, deadline: float) -> None:
        self.ws = ws
        self.deadline = deadline
        self.next_id = 0
        self.session_id: str | None = None
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session_id and not browser:
            msg["sessionId"] = self.session_id
        self.ws.send(json.dumps(msg))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RenderError(f"{method}: {reply['error'].get('message')}")
                return dict(reply.get("result", {}))

    def wait_for(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive()
            if event.get("method") == method:
                return event

    def _receive(self) -> dict[str, Any]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RenderError("timed out waiting for headless Chromium")
        try:
            message = json.loads(self.ws.recv(timeout=left))
        except TimeoutError as e:
            raise RenderError("timed out waiting for headless Chromium") from e
        if "method" in message:
            self.events.append(message)
        return dict(message)

    def render(self, url: str, png: str | Path | None, width: int) -> RenderResult:
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session_id = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        images = json.loads(
            self.call("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True})["result"]["value"]
        )
        text = self.call("Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True})
        result = RenderResult(images=images, console_errors=self._errors(), text=str(text["result"].get("value", "")))
        if png is not None:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            shot = self.call(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": float(size["height"]), "scale": 1},
                },
            )
            result.screenshot = Path(png)
            result.screenshot.parent.mkdir(parents=True, exist_ok=True)
            result.screenshot.write_bytes(base64.b64decode(shot["data"]))
        return result

    def _errors(self) -> list[str]:
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append(str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                out.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        return out
