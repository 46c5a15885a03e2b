"""HTTP mode: with SEGDIAL_API_URL and SEGDIAL_API_KEY the action server sends its turns to a running
``segdial serve`` (both real processes, SQLite) instead of running the policy itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from dialogue.rasa.mapping import CONVERSATION_SLOT, SEGMENT_SLOT
from dialogue.rasa.webhook import RasaTracker
from dialogue.service import db

if TYPE_CHECKING:
    from conftest import ActionServer, ServerProcess

POLICY = "action_segdial_policy"
CHEAP_ITALIAN = [{"entity": "food", "value": "italian"}, {"entity": "pricerange", "value": "cheap"}]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, server_process: Any) -> Iterator[tuple[ServerProcess, str, str]]:
    """``segdial serve`` on a new SQLite file, and a key of a client named rasa-bot: (server, url, key)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'api.db'}"
    env = {"SEGDIAL_DATABASE_URL": url}
    key = subprocess.run(
        [sys.executable, "-m", "segdial.cli", "keys", "create", "rasa-bot"],
        env={**server_process.base_env(), **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    server = server_process(
        [sys.executable, "-m", "segdial.cli", "serve"], {**env, "SEGDIAL_PORT": "{port}"}, "/readyz"
    )
    yield server, url, key
    server.stop()


def http_mode(api_url: str, key: str) -> dict[str, str]:
    return {"SEGDIAL_API_URL": api_url, "SEGDIAL_API_KEY": key}


@pytest.fixture(scope="module")
def actions(api: tuple[ServerProcess, str, str], action_server_of: Any) -> Iterator[ActionServer]:
    server, url, key = api
    actions = action_server_of(url, http_mode(server.url, key))
    yield actions
    actions.stop()


def test_turns_go_through_the_api_under_its_key(
    api: tuple[ServerProcess, str, str], actions: ActionServer, tracker: RasaTracker
) -> None:
    tracker.user_says("cheap italian please", "inform", CHEAP_ITALIAN)
    r = actions.call(tracker, POLICY)
    assert r.status_code == 200, r.text
    assert tracker.slots[SEGMENT_SLOT] in {"power", "core", "casual"}
    first_id = tracker.slots[CONVERSATION_SLOT]
    tracker.user_says("bye", "goodbye", [])
    assert actions.call(tracker, POLICY).status_code == 200
    [conv] = actions.conversations_of(tracker.sender_id)
    assert (conv["id"], len(conv["turns"]), conv["outcome"]) == (first_id, 2, "success")
    with actions.engine.connect() as conn:
        owner = conn.scalar(sa.select(db.ApiKey.name).where(db.ApiKey.id == conv["api_key_id"]))
    assert owner == "rasa-bot"  # stored by the API under the action server's key


def test_a_retried_call_replays_through_the_api(
    actions: ActionServer, tracker: RasaTracker, rasa_domain: dict[str, Any]
) -> None:
    """A retry of a later turn: Rasa resends the same call (same message id, the slot the first turn set)."""
    tracker.user_says("cheap italian", "inform", CHEAP_ITALIAN)
    assert actions.call(tracker, POLICY).status_code == 200
    tracker.user_says("in the north", "inform", [{"entity": "area", "value": "north"}])
    [conv] = actions.sent_twice(tracker, POLICY, rasa_domain)
    assert len(conv["turns"]) == 2


def test_a_retried_first_message_replays_through_the_api(
    actions: ActionServer, tracker: RasaTracker, rasa_domain: dict[str, Any]
) -> None:
    """A retry of the first turn, before any slot holds the conversation: the API finds the sender's open one."""
    tracker.user_says("cheap italian", "inform", CHEAP_ITALIAN)
    [conv] = actions.sent_twice(tracker, POLICY, rasa_domain)
    assert len(conv["turns"]) == 1


@pytest.mark.parametrize("broken", ["wrong key", "no API there"])
def test_an_api_it_cannot_use_is_a_json_502(
    api: tuple[ServerProcess, str, str], action_server_of: Any, tracker: RasaTracker, tmp_path: Path, broken: str
) -> None:
    server, url, key = api
    api_url = server.url if broken == "wrong key" else "http://127.0.0.1:9"  # the discard port: nobody listens
    actions = action_server_of(url, http_mode(api_url, "sdk_not-a-key" if broken == "wrong key" else key))
    try:
        tracker.user_says("cheap italian", "inform", CHEAP_ITALIAN)
        r = actions.call(tracker, POLICY)
    finally:
        actions.stop()
    assert r.status_code == 502
    assert ("401" if broken == "wrong key" else "unreachable") in r.json()["error"]
