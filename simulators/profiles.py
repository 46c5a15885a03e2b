"""User segments as distributions over behaviour parameters.

A ``SegmentProfile`` gives every behaviour parameter of the agenda-based user a range; each
dialogue samples one user uniformly inside those ranges, as PyDial samples its user model per
dialogue. Training sees ``power``, ``core`` and ``casual``; the profiles marked ``held_out`` exist
to test adaptation to users that training never saw and must not be used for training.

Behaviour parameters (all per dialogue):

- ``initiative``: probability of volunteering each untold constraint in an open turn, of adding
  further constraints when asked for one, and of voicing the next wish unprompted.
- ``p_know``: probability, per slot, that the user can name a value without being shown options.
- ``confusion``: probability that a question for several slots at once confuses the user.
- ``error_rate``: probability that the system's NLU mishears a value the user says.
- ``confirm_cost``, ``explain_cost``, ``suggest_cost``: annoyance added by an explicit
  confirmation, by an explanation, and by options offered for a slot the user already knew.
- ``patience``: annoyance at which the user hangs up.
- ``turn_cost``: annoyance added by every turn (impatience with long dialogues).
- ``hazard``: per-turn probability of leaving for no reason the system could control.
- ``relax``: probability of dropping a constraint when told nothing matches (else the user leaves).
- ``vigilance``: probability of noticing that an offered entity does not fit what it asked for;
  an unnoticed misfit is accepted, and the dialogue ends without success.
- ``verbosity``: how wordy and hedged the user's text is (0 terse, 1 chatty). A user opens in its
  own style; afterwards it mostly entrains to the system's plain register (``user_nlg``), so the
  opening is the turn that tells most about who is talking, and only a belief over the whole
  conversation keeps that knowledge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PARAMETERS: tuple[str, ...] = (
    "initiative",
    "p_know",
    "confusion",
    "error_rate",
    "confirm_cost",
    "explain_cost",
    "suggest_cost",
    "patience",
    "turn_cost",
    "hazard",
    "relax",
    "vigilance",
    "verbosity",
)
PARAM_INDEX = {name: i for i, name in enumerate(PARAMETERS)}


class ProfileError(ValueError):
    """A segment name or a profile definition that cannot be used."""


@dataclass(frozen=True)
class SegmentProfile:
    """A named segment: a (low, high) range for every behaviour parameter."""

    name: str
    ranges: dict[str, tuple[float, float]]
    held_out: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        missing = set(PARAMETERS) - set(self.ranges)
        unknown = set(self.ranges) - set(PARAMETERS)
        if missing or unknown:
            raise ProfileError(
                f"profile {self.name!r}: missing parameters {sorted(missing)}, unknown {sorted(unknown)}"
            )
        for key, (lo, hi) in self.ranges.items():
            if not lo <= hi:
                raise ProfileError(f"profile {self.name!r}: range of {key} has low {lo} > high {hi}")

    @property
    def low(self) -> npt.NDArray[np.float64]:
        return np.array([self.ranges[p][0] for p in PARAMETERS])

    @property
    def high(self) -> npt.NDArray[np.float64]:
        return np.array([self.ranges[p][1] for p in PARAMETERS])

    def sample(self, rng: np.random.Generator, n: int = 1) -> npt.NDArray[np.float64]:
        """``n`` users of this segment: an ``(n, len(PARAMETERS))`` array."""
        return self.low + (self.high - self.low) * rng.random((n, len(PARAMETERS)))


def _profile(name: str, held_out: bool = False, description: str = "", **ranges: tuple[float, float]) -> SegmentProfile:
    return SegmentProfile(name=name, ranges=ranges, held_out=held_out, description=description)


# Ranges were tuned so that each segment needs a different policy (bench/adaptation_gap.py), so
# that the opening turn tells the segments apart (bench/identification_bound.py: the three verbosity
# ranges do not overlap, power users volunteer much more than core users), and so that a core user
# served well succeeds >= 95% of the time (it relaxes a constraint nothing matches, rarely leaves
# for no reason, but seldom notices a wrong offer, so its values need confirming).
# fmt: off
PROFILES: dict[str, SegmentProfile] = {
    p.name: p
    for p in (
        _profile(
            "power",
            description="knows exactly what it wants, says it all at once, hates being slowed down",
            initiative=(0.6, 0.9), p_know=(0.95, 1.0), confusion=(0.0, 0.05), error_rate=(0.02, 0.06),
            confirm_cost=(1.0, 2.0), explain_cost=(1.0, 2.0), suggest_cost=(1.5, 2.5), patience=(3.0, 4.5),
            turn_cost=(0.25, 0.4), hazard=(0.0, 0.01), relax=(0.3, 0.6), vigilance=(0.9, 1.0),
            verbosity=(0.0, 0.25),
        ),
        _profile(
            "core",
            description="the typical user: answers one question at a time, some mishearings",
            initiative=(0.2, 0.45), p_know=(0.8, 0.95), confusion=(0.4, 0.6), error_rate=(0.1, 0.2),
            confirm_cost=(0.2, 0.5), explain_cost=(0.3, 0.6), suggest_cost=(0.5, 1.0), patience=(4.0, 6.0),
            turn_cost=(0.1, 0.2), hazard=(0.0, 0.004), relax=(0.85, 1.0), vigilance=(0.1, 0.4),
            verbosity=(0.4, 0.6),
        ),
        _profile(
            "casual",
            description="unsure what it wants, needs options and guidance, often misheard",
            initiative=(0.0, 0.2), p_know=(0.2, 0.5), confusion=(0.7, 0.95), error_rate=(0.3, 0.45),
            confirm_cost=(0.0, 0.1), explain_cost=(0.0, 0.1), suggest_cost=(0.0, 0.05), patience=(4.0, 6.0),
            turn_cost=(0.05, 0.1), hazard=(0.0, 0.01), relax=(0.7, 0.9), vigilance=(0.0, 0.2),
            verbosity=(0.75, 1.0),
        ),
        _profile(
            "impatient_novice",
            held_out=True,
            description="HELD OUT: a casual user's knowledge with a power user's impatience",
            initiative=(0.1, 0.3), p_know=(0.3, 0.5), confusion=(0.5, 0.8), error_rate=(0.15, 0.3),
            confirm_cost=(0.3, 0.6), explain_cost=(0.0, 0.2), suggest_cost=(0.0, 0.1), patience=(3.0, 4.0),
            turn_cost=(0.15, 0.25), hazard=(0.0, 0.01), relax=(0.5, 0.8), vigilance=(0.1, 0.4),
            verbosity=(0.5, 0.9),
        ),
        _profile(
            "thorough_expert",
            held_out=True,
            description="HELD OUT: knows what it wants, takes its time, does not mind confirmations",
            initiative=(0.5, 0.8), p_know=(0.9, 1.0), confusion=(0.05, 0.15), error_rate=(0.05, 0.1),
            confirm_cost=(0.0, 0.2), explain_cost=(0.5, 1.0), suggest_cost=(0.3, 0.6), patience=(5.0, 7.0),
            turn_cost=(0.1, 0.2), hazard=(0.0, 0.01), relax=(0.4, 0.7), vigilance=(0.9, 1.0),
            verbosity=(0.1, 0.4),
        ),
    )
}
# fmt: on

TRAINING_SEGMENTS: tuple[str, ...] = ("power", "core", "casual")
HELD_OUT_SEGMENTS: tuple[str, ...] = tuple(n for n, p in PROFILES.items() if p.held_out)


SegmentSpec = str | SegmentProfile | Sequence[str | SegmentProfile] | None


def resolve_profiles(segments: SegmentSpec) -> tuple[SegmentProfile, ...]:
    """Profiles from names or objects; ``None`` means the training segments.

    Raises ``ProfileError`` with the known names for an unknown name or an empty list.
    """
    if segments is None:
        segments = list(TRAINING_SEGMENTS)
    if isinstance(segments, (str, SegmentProfile)):
        segments = [segments]
    out = []
    for s in segments:
        if isinstance(s, SegmentProfile):
            out.append(s)
        elif s in PROFILES:
            out.append(PROFILES[s])
        else:
            raise ProfileError(f"unknown segment {s!r}; known segments: {', '.join(PROFILES)}")
    if not out:
        raise ProfileError("at least one segment is needed")
    return tuple(out)
