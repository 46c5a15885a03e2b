"""Hand-written text conversations driven through the real HTTP service (bench/data/text_conversations.json).

Each conversation is a scripted user with a goal and hand-written lines for each kind of system
prompt (format: bench/data/TEXT_CONVERSATIONS_FORMAT.md). The driver starts `segdial serve` on a
fresh SQLite database, sends only text, and picks the next line from the reply's act, slot, confirmed
value and offer; it never reads the system's text, and never writes words of its own.

Per conversation it records whether the goal was reached (an offer matching the goal's constraints,
after the constraints the user drops when told nothing matches, taken by the user; plus a stored
booking at that place with the goal's details where the goal books), whether the requested
information was given, loops (the same system act and slot three times in a row), handovers, the
number of user turns, and the segment the service names after the third user turn.
Bars: goal reached in >= 90% of conversations, 0 loops.

Usage: python bench/text_conversations.py [--quick] [--json PATH] [--show N]
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from common import check_line, parser, write_json
from service_latency import Server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "text_conversations.json"
TRAIN = {"restaurant": "segdial train", "hotel": "segdial train --config configs/hotel.toml --out models/hotel"}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_USER_TURNS = 30  # a conversation still going after this many user turns has failed
SEGMENT_OF_REGISTER = {"terse": "power", "plain": "core", "chatty": "casual"}


def resolve_day(day: str, today: date) -> str:
    """A goal's day as the service stores it: "today"/"tomorrow" become the weekday of the run."""
    if day == "today":
        return WEEKDAYS[today.weekday()]
    if day == "tomorrow":
        return WEEKDAYS[(today + timedelta(days=1)).weekday()]
    return day


@dataclass
class ScriptedUser:
    """The user side of one hand-written conversation: which of its lines answers a reply."""

    script: dict[str, Any]
    today: date
    dropped: list[str] = field(default_factory=list)
    taken: dict[str, Any] | None = None  # the matching offer the user took
    booking: dict[str, str] | None = None
    informed: bool = False
    last: tuple[Any, ...] | None = None

    @property
    def goal(self) -> dict[str, Any]:
        return dict(self.script["goal"])

    def wanted(self) -> dict[str, str]:
        """The constraints still held (dropped ones mean any value)."""
        return {s: v for s, v in self.goal["constraints"].items() if s not in self.dropped and v != "dontcare"}

    def fits(self, offer: dict[str, Any] | None) -> bool:
        return offer is not None and all(offer["values"].get(s) == v for s, v in self.wanted().items())

    def booking_wanted(self) -> dict[str, str] | None:
        book = self.goal["book"]
        if not book:
            return None
        return {s: resolve_day(v, self.today) if s == "day" else v for s, v in book.items()}

    def reached(self) -> bool:
        if self.taken is None:
            return False
        wanted = self.booking_wanted()
        if wanted is None:
            return True
        return (
            self.booking is not None
            and self.booking.get("entity") == self.taken["name"]
            and all(self.booking.get(s) == v for s, v in wanted.items())
        )

    def next_need(self) -> str:
        """After the offer is taken: book, ask for the information, or close."""
        say = self.script["say"]
        if self.booking_wanted() and self.booking is None:
            return str(say["offer_accept"])
        if self.goal["request"] and not self.informed:
            return str(say["request"])
        return str(say["closing"])

    def answer(self, reply: dict[str, Any]) -> str:
        say = self.script["say"]
        act, slot = reply["system_act"], reply.get("system_slot")
        # The system repeats itself: the same prompt (an offer of another place is a new prompt).
        offer = reply.get("offer") or {}
        prompt = (act, slot, reply.get("system_value"), offer.get("name"), offer.get("relaxed"))
        repeated, self.last = self.last == prompt, prompt
        if reply.get("booking"):
            self.booking = reply["booking"]
        if act == "inform" and self.taken is not None:
            self.informed = True
        if repeated:
            return str(say["repair"])
        if act in ("request_one", "suggest") and slot:
            return str(say["slot"][slot])
        if act == "request_all":
            return str(say["all"])
        if act == "confirm" and slot:
            right = self.goal["constraints"][slot] if slot not in self.dropped else "dontcare"
            return str(say["confirm_yes"] if reply.get("system_value") == right else say["confirm_no"][slot])
        if act == "explain":
            return str(say["explain"])
        if act == "offer":
            offer = reply.get("offer")
            if self.fits(offer):
                self.taken = offer
                return str(say["offer_accept"]) if self.booking_wanted() and self.booking is None else self.next_need()
            if offer is None or offer.get("relaxed"):  # nothing matched what the system heard
                left = [s for s in self.goal["relax"] if s not in self.dropped]
                if left:
                    self.dropped.append(left[0])
                    return str(say["no_match"][left[0]])
            return str(say["offer_reject"])
        if act == "ask_booking":
            return str(say["booking"])
        if act == "greet":
            return str(say["opening"])
        return self.next_need()  # inform, book, reqmore


