"""The serving rules that keep a conversation moving (``dialogue.service.turns``), through the HTTP API
on SQLite and PostgreSQL: the guard against a third repeat, the nearest alternative when nothing
matches, bookings stored and returned, handover after turns not understood, and closings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi.testclient import TestClient

from dialogue.acts import SystemAct
from dialogue.domain import UNKNOWN, load_domain
from dialogue.service.app import create_app
from dialogue.service.settings import Settings
from metarl_core.inference import Agent, BeliefState

DOMAIN = load_domain("restaurant")
BOOK = [
    {"act": "book", "slot": "people", "value": "3"},
    {"act": "book", "slot": "day", "value": "saturday"},
    {"act": "book", "slot": "time", "value": "20:15"},
]


def informs(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"act": "inform", "slot": s, "value": v} for s, v in values.items()]


def until(api: Any, cid: str, acts: list[dict[str, Any]], stop: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Send ``acts``, then answer like a cooperative user (affirm a confirm, restate the constraints
    to a question) until a reply satisfies ``stop``; that reply."""
    reply = api.turn(cid, acts)
    for _ in range(10):
        if stop(reply):
            return reply
        if reply["system_act"] == "confirm":
            reply = api.turn(cid, [{"act": "affirm"}])
        elif reply["system_act"] in ("request_one", "request_all", "suggest", "explain"):
            reply = api.turn(cid, acts)
        else:
            reply = api.turn(cid, [{"act": "ack"}])
    raise AssertionError(f"no such reply within 10 turns; last: {reply}")


def no_match_with_one_way_out() -> tuple[dict[str, str], str]:
    """Constraints that nothing matches, but dropping one of them does (found in the knowledge base)."""
    for codes in itertools.product(*(range(1, len(v) + 1) for v in DOMAIN.values)):
        if DOMAIN.matching(codes):
            continue
        for k in range(DOMAIN.n_slots):
            if DOMAIN.matching([c if i != k else UNKNOWN for i, c in enumerate(codes)]):
                return {
                    s: DOMAIN.value_name(i, c) for i, (s, c) in enumerate(zip(DOMAIN.slots, codes, strict=True))
                }, DOMAIN.slots[k]
    raise AssertionError("every combination matches: the restaurant knowledge base changed")


def a_match() -> dict[str, str]:
    entity = DOMAIN.entities[0]
    return {s: DOMAIN.value_name(k, entity.values[k]) for k, s in enumerate(DOMAIN.slots)}


def test_no_match_offers_the_nearest_alternative_and_a_yes_takes_it(api: Any) -> None:
    wanted, _ = no_match_with_one_way_out()
    cid = api.create()
    reply = until(api, cid, informs(wanted), lambda r: r["system_act"] == "offer")
    offer = reply["offer"]
    assert offer is not None and offer["relaxed"] in DOMAIN.slots
    dropped = offer["relaxed"]
    assert offer["values"][dropped] != wanted[dropped]
    assert all(offer["values"][s] == v for s, v in wanted.items() if s != dropped)
    assert offer["name"] in reply["system_text"] and dropped in reply["system_text"]
    # "yes" to it: the constraint is dropped and the alternative is the place the booking is made at.
    after = until(api, cid, [{"act": "affirm"}, *BOOK], lambda r: r["system_act"] == "book")
    assert after["booking"] == {"entity": offer["name"], "people": "3", "day": "saturday", "time": "20:15"}


def test_a_booking_with_known_details_is_made_stored_and_returned(api: Any) -> None:
    cid = api.create()
    offer = until(api, cid, informs(a_match()), lambda r: r["system_act"] == "offer")
    assert offer["offer"]["relaxed"] is None and offer["offer"]["values"] == a_match()
    # Details given before the request to book are kept until the booking is made.
    api.turn(cid, BOOK[:1])
    booked = until(api, cid, [{"act": "book"}, *BOOK[1:]], lambda r: r["system_act"] == "book")
    expected = {"entity": offer["offer"]["name"], "people": "3", "day": "saturday", "time": "20:15"}
    assert booked["booking"] == expected
    assert "20:15" in booked["system_text"]
    assert api.get(cid)["booking"] == expected


def test_after_n_turns_not_understood_the_reply_asks_for_a_person(api: Any) -> None:
    cid = api.create()
    replies = [api.post_turn(cid, {"text": "can you recommend a good film?"}).json() for _ in range(3)]
    assert [r["handover"] for r in replies] == [False, False, True]
    assert "not understood" in replies[-1]["handover_reason"]
    assert not replies[-1]["ended"]  # the backend decides what happens next
    # Understanding resets the count.
    assert api.turn(cid, informs({"food": "thai"}))["handover"] is False


