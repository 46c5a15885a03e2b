"""People's words through the HTTP API (text only), on SQLite and PostgreSQL: the phrasings the NLU
issue found misread, and a whole conversation from the dialogue issue that had never reached its goal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dialogue.domain import WEEKDAYS

READS = {
    "Something mid-range would be good.": {("inform", "pricerange", "moderate")},
    "any area, it doesn't matter to me": {("inform", "area", "dontcare")},
    "Good afternoon. I'm after an Indian restaurant.": {("inform", "food", "indian")},
    "Cheap italian, city centre, table for 2 tonight 19:30.": {
        ("inform", "pricerange", "cheap"),
        ("inform", "food", "italian"),
        ("inform", "area", "centre"),
        ("book", "people", "2"),
        ("book", "time", "19:30"),
    },
}


def test_the_phrasings_once_misread_are_read_through_the_api(api: Any) -> None:
    for text, wanted in READS.items():
        cid = api.create()
        r = api.post_turn(cid, {"text": text})
        assert r.status_code == 200, r.text
        [turn] = api.get(cid)["turns"]
        read = {(a["act"], a.get("slot"), a.get("value")) for a in turn["user_acts"]}
        assert wanted <= read, (text, read)


ANSWERS = {
    "confirm": "yes",
    "request_one": "cheap italian in the centre please",
    "request_all": "cheap italian in the centre please",
    "suggest": "cheap italian in the centre please",
    "explain": "cheap italian in the centre please",
    "offer": "Yes. Book it.",
    "ask_booking": "2 people tonight at 19:30",
    "reqmore": "that's all, thanks bye",
    "inform": "that's all, thanks bye",
    "book": "that's all, thanks bye",
}


def test_a_typed_conversation_books_what_the_first_turn_asked_for_and_ends(api: Any) -> None:
    cid = api.create()
    reply = api.post_turn(cid, {"text": "Cheap italian, city centre, table for 2 tonight 19:30."}).json()
    booked = None
    for _ in range(12):
        if reply["ended"]:
            break
        booked = booked or reply["booking"]
        reply = api.post_turn(cid, {"text": ANSWERS[reply["system_act"]]}).json()
    assert reply["ended"], reply
    assert booked is not None and booked["people"] == "2" and booked["time"] == "19:30"
    assert booked["day"] == WEEKDAYS[datetime.now(UTC).weekday()]  # "tonight": the server resolves days in UTC
    assert api.get(cid)["booking"] == booked


def _triples(acts: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(act, slot, value) of the slot-carrying acts; days are left out (the labels resolve them
    against Friday 4 December 2026, the server against its own date)."""
    out = set()
    for a in acts:
        act, slot, value = a["act"], a.get("slot") or "", a.get("value") or ""
        act = "inform" if act in ("negate", "relax") else act
        if slot and (act, slot) != ("book", "day"):
            out.add((act, slot, value if act != "request" else ""))
    return out


def test_hand_written_openings_are_read_through_the_api(api: Any) -> None:
    """The dev split's restaurant openings (bench/data, written by hand), each the first turn of a
    conversation sent as text: at least 85% read exactly (measured: 19 of 20 with the shipped NLU)."""
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "bench" / "data" / "nlu_eval_restaurant.jsonl"
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    openings = [r for r in lines if r["split"] == "dev" and r["after"] == "greet" and r["acts"]]
    assert len(openings) >= 20
    right = 0
    for r in openings:
        cid = api.create()
        assert api.post_turn(cid, {"text": r["text"]}).status_code == 200
        [turn] = api.get(cid)["turns"]
        right += _triples(turn["user_acts"]) == _triples(r["acts"])
    assert right / len(openings) >= 0.85, f"{right} of {len(openings)}"
