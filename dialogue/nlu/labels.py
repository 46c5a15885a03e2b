"""What a labelled utterance says: its act types and the span and kind of every slot mention.

The training grammar (``simulators.paraphrase``) writes these; the NLU's trainer learns from them;
the hand-written evaluation set is read into the same acts. The context of an utterance is the
system prompt it answers, as words ("request area", "confirm food indian", "no match").
"""

from __future__ import annotations

from dataclasses import dataclass

INTENTS = ("hello", "inform", "request", "affirm", "negate", "dont_know", "confused", "ack", "book", "bye", "hangup")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # an informable slot, "dontcare:<slot>", "dontcare", a booking slot, or "request:<slot>"
    value: str  # what it means: a value, "dontcare", a booking value or the requested slot


@dataclass(frozen=True)
class LabelledTurn:
    text: str
    context: str
    intents: tuple[str, ...]
    spans: tuple[Span, ...]
    domain: str
    register: int  # 0 terse, 1 plain, 2 chatty


def context_of(act: str, slot: str | None = None, value: str | None = None) -> str:
    """The context string of a system act: "request area", "confirm food indian", "no match"."""
    return " ".join(x for x in (act.replace("_", " "), slot, value) if x)


def span_kinds(slots: list[str], booking: list[str], requestable: list[str]) -> list[str]:
    """Every kind of span over the given slots, in a fixed order (the tagger's label set)."""
    return [
        *slots,
        *(f"dontcare:{s}" for s in slots),
        "dontcare",
        *booking,
        *(f"request:{r}" for r in requestable),
    ]
