"""Dialogue domains as data: ontology files plus a knowledge base generated from a seed.

A domain is read from ``dialogue/domains/<name>.json``. It names the informable slots (the
constraints a user searches by) with their values, the requestable slots (what a user may ask
about an entity) and the booking slots. The knowledge base is generated deterministically from the
seed in the file, so every process sees the same entities without shipping a database.

Values are coded as small integers everywhere the policy or the simulators look at them:
``UNKNOWN`` (0) means "not said yet", ``DONTCARE`` (-1) means "any value is fine", and
``1..n`` index the slot's value list. ``MatchTable`` answers "how many entities match these
constraints" in O(1) for scalar and batched code alike.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import numpy.typing as npt

UNKNOWN = 0
DONTCARE = -1
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_COUNT = 50  # the largest party size or number of nights a booking slot of kind "count" takes


class DomainError(ValueError):
    """A domain name or a domain file that cannot be used."""


@dataclass(frozen=True)
class Entity:
    """One row of the knowledge base: informable values (codes) and requestable info."""

    name: str
    values: tuple[int, ...]
    info: dict[str, str]


@dataclass(frozen=True)
class MatchTable:
    """Entity counts for every combination of constraints, where code 0 means "any".

    The table has shape ``(n_1 + 1, ..., n_K + 1)``; it is flattened so that a batch of
    constraint vectors is counted with one dot product and one gather.
    """

    counts: npt.NDArray[np.int64]
    strides: npt.NDArray[np.int64]

    def count(self, values: tuple[int, ...] | list[int]) -> int:
        """Entities matching one constraint vector (UNKNOWN and DONTCARE both mean any)."""
        index = 0
        for v, s in zip(values, self.strides.tolist(), strict=True):
            if v > 0:
                index += v * s
        return int(self.counts[index])

    def count_batch(self, values: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
        """Entities matching each row of a ``(B, K)`` array of constraint codes."""
        index = np.maximum(values, 0) @ self.strides
        return self.counts[index]


@dataclass(frozen=True)
class Domain:
    """An ontology and its knowledge base."""

    name: str
    entity_type: str
    slots: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    requestable: tuple[str, ...]
    booking: dict[str, tuple[str, ...]]
    synonyms: dict[str, tuple[str, ...]]
    entities: tuple[Entity, ...] = field(repr=False)
    matches: MatchTable = field(repr=False)
    # What people also call a value (the NLU's lexicon, with ``synonyms``: what simulated users say).
    paraphrases: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    # How people name a slot ("part of town" for area): "any part of town is fine".
    slot_names: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    # What a booking slot holds: "count" (a positive number), "weekday" or "clock" (HH:MM); a slot
    # without a kind takes only its listed values. The listed values are what simulated users ask for.
    booking_kinds: dict[str, str] = field(default_factory=dict, repr=False)
    # Words for the entity that name no value: "I need a place to stay" where "a hotel" would ask
    # for the hotel type. Empty: the entity type itself is such a word.
    entity_phrase: str = ""

    @property
    def entity_words(self) -> str:
        """How a user names the entity when it means no constraint by it ("restaurant", "place to stay")."""
        return self.entity_phrase or self.entity_type

    @property
    def n_slots(self) -> int:
        """Number of informable slots (K)."""
        return len(self.slots)

    @property
    def n_values(self) -> tuple[int, ...]:
        """Number of values of each informable slot."""
        return tuple(len(v) for v in self.values)

    def value_name(self, slot: int, code: int) -> str:
        """The surface name of a value code ("dontcare" for DONTCARE)."""
        if code == DONTCARE:
            return "dontcare"
        if not 1 <= code <= len(self.values[slot]):
            raise DomainError(f"value code {code} is not valid for slot {self.slots[slot]!r}")
        return self.values[slot][code - 1]

    def value_code(self, slot: str, value: str) -> int:
        """The code of a value name of a slot, or a DomainError naming what is wrong."""
        if slot not in self.slots:
            raise DomainError(f"unknown slot {slot!r} for domain {self.name!r}; known: {', '.join(self.slots)}")
        k = self.slots.index(slot)
        if value == "dontcare":
            return DONTCARE
        if value not in self.values[k]:
            raise DomainError(f"unknown value {value!r} for slot {slot!r}; known: {', '.join(self.values[k])}")
        return self.values[k].index(value) + 1

    def surface_forms(self, value: str) -> tuple[str, ...]:
        """Every way of saying an informable value the domain knows: the value, its synonyms, its paraphrases."""
        return (value, *self.synonyms.get(value, ()), *self.paraphrases.get(value, ()))

    def booking_value(self, slot: str, value: str) -> str:
        """The stored form of a booking value, or a DomainError naming what is wrong."""
        if slot not in self.booking:
            raise DomainError(f"unknown booking slot {slot!r}; known: {', '.join(self.booking)}")
        kind = self.booking_kinds.get(slot)
        text = value.strip().lower()
        if kind == "count" and text.isdigit() and 1 <= int(text) <= MAX_COUNT:
            return str(int(text))
        if kind == "weekday" and text in WEEKDAYS:
            return text
        if kind == "clock":
            m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
            if m:
                return f"{int(m.group(1)):02d}:{m.group(2)}"
        if kind is None and value in self.booking[slot]:
            return value
        allowed = {
            "count": f"a whole number from 1 to {MAX_COUNT}",
            "weekday": "a weekday (monday ... sunday)",
            "clock": "a time as HH:MM",
        }.get(kind or "", ", ".join(self.booking[slot]))
        raise DomainError(f"unknown value {value!r} for booking slot {slot!r}; expected {allowed}")

    def matching(self, values: list[int] | tuple[int, ...]) -> list[Entity]:
        """Entities whose informable values agree with every constrained slot."""
        return [e for e in self.entities if all(v <= 0 or v == ev for v, ev in zip(values, e.values, strict=True))]


def available_domains() -> list[str]:
    """Names of the domains shipped in ``dialogue/domains``."""
    folder = resources.files("dialogue") / "domains"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


@cache
def load_domain(name: str = "restaurant") -> Domain:
    """Load a shipped domain by name (cached: domains are immutable)."""
    known = available_domains()
    if name not in known:
        raise DomainError(f"unknown domain {name!r}; known domains: {', '.join(known)}")
    raw = json.loads((resources.files("dialogue") / "domains" / f"{name}.json").read_text())
    slots = tuple(raw["informable"])
    values = tuple(tuple(raw["informable"][s]) for s in slots)
    requestable = tuple(raw["requestable"])
    entities = _generate_entities(raw, values, requestable)
    return Domain(
        name=raw["name"],
        entity_type=raw["entity"],
        slots=slots,
        values=values,
        requestable=requestable,
        booking={k: tuple(v) for k, v in raw["booking"].items()},
        synonyms={k: tuple(v) for k, v in raw.get("synonyms", {}).items()},
        entities=entities,
        matches=_match_table(values, entities),
        paraphrases={k: tuple(v) for k, v in raw.get("paraphrases", {}).items()},
        slot_names={k: tuple(v) for k, v in raw.get("slot_names", {}).items()},
        booking_kinds=dict(raw.get("booking_kinds", {})),
        entity_phrase=raw.get("entity_phrase", ""),
    )


def _generate_entities(
    raw: dict, values: tuple[tuple[str, ...], ...], requestable: tuple[str, ...]
) -> tuple[Entity, ...]:
    kb = raw["knowledge_base"]
    rng = np.random.default_rng(kb["seed"])
    first, second = kb["name_words"]
    names = [f"{a} {b}" for a, b in itertools.product(first, second)]
    rng.shuffle(names)
    entities = []
    for i in range(kb["size"]):
        codes = tuple(int(rng.integers(1, len(v) + 1)) for v in values)
        name = names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}")
        info = {
            "phone": f"01223 {rng.integers(100000, 999999)}",
            "address": f"{rng.integers(1, 200)} {rng.choice(['High', 'Mill', 'King', 'Station', 'Park'])} Street",
            "postcode": f"CB{rng.integers(1, 5)} {rng.integers(1, 9)}"
            + f"{rng.choice(list('ABDEFGHJ'))}{rng.choice(list('LNPQRSTU'))}",
            "parking": str(rng.choice(["yes", "no"])),
        }
        entities.append(Entity(name=name, values=codes, info={r: info[r] for r in requestable}))
    return tuple(entities)


def _match_table(values: tuple[tuple[str, ...], ...], entities: tuple[Entity, ...]) -> MatchTable:
    shape = tuple(len(v) + 1 for v in values)
    counts = np.zeros(shape, dtype=np.int64)
    for e in entities:
        # Each entity counts under every pattern of "any" over its slots.
        for mask in itertools.product((False, True), repeat=len(values)):
            counts[tuple(0 if m else v for m, v in zip(mask, e.values, strict=True))] += 1
    strides = np.array([s // counts.itemsize for s in counts.strides], dtype=np.int64)
    return MatchTable(counts=counts.reshape(-1), strides=strides)
