"""``segdial evaluate --text`` and ``segdial.text_eval``: simulated users' words read by the real NLU and
answered by the served turn logic, beside the same users at the act level."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dialogue.domain import available_domains, load_domain
from dialogue.nlu import NLU
from dialogue.service.settings import DEFAULT_MODEL, DEFAULT_NLU
from metarl_core.inference import Agent
from segdial.text_eval import evaluate_text, play
from simulators.env import SegmentDialogueEnv


@pytest.fixture(scope="module")
def nlu() -> NLU:
    return NLU.load(DEFAULT_NLU, {d: load_domain(d) for d in available_domains()})


@pytest.fixture(scope="module")
def agent() -> Agent:
    return Agent.load(DEFAULT_MODEL)


def test_a_dialogue_does_not_depend_on_the_others_read_in_the_same_nlu_pass(agent: Agent, nlu: NLU) -> None:
    seeds = list(range(8))

    def env() -> SegmentDialogueEnv:
        return SegmentDialogueEnv("restaurant", segments=["core"])

    one_by_one = play(agent, env, seeds, "core", "text", nlu, 3, batch=1)
    together = play(agent, env, seeds, "core", "text", nlu, 3, batch=8)
    assert sorted(map(repr, one_by_one)) == sorted(map(repr, together))
    assert any(o.success for o in together)
    assert all(1 <= o.turns <= 20 for o in together)


def test_the_same_users_are_played_at_the_act_level_and_through_words(agent: Agent, nlu: NLU) -> None:
    results = evaluate_text({"contextual": agent}, "restaurant", ["power", "casual"], 6, nlu)
    for mode in ("act", "text"):
        for seg in ("power", "casual"):
            row = results["contextual"][mode][seg]
            assert row["dialogues"] == 6 and 0.0 <= row["success"] <= 1.0
            assert row["mean_turns"] >= 1
    # At the act level nothing goes through the NLU, so nothing is "not understood".
    assert results["contextual"]["act"]["casual"]["not_understood_per_dialogue"] == 0.0


def test_evaluate_text_writes_its_figures_and_plot(
    segdial: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    code, out, err = segdial("evaluate", "--text", str(DEFAULT_MODEL), "-n", "2", "--out", str(tmp_path))
    assert code == 0, err
    record = json.loads((tmp_path / "text_evaluation.json").read_text())
    assert set(record["results"]) == {"contextual", "agnostic"}
    assert {c["name"] for c in record["checks"]} >= {"core: success >= 90% through the NLU", "no loops"}
    assert (tmp_path / "text.png").stat().st_size > 0
    assert "through words" in out
