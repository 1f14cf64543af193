"""The in-memory form of a split, and the Batch every model receives.

A :class:`Split` holds one split of an MMSA-format dataset as NumPy arrays (features
already float32 and cleaned). :func:`iterate` cuts it into :class:`Batch` objects of
torch tensors. Modality order is always (text, audio, vision).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Iterator

import numpy as np
import torch

from .spec import MODALITIES


@dataclass
class Split:
    """One split (train, valid or test) as arrays; N samples.

    text:    (N, Lt, Dt) float32 token features (contextual encoder output, zero-padded).
    text_ids: (N, Lt) int64 token ids (BERT-style vocabulary) or None.
    audio:   (N, La, Da) float32;  vision: (N, Lv, Dv) float32.
    text_lengths, audio_lengths, vision_lengths: (N,) int64 true lengths (>= 1).
    label:   (N,) float32 regression label.
    label_t, label_a, label_v: (N,) float32 unimodal labels, or None.
    domain:  (N,) int64 domain id (zeros when the data has no domains).
    raw_text, ids: length-N lists of str.
    extra:   any further per-sample arrays the file carried (e.g. SynthMSA's ``kind``
             and ``topic``, MMSA's ``annotations``), keyed by their pickle name.
    unk_token_id: the tokenizer's unknown-token id for ``text_ids`` (from the dataset
             spec), which missing-data protocols write where a word is removed.
    """

    text: np.ndarray
    audio: np.ndarray
    vision: np.ndarray
    text_lengths: np.ndarray
    audio_lengths: np.ndarray
    vision_lengths: np.ndarray
    label: np.ndarray
    raw_text: list
    ids: list
    domain: np.ndarray
    text_ids: np.ndarray | None = None
    label_t: np.ndarray | None = None
    label_a: np.ndarray | None = None
    label_v: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    unk_token_id: int | None = None

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, idx) -> "Split":
        """A new Split with the samples at positions ``idx`` (array of ints or bool mask)."""
        idx = np.asarray(idx)
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or isinstance(v, int):
                out[f.name] = v
            elif isinstance(v, dict):
                out[f.name] = {k: a[idx] for k, a in v.items()}
            elif isinstance(v, list):
                pos = np.flatnonzero(idx) if idx.dtype == bool else idx
                out[f.name] = [v[i] for i in pos]
            else:
                out[f.name] = v[idx]
        return Split(**out)


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool, True at real (non-padding) positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


@dataclass
class Batch:
    """What every model's ``forward`` receives.

    text:   (B, Lt, Dt) float features, audio: (B, La, Da), vision: (B, Lv, Dv).
    text_ids: (B, Lt) long token ids or None (used by fine-tuned text encoders).
    *_mask: (B, L) bool padding masks, True at real positions.
    *_avail: (B, L) bool availability masks, True where the element is observed
        (a real position that no missing-data protocol removed). avail implies mask.
    label: (B,) float; label_t/_a/_v: (B,) float or None; domain, index: (B,) long.
    raw_text, ids: length-B lists of str (the transcripts and the samples' ids).
    missing_rate: (B, 3) float, the missing rate the protocol drew per modality
        (zeros for clean data) -- LNLN's completeness target.
    clean: the same batch before corruption (None when no protocol was applied).
    unk_token_id: the id a missing-data protocol writes into ``text_ids`` for a removed
        word (the dataset's tokenizer's [UNK]); None when there are no ids.
    """

    text: torch.Tensor
    audio: torch.Tensor
    vision: torch.Tensor
    text_mask: torch.Tensor
    audio_mask: torch.Tensor
    vision_mask: torch.Tensor
    text_avail: torch.Tensor
    audio_avail: torch.Tensor
    vision_avail: torch.Tensor
    label: torch.Tensor
    domain: torch.Tensor
    index: torch.Tensor
    missing_rate: torch.Tensor
    raw_text: list = field(default_factory=list)
    ids: list = field(default_factory=list)
    text_ids: torch.Tensor | None = None
    label_t: torch.Tensor | None = None
    label_a: torch.Tensor | None = None
    label_v: torch.Tensor | None = None
    clean: "Batch | None" = None
    unk_token_id: int | None = None

    def __len__(self) -> int:
        return self.label.shape[0]

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, modality)

    def mask(self, modality: str) -> torch.Tensor:
        return getattr(self, f"{modality}_mask")

    def avail(self, modality: str) -> torch.Tensor:
        return getattr(self, f"{modality}_avail")

    def present(self) -> torch.Tensor:
        """(B, 3) bool: does each sample have any observed element of text/audio/vision?"""
        return torch.stack([self.avail(m).any(dim=1) for m in MODALITIES], dim=1)

    def to(self, device) -> "Batch":
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device, non_blocking=True)
            elif isinstance(v, Batch):
                v = v.to(device)
            moved[f.name] = v
        return Batch(**moved)

    def replace(self, **changes) -> "Batch":
        return replace(self, **changes)


def make_batch(split: Split, idx: np.ndarray) -> Batch:
    """Gather the samples ``idx`` of ``split`` into a Batch (no corruption applied)."""
    idx = np.asarray(idx, dtype=np.int64)
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a[idx]))  # noqa: E731
    text, audio, vision = t(split.text), t(split.audio), t(split.vision)
    masks = {
        m: length_mask(torch.from_numpy(getattr(split, f"{m}_lengths")[idx]), x.shape[1])
        for m, x in zip(MODALITIES, (text, audio, vision))
    }
    return Batch(
        text=text, audio=audio, vision=vision,
        text_mask=masks["text"], audio_mask=masks["audio"], vision_mask=masks["vision"],
        text_avail=masks["text"].clone(), audio_avail=masks["audio"].clone(),
        vision_avail=masks["vision"].clone(),
        label=t(split.label), domain=t(split.domain), index=torch.from_numpy(idx),
        missing_rate=torch.zeros(len(idx), 3),
        raw_text=[split.raw_text[i] for i in idx],
        ids=[split.ids[i] for i in idx],
        text_ids=t(split.text_ids),
        label_t=t(split.label_t), label_a=t(split.label_a), label_v=t(split.label_v),
        unk_token_id=split.unk_token_id,
    )


def iterate(split: Split, batch_size: int, shuffle: bool = False, seed: int = 0,
            epoch: int = 0, drop_last: bool = False) -> Iterator[Batch]:
    """Yield Batches over ``split``. With ``shuffle`` the order depends only on (seed, epoch)."""
    n = len(split)
    order = np.arange(n)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield make_batch(split, order[start:start + batch_size])
