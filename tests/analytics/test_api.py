"""``/v1/analytics``: the same numbers as ``segdial report`` for the same window, per client, clear 4xx.

Simulated users talk to the real service over HTTP (SQLite and PostgreSQL), a few conversations
get an outcome through ``/end``; then the API's figures are compared with the report's figures
computed from the same database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dialogue.service.app import create_app
from dialogue.service.settings import DEFAULT_MODEL
from metarl_core.inference import Agent
from segdial.reporting import make_report, parse_window
from simulators.profiles import TRAINING_SEGMENTS

USERS = 3  # per segment


@pytest.fixture
def logged(database_url: str, agent: Agent, helpers: ModuleType) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A started service whose database holds the conversations of one client ('bot'); the keys."""
    with TestClient(create_app(helpers.make_settings(database_url), agent=agent)) as client:
        keys = {name: helpers.new_key(database_url, name) for name in ("bot", "other")}
        api = helpers.Api(client, keys["bot"])
        for segment in TRAINING_SEGMENTS:
            for seed in range(USERS):
                user = helpers.SimulatedUser(segment, seed)
                cid = api.create()
                while True:
                    r = api.post_turn(cid, user.request())
                    assert r.status_code == 200, r.text
                    if not user.answer(r.json()):
                        break
                if seed < 2:  # the third of each segment never reports an outcome
                    outcome = "success" if user.info["success"] else "failure"
                    assert api.end(cid, outcome=outcome).status_code == 200
        yield client, keys


def get(client: TestClient, key: str, path: str, **params: Any) -> Any:
    return client.get(f"/v1/analytics/{path}", params=params, headers={"X-API-Key": key})


def test_the_api_gives_the_reports_numbers(
    logged: tuple[TestClient, dict[str, str]], database_url: str, tmp_path: Path
) -> None:
    client, keys = logged
    report = make_report(tmp_path, database_url, parse_window(None, None), model=DEFAULT_MODEL, description="logs")
    expected = json.loads(json.dumps({k: v for k, v in report.figures.items() if k != "source"}))
    r = get(client, keys["bot"], "report")
    assert r.status_code == 200, r.text
    assert r.json() == expected
    assert expected["overview"]["conversations"] == USERS * len(TRAINING_SEGMENTS)
    assert sum(s["with_outcome"] for s in expected["outcomes"]["segments"].values()) == 2 * len(TRAINING_SEGMENTS)
    segments = get(client, keys["bot"], "segments").json()
    for name in ("overview", "segment_mix", "turns_to_identification", "outcomes"):
        assert segments[name] == expected[name]
    calibration = get(client, keys["bot"], "calibration").json()
    assert calibration["confusion"] == expected["confusion"] and calibration["confusion"]["conversations"] == 0
    assert get(client, keys["bot"], "trajectories").json()["trajectories"] == expected["trajectories"]


def test_the_window_and_threshold_are_the_reports(
    logged: tuple[TestClient, dict[str, str]], database_url: str, tmp_path: Path
) -> None:
    client, keys = logged
    first = get(client, keys["bot"], "segments").json()["overview"]["first"]
    window = {"since": first, "until": "2999-01-01T00:00:00"}
    report = make_report(
        tmp_path, database_url, parse_window(first, window["until"]), model=DEFAULT_MODEL, description="", threshold=0.6
    )
    r = get(client, keys["bot"], "segments", threshold=0.6, **window).json()
    assert r["window"] == report.figures["window"]
    assert r["turns_to_identification"] == json.loads(json.dumps(report.figures["turns_to_identification"]))
    later = get(client, keys["bot"], "segments", since="2999-01-01T00:00:00Z").json()
    assert later["overview"]["conversations"] == 0 and later["segment_mix"]["buckets"] == []


def test_a_client_sees_only_its_own_conversations(logged: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = logged
    r = get(client, keys["other"], "report")
    assert r.status_code == 200
    assert r.json()["overview"]["conversations"] == 0


def test_bad_requests_are_clear_4xx(logged: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = logged
    assert client.get("/v1/analytics/segments").status_code == 401
    assert get(client, "sdk_wrong", "segments").status_code == 401
    assert get(client, keys["bot"], "report", since="yesterday").status_code == 422
    assert get(client, keys["bot"], "segments", threshold=0).status_code == 422
    assert get(client, keys["bot"], "segments", threshold=1.5).status_code == 422


def test_an_empty_window_is_an_empty_result(logged: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = logged
    empty = get(client, keys["bot"], "segments", since="2025-02-01", until="2025-01-01")
    assert empty.status_code == 200, empty.text
    assert empty.json()["overview"]["conversations"] == 0


@pytest.mark.parametrize(
    "bound",
    [
        "0001-01-01T00:00:00+14:00",  # was an OverflowError: year 1 minus 14 hours
        "9999-12-31T23:59:59-14:00",
        "1899-12-31",
        "3000-01-01",
        "0.5",  # a bare number was read as a Unix time
        "1700000000",
        "2025-02-30",
        "2025-01-01T24:00",
    ],
)
def test_times_are_iso_8601_within_the_years_1900_to_2999(
    bound: str, logged: tuple[TestClient, dict[str, str]]
) -> None:
    client, keys = logged
    for name in ("since", "until"):
        r = get(client, keys["bot"], "segments", **{name: bound})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].count("\n") == 0 and "ISO 8601" in r.json()["detail"]
