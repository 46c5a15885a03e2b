"""``GET /v1/conversations?client_user_ref=...``: a user's conversations, newest first, only the caller's.

Backends that know their user but not the conversation (a Rasa sender retrying its first message)
find the open conversation this way instead of starting a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

INFORM = [{"act": "inform", "slot": "area", "value": "north"}]


def listed(api: Any, **params: Any) -> list[dict[str, Any]]:
    r = api.client.get("/v1/conversations", params=params, headers=api.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["conversations"])


def test_a_users_conversations_newest_first_and_the_open_ones(api: Any) -> None:
    older, newer = api.create(client_user_ref="alice"), api.create(client_user_ref="alice")
    api.create(client_user_ref="bob")
    api.turn(newer, INFORM)
    assert [c["id"] for c in listed(api, client_user_ref="alice")] == [newer, older]
    assert listed(api, client_user_ref="alice")[0]["turn_count"] == 1
    assert [c["id"] for c in listed(api, client_user_ref="alice", limit=1)] == [newer]
    assert api.end(newer, outcome="success").status_code == 200
    assert [c["id"] for c in listed(api, client_user_ref="alice", open="true")] == [older]
    assert listed(api, client_user_ref="carol") == []


def test_another_clients_conversations_are_not_listed(
    api: Any, make_key: Callable[[str], str], make_api: Callable[..., Any]
) -> None:
    mine = api.create(client_user_ref="shared-ref")
    other = make_api(api.client, make_key("another client"))
    theirs = other.create(client_user_ref="shared-ref")
    assert [c["id"] for c in listed(api, client_user_ref="shared-ref")] == [mine]
    assert [c["id"] for c in listed(other, client_user_ref="shared-ref")] == [theirs]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"client_user_ref": "x" * 201},
        {"client_user_ref": "a", "limit": 0},
        {"client_user_ref": "a", "open": "maybe"},
    ],
)
def test_bad_listing_parameters_are_422(api: Any, params: dict[str, Any]) -> None:
    r = api.client.get("/v1/conversations", params=params, headers=api.headers)
    assert r.status_code == 422, r.text


def test_listing_needs_a_key(api: Any) -> None:
    assert api.client.get("/v1/conversations", params={"client_user_ref": "a"}).status_code == 401
