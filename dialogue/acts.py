"""Dialogue acts: the system's action set and the user's act types.

The system action set is fixed and domain independent. Acts that take a slot take it by a rule of
the state tracker (``DialogueState.target_slot``): "request one slot" asks for the first slot not
yet filled in ontology order, "confirm" checks the least confident unconfirmed value. Keeping the
slot choice out of the action space makes one policy serve every domain and keeps the action set
small enough to learn in minutes; the slot rules are the ones a dialogue designer would write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class SystemAct(IntEnum):
    """The system's dialogue acts (the policy's discrete actions)."""

    GREET = 0  # "Hello! What are you looking for?" (first turn only)
    REQUEST_ONE = 1  # ask for the first missing slot
    REQUEST_ALL = 2  # ask for every missing slot in one question
    CONFIRM = 3  # explicitly confirm the least confident value
    SUGGEST = 4  # list options for the first missing slot
    EXPLAIN = 5  # explain what the system can do and how to answer
    OFFER = 6  # offer an entity matching the belief (or say none matches)
    INFORM = 7  # give the requested information about the offered entity
    ASK_BOOKING = 8  # ask for the booking details
    BOOK = 9  # make the booking
    REQMORE = 10  # "Is there anything else?"
    BYE = 11  # end the conversation


class UserAct(IntEnum):
    """The user's dialogue act types, as the system's NLU reports them."""

    HELLO = 0  # opening without constraints
    INFORM = 1  # gives one or more constraint values
    REQUEST = 2  # asks for information about the offered entity
    AFFIRM = 3  # "yes" to a confirmation
    NEGATE = 4  # "no", with the correct value
    DONT_KNOW = 5  # cannot name a value without options
    CONFUSED = 6  # did not understand the question
    ACK = 7  # "ok" without new information
    BOOK = 8  # asks to book (with or without the details)
    RELAX = 9  # drops a constraint ("any area is fine")
    BYE = 10  # ends the conversation, satisfied
    HANGUP = 11  # leaves the conversation, unsatisfied


N_SYSTEM_ACTS = len(SystemAct)
N_USER_ACTS = len(UserAct)

# Acts that take a constraint slot chosen by the tracker's rule.
SLOT_ACTS = frozenset({SystemAct.REQUEST_ONE, SystemAct.SUGGEST, SystemAct.CONFIRM})


@dataclass(frozen=True)
class UserTurn:
    """What the user did in one turn, in codes (the text lives beside it).

    ``informs`` holds (slot index, value code) pairs as the user meant them; the NLU channel
    turns them into what the system observes.
    """

    act: UserAct
    informs: tuple[tuple[int, int], ...] = ()
    requests: tuple[str, ...] = ()
    booking: dict[str, str] = field(default_factory=dict)