def run_one(client: httpx.Client, script: dict[str, Any], today: date) -> dict[str, Any]:
    user = ScriptedUser(script, today)
    conv = client.post("/v1/conversations", json={"domain": script["domain"]})
    conv.raise_for_status()
    cid = conv.json()["id"]
    text = str(script["say"]["opening"])
    acts: list[tuple[str, str | None]] = []
    transcript: list[tuple[str, str]] = []
    handovers, turns, segment3, errors = 0, 0, None, 0
    ended = False
    while turns < MAX_USER_TURNS:
        r = client.post(f"/v1/conversations/{cid}/turns", json={"text": text})
        turns += 1
        if r.status_code != 200:
            errors += 1
            transcript.append((text, f"HTTP {r.status_code}: {r.text[:200]}"))
            break
        reply = r.json()
        transcript.append((text, reply["system_text"]))
        acts.append((reply["system_act"], reply.get("system_slot")))
        if turns == 3:
            segment3 = reply.get("segment")
        if reply.get("booking"):
            user.booking = reply["booking"]
        if reply.get("handover"):
            handovers += 1
            break
        if reply["ended"]:
            ended = True
            break
        text = user.answer(reply)
    loops = sum(1 for i in range(2, len(acts)) if acts[i] == acts[i - 1] == acts[i - 2])
    stored = client.get(f"/v1/conversations/{cid}").json().get("booking")
    return {
        "id": script["id"],
        "domain": script["domain"],
        "register": script["register"],
        "goal_reached": user.reached() and (user.booking_wanted() is None or stored == user.booking),
        "requests_answered": user.informed or not script["goal"]["request"],
        "ended_by_bye": ended,
        "loops": loops,
        "handovers": handovers,
        "errors": errors,
        "user_turns": turns,
        "segment_after_3": segment3,
        "transcript": transcript,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    seg = Counter((r["register"], r["segment_after_3"]) for r in rows)
    return {
        "conversations": n,
        "goal_reached": sum(r["goal_reached"] for r in rows) / n,
        "requests_answered": sum(r["requests_answered"] for r in rows) / n,
        "loops": sum(r["loops"] for r in rows),
        "conversations_with_loops": sum(r["loops"] > 0 for r in rows),
        "handovers": sum(r["handovers"] for r in rows),
        "server_errors": sum(r["errors"] for r in rows),
        "mean_user_turns": sum(r["user_turns"] for r in rows) / n,
        "segment_after_3_by_register": {f"{reg}->{s}": c for (reg, s), c in sorted(seg.items(), key=str)},
        "segment_after_3_expected": sum(SEGMENT_OF_REGISTER[r["register"]] == r["segment_after_3"] for r in rows) / n,
    }


def main() -> None:
    p = parser("text_conversations", __doc__.splitlines()[0])
    p.add_argument("--show", type=int, default=0, help="print the transcripts of the first N failed conversations")
    p.add_argument(
        "--data", type=Path, default=DATA, help="the conversations (the held-out set: text_conversations_heldout.json)"
    )
    p.add_argument("--domains", nargs="+", default=["restaurant", "hotel"], choices=["restaurant", "hotel"])
    p.add_argument("--restaurant-model", type=Path, default=ROOT / "models" / "default", help="policy served")
    p.add_argument("--hotel-model", type=Path, default=ROOT / "models" / "hotel", help="policy served (hotel)")
    args = p.parse_args()
    scripts = list(json.loads(args.data.read_text()))
    if args.quick:
        scripts = scripts[::4]
    models = {"restaurant": args.restaurant_model, "hotel": args.hotel_model}
    scripts = [s for s in scripts if s["domain"] in args.domains]
    today = date.today()
    rows: list[dict[str, Any]] = []
    for domain in args.domains:
        if not (models[domain] / "card.json").exists():
            sys.exit(f"no policy for the {domain} domain at {models[domain]} (train it: {TRAIN[domain]})")
        with tempfile.TemporaryDirectory() as folder:
            server = Server(f"sqlite:///{folder}/text.db", model=models[domain])
            try:
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{server.port}", headers={"X-API-Key": server.key}, timeout=30
                ) as client:
                    rows += [run_one(client, s, today) for s in scripts if s["domain"] == domain]
            finally:
                server.stop()
    print(f"{'conversation':<22} {'goal':>5} {'info':>5} {'loops':>5} {'hand':>5} {'turns':>5}  segment@3")
    for r in rows:
        print(
            f"{r['id']:<22} {'yes' if r['goal_reached'] else 'no':>5} {'yes' if r['requests_answered'] else 'no':>5} "
            f"{r['loops']:>5} {r['handovers']:>5} {r['user_turns']:>5}  {r['segment_after_3']}"
        )
    by = {
        f"{d}/{reg}": summarise([r for r in rows if r["domain"] == d and r["register"] == reg])
        for d in sorted({r["domain"] for r in rows})
        for reg in ("terse", "plain", "chatty")
        if any(r["domain"] == d and r["register"] == reg for r in rows)
    }
    total = summarise(rows)
    print(f"\n{'group':<20} {'n':>3} {'goal':>6} {'info':>6} {'loops':>6} {'handovers':>9} {'turns':>6}")
    for name, s in [*by.items(), ("all", total)]:
        print(
            f"{name:<20} {s['conversations']:>3} {s['goal_reached']:>6.1%} {s['requests_answered']:>6.1%} "
            f"{s['loops']:>6} {s['handovers']:>9} {s['mean_user_turns']:>6.1f}"
        )
    print(f"segment named after the third user turn: {total['segment_after_3_by_register']}")
    failed = [r for r in rows if not r["goal_reached"]]
    for r in failed[: args.show]:
        print(f"\n--- {r['id']} (goal not reached)")
        for user_text, system_text in r["transcript"]:
            print(f"  U: {user_text}\n  S: {system_text}")
    checks = [
        check_line("goal reached >= 90%", total["goal_reached"] >= 0.9, f"{total['goal_reached']:.1%}"),
        check_line("0 loops", total["loops"] == 0, str(total["loops"])),
        check_line("0 server errors", total["server_errors"] == 0, str(total["server_errors"])),
    ]
    write_json(
        args.json,
        {
            "quick": args.quick,
            "today": today.isoformat(),
            "all": total,
            "by_group": by,
            "conversations": rows,
            "checks": checks,
        },
    )


if __name__ == "__main__":
    main()
