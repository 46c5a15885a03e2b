"""Training of the NLU's tagger (on labelled turns) and register classifier (on simulated text).

The encoder is frozen, so its token states are computed once, in batches of similar length, and
the tagger trains over those batches for a few epochs: cross-entropy over the BIO tags of the
utterance's tokens plus binary cross-entropy over the act types. Several taggers can be trained
over the same states, each from its own initialisation and batch order: the NLU averages their
probabilities, which steadies a reading that one tagger's luck would tip.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from dialogue.nlu import REGISTERS, RegisterClassifier, SentenceEncoder
from dialogue.nlu.labels import INTENTS, LabelledTurn
from dialogue.nlu.model import JointTagger, bio_tags


def token_tags(turn: LabelledTurn, offsets: list[tuple[int, int]], utterance: list[bool], tags: list[str]) -> list[int]:
    """The BIO tag index of every token (-100, ignored, outside the utterance)."""
    out = []
    previous: object = None
    for (start, end), inside in zip(offsets, utterance, strict=True):
        if not inside:
            out.append(-100)
            previous = None
            continue
        span = next((s for s in turn.spans if s.start <= start and end <= s.end and end > start), None)
        if span is None:
            out.append(0)
        else:
            out.append(tags.index(f"{'I' if span is previous else 'B'}-{span.kind}"))
        previous = span
    return out


def train_tagger(
    turns: list[LabelledTurn],
    kinds: list[str],
    encoder: SentenceEncoder,
    *,
    epochs: int = 4,
    batch_size: int = 64,
    seed: int = 0,
    members: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[JointTagger], dict[str, float]]:
    """``members`` ``JointTagger``s trained on ``turns`` (one encoding, each its own initialisation
    and batch order; the NLU averages their probabilities); also returns the ensemble's training figures."""
    tags = bio_tags(kinds)
    order = sorted(range(len(turns)), key=lambda i: (len(turns[i].text) + len(turns[i].context), i))
    batches = []
    for b, start in enumerate(range(0, len(order), batch_size)):
        rows = [turns[i] for i in order[start : start + batch_size]]
        states = encoder.tokens([t.context for t in rows], [t.text for t in rows])
        labels = torch.tensor(
            [token_tags(t, states.offsets[i], states.utterance[i].tolist(), tags) for i, t in enumerate(rows)]
        )
        intents = torch.tensor([[float(n in t.intents) for n in INTENTS] for t in rows])
        batches.append((states.hidden.half(), states.mask, states.utterance, labels, intents))
        if progress:
            progress("encoding", b + 1, -(-len(order) // batch_size))
    models = [
        _fit(batches, encoder.dim, len(tags), epochs, seed * 1000 + k, progress, f"training {k + 1}/{members}")
        for k in range(members)
    ]
    right = total = exact = 0
    with torch.no_grad():
        for hidden, mask, utterance, labels, intents in batches:
            outputs = [m(hidden.float(), mask, utterance) for m in models]
            tag_probs = torch.stack([torch.softmax(t, -1) for t, _ in outputs]).mean(0)
            intent_probs = torch.stack([torch.sigmoid(i) for _, i in outputs]).mean(0)
            keep = labels != -100
            right += int((tag_probs.argmax(-1)[keep] == labels[keep]).sum())
            total += int(keep.sum())
            exact += int(((intent_probs > 0.5).float() == intents).all(-1).sum())
    return models, {"train_tag_accuracy": right / max(total, 1), "train_intent_exact": exact / len(turns)}


def _fit(
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    dim: int,
    n_tags: int,
    epochs: int,
    seed: int,
    progress: Callable[[str, int, int], None] | None,
    stage: str,
) -> JointTagger:
    """One tagger over the encoded batches: tag cross-entropy plus act-type binary cross-entropy."""
    torch.manual_seed(seed)
    model = JointTagger(dim, n_tags, len(INTENTS))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    steps = epochs * len(batches)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    model.train()
    step = 0
    for _ in range(epochs):
        for b in rng.permutation(len(batches)):
            hidden, mask, utterance, labels, intents = batches[int(b)]
            tag_logits, intent_logits = model(hidden.float(), mask, utterance)
            loss = nn.functional.cross_entropy(tag_logits.reshape(-1, n_tags), labels.reshape(-1), ignore_index=-100)
            loss = loss + nn.functional.binary_cross_entropy_with_logits(intent_logits, intents)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress:
                progress(stage, step, steps)
    return model.eval()


def train_register(
    texts: list[str], registers: list[float], weights: npt.NDArray[np.float64], seed: int = 0, epochs: int = 300
) -> tuple[RegisterClassifier, float]:
    """The register classifier, full batch (``weights``: how often each distinct text occurred), and its accuracy."""
    from dialogue.nlu.encoder import text_features

    torch.manual_seed(seed)
    x = torch.as_tensor(text_features(texts))
    y = torch.as_tensor(np.array([REGISTERS.index(r) for r in registers]))
    w = torch.as_tensor(weights / weights.sum(), dtype=torch.float32)
    clf = RegisterClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=0.05, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        loss = (nn.functional.cross_entropy(clf(x), y, reduction="none") * w).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((clf(x).argmax(-1) == y).float().mean())
    return clf.eval(), acc
