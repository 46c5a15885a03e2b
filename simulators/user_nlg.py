"""User-side text: each user turn written in the style of its user's verbosity.

Terse turns (verbosity < 1/3) are keywords; plain turns are plain sentences; chatty turns
(verbosity >= 2/3) hedge, pad and prefer synonyms. A user opens in its own style, drawn around its
verbosity (``turn_style``); after the opening it entrains to the system's plain prompts and
answers in the plain register w.p. ``ENTRAINMENT``, so the opening says most about the user and
later turns say little.
The NLU of the service is trained and tested on this text, so every act type and every value
must be expressible in every style.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from dialogue.acts import UserAct, UserTurn
from dialogue.domain import DONTCARE, Domain

TERSE, PLAIN, CHATTY = 0, 1, 2
STYLE_NOISE = 0.1  # half-width of the uniform jitter of a turn's verbosity around the user's
ENTRAINMENT = 0.8  # after its opening, a user answers in the plain register w.p. this

_SLOT_PHRASES = {
    "area": ("{v}", "in the {v}", "somewhere in the {v} maybe"),
    "food": ("{v}", "serving {v} food", "with some {v} food"),
    "pricerange": ("{v}", "in the {v} price range", "not too... well, {v}"),
    "stars": ("{v} stars", "with {v} stars", "with like {v} stars"),
    "type": ("{v}", "that is a {v}", "maybe a {v}"),
}
_DEFAULT_PHRASE = ("{s} {v}", "with {s} {v}", "with {s} {v} if possible")

_TEXT = {
    UserAct.HELLO: ("hi", "Hello, I need a {thing}.", "hi there! um, I'm looking for a {thing} I think?"),
    UserAct.DONT_KNOW: ("not sure", "I don't know.", "hmm, I'm not really sure, what are the options?"),
    UserAct.CONFUSED: ("what?", "Sorry, I didn't get that.", "sorry, that's a lot at once, I'm a bit confused"),
    UserAct.AFFIRM: ("yes", "Yes, that's right.", "yes yes, that's correct, thank you"),
    UserAct.ACK: ("ok", "Okay, sounds good.", "okay, that sounds nice I guess"),
    UserAct.BYE: ("thanks, bye", "Great, thank you. Goodbye!", "thank you so much, that's really helpful, bye!"),
    UserAct.HANGUP: ("forget it.", "This is taking too long. Bye.", "ugh, never mind, I give up"),
}
_INFORM = ("{x}.", "I'm looking for a place {x}.", "well, I was thinking of a place {x}, if that's okay?")
_NEGATE = ("no, {x}.", "No, I want a place {x}.", "oh no, sorry, that's not what I meant, I wanted {x}")
_REQUEST = ("{x}?", "What is the {x}?", "oh and could you maybe tell me the {x} please?")
_BOOK_DETAILS = ("book it, {x}.", "Please book it for {x}.", "could you book it for me? {x} would be great")
_BOOK_ONLY = ("book it.", "Can you book it?", "um, can I book it somehow?")
_RELAX = ("any {x}.", "Any {x} is fine.", "oh, then I don't mind about the {x}, anything is fine")


def style_of(verbosity: float) -> int:
    """TERSE, PLAIN or CHATTY."""
    return TERSE if verbosity < 1 / 3 else PLAIN if verbosity < 2 / 3 else CHATTY


def turn_style(verbosity: float, u: float, opening: bool = True, u_entrain: float = 1.0) -> int:
    """The style of one turn of a user with this verbosity, given uniform draws ``u`` and
    ``u_entrain`` (the latter matters only after the opening: entrained turns are plain)."""
    if not opening and u_entrain < ENTRAINMENT:
        return PLAIN
    return style_of(verbosity + STYLE_NOISE * (2.0 * u - 1.0))


def turn_styles(
    verbosity: npt.NDArray[np.float64], u: npt.NDArray[np.float64], opening: bool, u_entrain: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """``turn_style`` for arrays of users (the vectorised simulator)."""
    v = verbosity + STYLE_NOISE * (2.0 * u - 1.0)
    style = np.where(v < 1 / 3, TERSE, np.where(v < 2 / 3, PLAIN, CHATTY))
    return style if opening else np.where(u_entrain < ENTRAINMENT, PLAIN, style)


def register_of(style: int) -> float:
    """The observation feature of a style: 0 terse, 0.5 plain, 1 chatty."""
    return style / 2.0


def _join(items: list[str], style: int) -> str:
    if style == TERSE or len(items) == 1:
        return ", ".join(items) if style != TERSE else " ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _value(domain: Domain, k: int, code: int, style: int, uniform: Callable[[], float]) -> str:
    name = domain.value_name(k, code)
    synonyms = domain.synonyms.get(name, ())
    if synonyms and uniform() < (0.1, 0.25, 0.5)[style]:
        return synonyms[min(int(uniform() * len(synonyms)), len(synonyms) - 1)]
    return name


def _slot_values(domain: Domain, informs: tuple[tuple[int, int], ...], style: int, uniform: Callable[[], float]) -> str:
    parts = []
    for k, code in informs:
        slot = domain.slots[k]
        template = _SLOT_PHRASES.get(slot, _DEFAULT_PHRASE)[style]
        parts.append(template.format(v=_value(domain, k, code, style, uniform), s=slot))
    return _join(parts, style)


def _booking(booking: dict[str, str], style: int) -> str:
    if style == TERSE:  # bare numbers, but a stay says its nights ("2 thursday 4" is no booking)
        return " ".join(f"{v} nights" if s == "stay" else v for s, v in booking.items())
    parts = []
    for slot, value in booking.items():
        if slot == "people":
            parts.append(f"{value} people")
        elif slot == "day":
            parts.append(f"on {value}")
        elif slot == "time":
            parts.append(f"at {value}")
        elif slot == "stay":
            parts.append(f"for {value} nights")
        else:
            parts.append(f"{slot} {value}")
    return " ".join(parts)


def user_text(turn: UserTurn, domain: Domain, style: int, uniform: Callable[[], float]) -> str:
    """The utterance of one user turn in the given style (TERSE, PLAIN or CHATTY)."""
    act = turn.act
    if act in (UserAct.INFORM, UserAct.NEGATE) and turn.informs:
        x = _slot_values(domain, turn.informs, style, uniform)
        return (_NEGATE if act == UserAct.NEGATE else _INFORM)[style].format(x=x)
    if act == UserAct.RELAX and turn.informs:
        k = turn.informs[0][0]
        assert turn.informs[0][1] == DONTCARE
        return _RELAX[style].format(x=domain.slots[k])
    if act == UserAct.REQUEST:
        return _REQUEST[style].format(x=_join(list(turn.requests) or ["details"], style))
    if act == UserAct.BOOK:
        if turn.booking:
            return _BOOK_DETAILS[style].format(x=_booking(turn.booking, style))
        return _BOOK_ONLY[style]
    return _TEXT.get(act, _TEXT[UserAct.ACK])[style].format(thing=domain.entity_words)
