"""The action server under malformed and hostile trackers: never a 500, never its internals.

A hypothesis fuzz (derandomized: the same cases every run) of the webhook's tracker against the
real action server (``segdial actions`` in its own process) on SQLite and PostgreSQL: the sender id,
the latest message (text, intent, entities) and the slots take any JSON value, strings included
that JSON cannot encode back (unpaired UTF-16 surrogates). Each answer is 200, or a 400/404 whose
body is one line of reason that does not echo the request.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogue.rasa.webhook import RasaTracker

if TYPE_CHECKING:
    from conftest import ActionServer

POLICY = "action_segdial_policy"
EXAMPLES = 60

# Text as a JSON string can carry it: any code point, lone surrogates included.
texts = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=30)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3))
entity = st.fixed_dictionaries({"entity": st.sampled_from(["food", "area", "pricerange"]) | texts, "value": values})
changes = st.fixed_dictionaries(
    {},
    optional={
        "sender_id": texts | values,
        "text": texts | values,
        "intent": st.sampled_from(["inform", "affirm", "deny", "goodbye", "greet"]) | texts | values,
        "entities": st.lists(entity, max_size=3) | values,
        "slots": st.dictionaries(st.sampled_from(["segdial_conversation_id", "segdial_outcome"]) | texts, values),
    },
)


def webhook_body(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(base))
    tracker = body["tracker"]
    if "sender_id" in change:
        tracker["sender_id"] = body["sender_id"] = change["sender_id"]
    message = tracker["latest_message"]
    if "text" in change:
        message["text"] = change["text"]
    if "intent" in change:
        message["intent"] = {"name": change["intent"], "confidence": 1.0}
    if "entities" in change:
        message["entities"] = change["entities"]
    if "slots" in change:
        tracker["slots"] = change["slots"]
    return body


def test_a_surrogate_in_the_sender_id_is_a_400_with_a_one_line_reason(action_server: ActionServer) -> None:
    tracker = RasaTracker("user-\ud800")
    tracker.user_says("cheap italian food", "inform", [{"entity": "food", "value": "italian"}])
    content = json.dumps(tracker.action_call(POLICY, {})).encode()  # the surrogate goes as \ud800
    r = action_server.post("/webhook", content=content)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "the body holds a string with an unpaired UTF-16 surrogate (not valid Unicode text)",
        "action_name": POLICY,
    }


def test_fuzzed_trackers_never_get_a_server_error(action_server: ActionServer, rasa_domain: dict[str, Any]) -> None:
    tracker = RasaTracker("fuzz-user", slots=rasa_domain["slots"])
    tracker.user_says("cheap italian food", "inform", [{"entity": "food", "value": "italian"}])
    base = tracker.action_call(POLICY, rasa_domain)
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(change=changes)
    def call(change: dict[str, Any]) -> None:
        content = json.dumps(webhook_body(base, change)).encode()
        r = action_server.post("/webhook", content=content)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code in (200, 400, 404), (r.status_code, r.text)
        if r.status_code != 200:
            error = r.json()["error"]
            assert isinstance(error, str) and "\n" not in error and "request_body" not in r.json()

    call()
    assert sum(statuses.values()) == EXAMPLES