def test_a_closing_ends_the_conversation(api: Any) -> None:
    cid = api.create()
    reply = until(api, cid, informs(a_match()), lambda r: r["system_act"] == "offer")
    closing = api.post_turn(cid, {"text": "great, that's all I needed, thanks bye"}).json()
    assert closing["ended"] and closing["system_act"] == "bye", closing
    # "no" to "anything else?" is a closing too.
    cid = api.create()
    reply = until(api, cid, informs(a_match()), lambda r: r["system_act"] == "reqmore")
    reply = api.turn(cid, [{"act": "negate"}])
    assert reply["ended"] and reply["system_act"] == "bye"


class Stubborn:
    """The shipped policy, except that it asks for every missing slot whenever it may: a policy that
    would repeat the same prompt forever to a user who answers nothing."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)

    def act_one(
        self, obs: npt.NDArray[np.float32], mask: npt.NDArray[np.integer], state: BeliefState | None
    ) -> tuple[int, BeliefState]:
        act, belief = self._agent.act_one(obs, mask, state)
        return (int(SystemAct.REQUEST_ALL) if mask[SystemAct.REQUEST_ALL] else act), belief


def test_the_guard_never_sends_the_same_act_three_times_in_a_row(
    agent: Agent, database_url: str, make_key: Callable[[str], str], make_api: Any
) -> None:
    app = create_app(Settings(database_url=database_url, handover_after=0), agent=Stubborn(agent))  # type: ignore[arg-type]
    with TestClient(app) as client:
        api = make_api(client, make_key("guard"))
        cid = api.create()
        replies = [api.turn(cid, [{"act": "hello"}]) for _ in range(9)]
        metrics = client.get("/metrics").text
    prompts = [(r["system_act"], r["system_slot"]) for r in replies]
    assert prompts[:2] == [("request_all", None)] * 2  # the policy's own choice, twice
    assert all(not (a == b == c) for a, b, c in zip(prompts, prompts[1:], prompts[2:], strict=False)), prompts
    guarded = [r["guarded"] for r in replies]
    assert guarded[2] and sum(guarded) >= 3
    assert all(
        r["system_act"] == "request_all"
        for r, g in zip(replies, guarded, strict=True)
        if not g and r["system_act"] != "bye"
    )
    count = next(line for line in metrics.splitlines() if line.startswith("segdial_guarded_replies_total"))
    assert float(count.split()[-1]) == sum(guarded)


def test_the_nlu_reads_a_turn_with_the_prompt_it_answers_as_context() -> None:
    from dialogue.nlu import context_of
    from dialogue.service.turns import new_state, prompt_context

    stored = new_state(DOMAIN, 20, 1)
    assert prompt_context(DOMAIN, stored) == context_of("greet")
    tracker = stored["tracker"]
    for act, target, words in (
        (SystemAct.REQUEST_ONE, 1, context_of("request", DOMAIN.slots[1])),
        (SystemAct.SUGGEST, 0, context_of("suggest", DOMAIN.slots[0])),
        (SystemAct.ASK_BOOKING, -1, context_of("ask_booking")),
        (SystemAct.OFFER, -1, context_of("no_match")),  # an offer that matched nothing
    ):
        tracker["last_system_act"], stored["target"] = int(act), target
        assert prompt_context(DOMAIN, stored) == words
    tracker["last_system_act"], stored["target"] = int(SystemAct.CONFIRM), 0
    tracker["values"][0] = 2
    assert prompt_context(DOMAIN, stored) == context_of("confirm", DOMAIN.slots[0], DOMAIN.value_name(0, 2))
    tracker["last_system_act"], stored["offer_count"] = int(SystemAct.OFFER), 3
    assert prompt_context(DOMAIN, stored) == context_of("offer")


def test_a_reading_the_service_would_refuse_is_heard_as_not_understood() -> None:
    from dialogue.acts import UserAct
    from dialogue.service.turns import parse_reading

    heard = parse_reading(DOMAIN, [{"act": "inform", "slot": "food", "value": "thai"}], True)
    assert heard.act == UserAct.INFORM and heard.understood and heard.informs
    for acts in ([], [{"act": "inform", "slot": "food", "value": "no such food"}], [{"act": "inform"}]):
        heard = parse_reading(DOMAIN, acts, True)  # nothing read, or the NLU's own mistake: never a 422
        assert heard.act == UserAct.CONFUSED and not heard.understood and not heard.informs
