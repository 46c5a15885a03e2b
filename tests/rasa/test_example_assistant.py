"""The example Rasa assistant (examples/rasa) agrees with the action module and segdial's ontology.

Rasa itself is not installed here, so its files are read as Rasa reads them (YAML, the entity
annotations of the NLU examples) and every name in them is checked against what the actions
register, set and map: an assistant trained from these files sends only messages the actions use.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk.executor import ActionExecutor

from dialogue.acts import SystemAct
from dialogue.domain import load_domain
from dialogue.rasa.mapping import (
    CONFIDENCE_SLOT,
    CONVERSATION_SLOT,
    HANDOVER_SLOT,
    INTENT_ACTS,
    OUTCOME_SLOT,
    OUTCOMES,
    RATING_SLOT,
    REQUESTABLE_ENTITY,
    RESPONSE_PREFIX,
    SEGMENT_SLOT,
    SYSTEM_ACT_SLOT,
    UserMessage,
    canonical_value,
    user_acts,
)
from dialogue.rasa_actions import END_ACTION, POLICY_ACTION
from dialogue.service.settings import DEFAULT_MODEL
from dialogue.service.turns import parse_acts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rasa"
RESTAURANT = load_domain("restaurant")
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\(([^)]+)\)|(\{[^}]+\}))")


def read(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLE / name).read_text()))


DOMAIN = read("domain.yml")
NLU = read("data/nlu.yml")["nlu"]
RULES = read("data/rules.yml")["rules"]


def annotated(example: str) -> tuple[str, list[dict[str, Any]]]:
    """An NLU example's text and entities, as Rasa's training-data reader gives them."""
    entities = []
    for m in _ANNOTATION.finditer(example):
        if m.group(2):
            entity, _, value = m.group(2).partition(":")
            entities.append({"entity": entity, "value": value or m.group(1)})
        else:
            spec = json.loads(m.group(3))
            entities.append({"entity": spec["entity"], "value": spec.get("value", m.group(1))})
    return _ANNOTATION.sub(lambda m: m.group(1), example), entities


def examples() -> list[tuple[str, str]]:
    return [
        (block["intent"], line.strip()[2:])
        for block in NLU
        if "intent" in block
        for line in block["examples"].splitlines()
        if line.strip().startswith("- ")
    ]


def rule_steps() -> list[dict[str, Any]]:
    return [step for rule in RULES for step in rule["steps"]]


def test_the_domain_declares_exactly_the_actions_the_module_registers() -> None:
    executor = ActionExecutor()
    executor.register_package("dialogue.rasa_actions")
    assert set(executor.actions) == {POLICY_ACTION, END_ACTION}
    assert set(DOMAIN["actions"]) == set(executor.actions)


def test_the_domain_declares_every_slot_the_actions_set() -> None:
    slots = DOMAIN["slots"]
    set_by_actions = {
        CONVERSATION_SLOT,
        SEGMENT_SLOT,
        CONFIDENCE_SLOT,
        SYSTEM_ACT_SLOT,
        HANDOVER_SLOT,
        OUTCOME_SLOT,
        RATING_SLOT,
    }
    assert set_by_actions <= set(slots)
    assert all(m["type"] == "custom" for name in set_by_actions for m in slots[name]["mappings"])
    card = json.loads((DEFAULT_MODEL / "card.json").read_text())
    assert slots[SEGMENT_SLOT]["values"] == card["segments"]  # the segments the shipped policy reads out
    assert tuple(slots[OUTCOME_SLOT]["values"]) == OUTCOMES
    assert (slots[CONFIDENCE_SLOT]["min_value"], slots[CONFIDENCE_SLOT]["max_value"]) == (0.0, 1.0)


def test_every_entity_is_a_slot_of_segdials_domain() -> None:
    known = {*RESTAURANT.slots, *RESTAURANT.booking, REQUESTABLE_ENTITY}
    assert set(DOMAIN["entities"]) <= known
    assert set(RESTAURANT.slots) <= set(DOMAIN["entities"])  # every informable slot can be filled


def test_every_intent_the_rules_send_to_segdial_maps_to_an_act() -> None:
    policy_intents = set()
    for rule in RULES:
        steps = rule["steps"]
        for first, second in itertools.pairwise(steps):
            if "intent" in first and second.get("action") == POLICY_ACTION:
                policy_intents.add(first["intent"])
    assert "nlu_fallback" in policy_intents  # unsure classifications send their words to segdial's NLU
    unmapped = policy_intents - set(INTENT_ACTS) - {"nlu_fallback"}
    assert unmapped == set()
    assert {s["intent"] for s in rule_steps() if "intent" in s} - {"nlu_fallback"} == set(DOMAIN["intents"])


def test_rules_name_only_declared_actions_and_responses() -> None:
    known = set(DOMAIN["actions"]) | set(DOMAIN["responses"])
    assert {s["action"] for s in rule_steps() if "action" in s} <= known


@pytest.mark.parametrize(("intent", "example"), examples())
def test_every_nlu_example_becomes_a_turn_the_service_accepts(intent: str, example: str) -> None:
    assert intent in DOMAIN["intents"]
    text, entities = annotated(example)
    assert {e["entity"] for e in entities} <= set(DOMAIN["entities"])
    synonyms = {s: b["synonym"] for b in NLU if "synonym" in b for s in yaml.safe_load(b["examples"]) or []}
    entities = [{**e, "value": synonyms.get(e["value"], e["value"])} for e in entities]
    acts = user_acts(UserMessage(text, intent, entities, None), RESTAURANT)
    if intent in INTENT_ACTS:
        assert acts is not None, f"{example!r} would not map: its words would go to segdial's NLU instead"
        parse_acts(RESTAURANT, [a.model_dump() for a in acts])  # raises when the service would refuse the turn
    else:
        assert acts is None


def test_synonyms_name_ontology_values() -> None:
    for block in (b for b in NLU if "synonym" in b):
        [values] = [vs for vs in RESTAURANT.values if block["synonym"] in vs]
        for form in yaml.safe_load(block["examples"]):
            # segdial may not know a form (Rasa's synonym mapper resolves it) but must not read another value
            assert canonical_value(RESTAURANT, values, form) in (block["synonym"], None)


def test_mapped_responses_name_system_acts_and_slots() -> None:
    acts = {a.name.lower() for a in SystemAct}
    for name, variants in DOMAIN["responses"].items():
        if not name.startswith(RESPONSE_PREFIX):
            continue
        rest = name.removeprefix(RESPONSE_PREFIX)
        act = next((a for a in sorted(acts, key=len, reverse=True) if rest == a or rest.startswith(a + "_")), None)
        assert act is not None, f"{name} names no system act"
        slot = rest.removeprefix(act).removeprefix("_")
        assert slot in ("", *RESTAURANT.slots), f"{name}: {slot!r} is not a slot"
        for variant in variants:
            assert set(re.findall(r"\{(\w+)\}", variant["text"])) <= {"segdial_text", *DOMAIN["slots"]}


def test_the_pipeline_has_what_the_data_relies_on() -> None:
    config = read("config.yml")
    components = [c["name"] for c in config["pipeline"]]
    assert "FallbackClassifier" in components  # rules use nlu_fallback
    assert "EntitySynonymMapper" in components  # nlu.yml has synonyms
    assert [p["name"] for p in config["policies"]] == ["RulePolicy"]
