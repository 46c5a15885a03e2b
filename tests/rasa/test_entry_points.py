"""The ways to start the action server: ``segdial actions`` (its errors are one line, exit 2 for a bad
setting and 1 for a port that is taken) and rasa-sdk's own ``python -m rasa_sdk --actions dialogue.rasa_actions``."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dialogue.rasa.mapping import SEGMENT_SLOT
from dialogue.rasa.webhook import RasaTracker

if TYPE_CHECKING:
    from conftest import ActionServer


def segdial_actions(*args: str, env: dict[str, str], base: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segdial.cli", "actions", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "0"], {}, "error: bad setting SEGDIAL_ACTIONS_PORT (--port) = 0: Input should be greater than"),
        ([], {"SEGDIAL_ACTIONS_PORT": "70000"}, "error: bad setting SEGDIAL_ACTIONS_PORT (--port) = 70000"),
        (["--model", "/nonexistent/policy"], {}, "error: cannot open segdial for the actions: no checkpoint at"),
        (["--domain", "mars"], {}, "error: cannot open segdial for the actions: SEGDIAL_RASA_DOMAIN: unknown domain"),
        ([], {"SEGDIAL_MODEL_PATH": "/nonexistent/policy"}, "error: cannot open segdial for the actions: "),
        ([], {"SEGDIAL_RASA_DOMAIN": "mars"}, "error: cannot open segdial for the actions: "),
        ([], {"SEGDIAL_API_URL": "http://127.0.0.1:9"}, "error: cannot open segdial for the actions: SEGDIAL_API_URL"),
        (["--prot", "5055"], {}, "error: No such option: --prot"),
    ],
)
def test_segdial_actions_refuses_bad_settings_in_one_line(
    args: list[str], env: dict[str, str], expected: str, tmp_path: Path, server_process: Any
) -> None:
    done = segdial_actions(
        *args, env={"SEGDIAL_DATABASE_URL": f"sqlite:///{tmp_path}/a.db", **env}, base=server_process.base_env()
    )
    assert done.returncode == 2, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith(expected)
    assert "Traceback" not in done.stderr


def test_segdial_actions_says_when_its_port_is_taken(tmp_path: Path, server_process: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        # HTTP mode opens no model, so the server gets to binding the port at once.
        env = {"SEGDIAL_API_URL": "http://127.0.0.1:9", "SEGDIAL_API_KEY": "sdk_x"}
        done = segdial_actions("--port", port, env=env, base=server_process.base_env())
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_segdial_actions_help_explains_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segdial.cli", "actions", "--help"], capture_output=True, text=True, check=True
    )
    for words in ("action_segdial_policy", "SEGDIAL_API_URL", "SEGDIAL_API_KEY", "--port", "--host", "--model"):
        assert words in done.stdout


def test_rasa_sdks_own_entry_point_serves_the_actions(
    tmp_path: Path, action_server_of: Any, tracker: RasaTracker
) -> None:
    """The stock server loads the policy lazily, on the first call, in its worker process."""
    command = [sys.executable, "-m", "rasa_sdk", "--actions", "dialogue.rasa_actions", "--port", "{port}"]
    server: ActionServer = action_server_of(f"sqlite:///{tmp_path}/stock.db", command=command)
    try:
        tracker.user_says("cheap italian food", "inform", [{"entity": "food", "value": "italian"}])
        r = server.call(tracker, "action_segdial_policy")
        assert r.status_code == 200, r.text
        assert tracker.slots[SEGMENT_SLOT] in {"power", "core", "casual"}
        [conv] = server.conversations_of(tracker.sender_id)
        assert len(conv["turns"]) == 1
    finally:
        server.stop()
