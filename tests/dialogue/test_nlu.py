"""The text NLU on sentences of the hand-written evaluation set (bench/data): the shipped model, the real encoder."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from dialogue.domain import available_domains, load_domain
from dialogue.nlu import NLU, NLUError
from dialogue.nlu.values import parse_count, parse_day, parse_time

NLU_PATH = Path(__file__).resolve().parents[2] / "models" / "nlu"
FRIDAY = datetime(2026, 12, 4, 15)


@pytest.fixture(scope="module")
def nlu() -> NLU:
    return NLU.load(NLU_PATH, {d: load_domain(d) for d in available_domains()})


def triples(nlu: NLU, text: str, context: str = "", domain: str = "restaurant") -> set[tuple[str, str, str]]:
    return {(a["act"], a.get("slot") or "", a.get("value") or "") for a in nlu.read(text, domain, context, FRIDAY).acts}


def test_constraints_and_booking_in_one_turn(nlu: NLU) -> None:
    got = triples(nlu, "Cheap italian, city centre, table for 2 tonight 19:30.", "greet")
    assert {("inform", "food", "italian"), ("inform", "area", "centre"), ("inform", "pricerange", "cheap")} <= got
    assert {("book", "people", "2"), ("book", "day", "friday"), ("book", "time", "19:30")} <= got


def test_greeting_that_carries_a_request(nlu: NLU) -> None:
    assert ("inform", "food", "indian") in triples(nlu, "Good afternoon. I'm after an Indian restaurant.", "greet")


def test_a_paraphrased_value(nlu: NLU) -> None:
    assert ("inform", "pricerange", "moderate") in triples(
        nlu, "Something mid-range would be good.", "request pricerange"
    )


def test_yes_book_it_after_an_offer(nlu: NLU) -> None:
    assert "book" in {a for a, _, _ in triples(nlu, "Yes. Book it.", "offer")}


def test_out_of_domain_is_not_understood(nlu: NLU) -> None:
    reading = nlu.read("can you recommend a good film?", "restaurant", "greet", FRIDAY)
    assert not reading.understood and reading.acts == []


def test_booking_values_as_people_say_them() -> None:
    assert parse_time("half past seven") == "19:30" and parse_time("8ish") == "20:00"
    assert parse_day("tmrw", FRIDAY) == "saturday" and parse_day("tonight", FRIDAY) == "friday"
    assert parse_count("4 ppl") == 4 and parse_count("just me") == 1


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NLUError, match="segdial nlu train"):
        NLU.load(tmp_path, {})
