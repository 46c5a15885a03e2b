"""The text NLU: the shipped act classifier with the real MiniLM encoder, and slot matching."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dialogue.domain import available_domains, load_domain
from dialogue.nlu import NLU, TEXT_FEATURES, NLUError, SlotMatcher, text_features
from simulators.corpus import collect_utterances

NLU_PATH = Path(__file__).resolve().parents[2] / "models" / "nlu"


@pytest.fixture(scope="module")
def nlu() -> NLU:
    return NLU.load(NLU_PATH, {d: load_domain(d) for d in available_domains()})


@pytest.mark.parametrize(
    ("text", "act"),
    [
        ("yes", "affirm"),
        ("No, I want a place serving indian food.", "negate"),
        ("hmm, I'm not really sure, what are the options?", "dont_know"),
        ("cheap italian north.", "inform"),
        ("What is the phone?", "request"),
        ("ugh, never mind, I give up", "hangup"),
        ("Great, thank you. Goodbye!", "bye"),
        ("Any area is fine.", "relax"),
    ],
)
def test_act_types_of_simulated_styles(nlu: NLU, text: str, act: str) -> None:
    assert nlu.act_types([text])[0] == [act]


def test_read_gives_structured_acts(nlu: NLU) -> None:
    acts, conf, _ = nlu.read(
        "well, I was thinking of a place somewhere in the north maybe, with some curry food", "restaurant"
    )
    assert {(a["act"], a["slot"], a["value"]) for a in acts} == {
        ("inform", "area", "north"),
        ("inform", "food", "indian"),
    }
    assert 0.5 < conf <= 1.0
    acts, _, _ = nlu.read("Please book it for 4 people on friday at 19:00.", "restaurant")
    assert {(a["slot"], a["value"]) for a in acts} == {("people", "4"), ("day", "friday"), ("time", "19:00")}


def test_slot_matching_exact_fuzzy_and_context() -> None:
    hotel = SlotMatcher(load_domain("hotel"))
    assert hotel.informs("I'm looking for a place that is a guesthouse.") == [("type", "guesthouse", 1.0)]
    assert ("stars", "4", 1.0) in hotel.informs("with four stars please")
    restaurant = SlotMatcher(load_domain("restaurant"))
    ((slot, value, conf),) = restaurant.informs("somethign expensvie")  # two typos: fuzzy
    assert (slot, value) == ("pricerange", "expensive") and conf < 1.0
    assert restaurant.informs("just looking around") == []


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NLUError, match="segdial nlu train"):
        NLU.load(tmp_path, {})


def test_text_features_are_the_same_in_every_process() -> None:
    """The register classifier's features use CRC-32, not Python's per-process salted ``hash``."""
    texts = ["um, hi there, could you maybe help?", "cheap north", ""]
    here = text_features(texts)
    code = (
        "import sys, numpy as np; from dialogue.nlu import text_features; "
        f"np.save(sys.stdout.buffer, text_features({texts!r}))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, check=True
        ).stdout
        assert np.array_equal(np.load(io.BytesIO(out)), here)
    assert here.shape == (3, TEXT_FEATURES) and np.allclose(np.linalg.norm(here, axis=1), 1.0)


def test_the_register_is_read_without_the_encoder(nlu: NLU, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register of held-out simulated utterances of every segment, with the sentence encoder switched off."""

    def no_encoder(texts: list[str], batch_size: int = 128) -> Any:
        raise AssertionError("the register must not run the sentence encoder")

    monkeypatch.setattr(nlu.encoder, "encode", no_encoder)
    corpus = collect_utterances(40, domain="restaurant", seed=987)
    assert {u.register for u in corpus} == {0.0, 0.5, 1.0}
    assert [nlu.register(u.text) for u in corpus] == [u.register for u in corpus]
