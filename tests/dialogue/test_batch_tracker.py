"""``BatchDialogueState`` agrees with ``DialogueState`` row by row.

Both are driven with the same random sequence of system acts and observed user turns (any act,
any informs including DONTCARE, AFFIRM targets, offer counts, booking details, the text register),
with some rows left out of a user update and some rows reset now and then, as the vectorised
simulator does. After every update, ``observation()``, ``action_mask()`` and the slot rules must
match the scalar tracker of the same row.
"""

from __future__ import annotations

import numpy as np
import pytest

from dialogue.acts import N_SYSTEM_ACTS, N_USER_ACTS, SystemAct
from dialogue.batch_tracker import BatchDialogueState
from dialogue.domain import DONTCARE, Domain
from dialogue.tracker import DialogueState

MAX_TURNS = 8
ROWS = 64
STEPS = 60


def compare(batch: BatchDialogueState, scalars: list[DialogueState], when: str) -> None:
    has_missing, first_missing = batch.first_missing()
    has_confirm, confirm_target = batch.confirm_target()
    got = {
        "observation": batch.observation(),
        "action_mask": batch.action_mask(),
        "values": batch.values,
        "kb_count": batch.kb_count(),
        "request target": np.where(has_missing, first_missing, -1),
        "confirm target": np.where(has_confirm, confirm_target, -1),
    }
    want = {
        "observation": np.stack([s.observation() for s in scalars]),
        "action_mask": np.stack([s.action_mask() for s in scalars]),
        "values": np.array([s.values for s in scalars]),
        "kb_count": np.array([s.kb_count() for s in scalars]),
        "request target": np.array([s.target_slot(SystemAct.REQUEST_ONE) for s in scalars]),
        "confirm target": np.array([s.target_slot(SystemAct.CONFIRM) for s in scalars]),
    }
    for key, expected in want.items():
        bad = ~np.isclose(got[key], expected, rtol=1e-6, atol=1e-7)
        bad = bad.reshape(len(scalars), -1).any(1)
        assert not bad.any(), f"{when}: {key} differs in rows {np.nonzero(bad)[0].tolist()}"


def random_turn(
    rng: np.random.Generator, domain: Domain, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrays for ``m`` observed user turns: act, informs, heard, conf, target, offers, details, register."""
    k = domain.n_slots
    act = rng.integers(0, N_USER_ACTS, m)
    informs = rng.random((m, k)) < 0.3
    heard = rng.integers(1, np.array(domain.n_values) + 1, size=(m, k))
    heard = np.where(rng.random((m, k)) < 0.15, DONTCARE, heard)
    conf = np.where(heard == DONTCARE, 1.0, rng.random((m, k)))
    target = rng.integers(-1, k, m)
    offer_count = np.where(rng.random(m) < 0.5, 0, rng.integers(1, 5, m))
    details = rng.random(m) < 0.2
    register = rng.choice([0.0, 0.5, 1.0], m)
    return act, informs, heard, conf, target, offer_count, details, register


def scalar_update(s: DialogueState, i: int, turn: tuple[np.ndarray, ...]) -> None:
    act, informs, heard, conf, target, offer_count, details, register = turn
    s.user_acted(
        int(act[i]),
        [(int(k), int(heard[i, k]), float(conf[i, k])) for k in np.nonzero(informs[i])[0]],
        target=int(target[i]),
        offer_count=int(offer_count[i]),
        booking_details=bool(details[i]),
        register=float(register[i]),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_tracker_agrees_with_scalar_tracker(domain: Domain, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = BatchDialogueState(domain, MAX_TURNS, ROWS)
    scalars = [DialogueState(domain, MAX_TURNS) for _ in range(ROWS)]
    compare(batch, scalars, "fresh")
    all_rows = np.arange(ROWS)
    # The opening turn of every row (no system act yet).
    turn = random_turn(rng, domain, ROWS)
    act, informs, heard, conf, _, _, _, register = turn
    batch.user_acted(all_rows, act, informs, heard, conf, register=register)
    for i, s in enumerate(scalars):
        s.user_acted(
            int(act[i]),
            [(int(k), int(heard[i, k]), float(conf[i, k])) for k in np.nonzero(informs[i])[0]],
            register=float(register[i]),
        )
    compare(batch, scalars, "opening")
    for step in range(STEPS):
        sys_act = rng.integers(0, N_SYSTEM_ACTS, ROWS)
        # Lean on the acts with the most state: confirm, offer, inform, book.
        sys_act = np.where(rng.random(ROWS) < 0.3, rng.choice([3, 6, 7, 9], ROWS), sys_act)
        batch.system_acted(sys_act)
        for i, s in enumerate(scalars):
            s.system_acted(int(sys_act[i]))
        compare(batch, scalars, f"step {step}, after the system act")
        # A random subset of rows hears back (as an arrays-aligned-with-rows update).
        rows = np.nonzero(rng.random(ROWS) < 0.8)[0]
        turn = random_turn(rng, domain, len(rows))
        act, informs, heard, conf, target, offer_count, details, register = turn
        batch.user_acted(
            rows,
            act,
            informs,
            heard,
            conf,
            target=target,
            offer_count=offer_count,
            booking_details=details,
            register=register,
        )
        for j, i in enumerate(rows):
            scalar_update(scalars[i], j, turn)
        compare(batch, scalars, f"step {step}, after the user turn")
        # Now and then some dialogues end and restart.
        done = np.nonzero(rng.random(ROWS) < 0.05)[0]
        batch.reset(done)
        for i in done:
            scalars[i].reset()
        compare(batch, scalars, f"step {step}, after resetting {done.tolist()}")


def test_batch_update_with_a_slice_touches_all_rows(domain: Domain) -> None:
    rng = np.random.default_rng(5)
    batch = BatchDialogueState(domain, MAX_TURNS, 8)
    scalars = [DialogueState(domain, MAX_TURNS) for _ in range(8)]
    for _ in range(10):
        sys_act = rng.integers(0, N_SYSTEM_ACTS, 8)
        batch.system_acted(sys_act)
        turn = random_turn(rng, domain, 8)
        act, informs, heard, conf, target, offer_count, details, register = turn
        batch.user_acted(
            slice(None),
            act,
            informs,
            heard,
            conf,
            target=target,
            offer_count=offer_count,
            booking_details=details,
            register=register,
        )
        for i, s in enumerate(scalars):
            s.system_acted(int(sys_act[i]))
            scalar_update(s, i, turn)
        compare(batch, scalars, "slice update")
