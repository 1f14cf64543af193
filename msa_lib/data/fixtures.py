"""Small MMSA-format files with the exact shapes of the real releases.

The real MOSI/MOSEI/SIMS pickles are not redistributable, so the tests and the
chapters' "real-data" smoke runs use these: a few dozen samples whose arrays have the
real per-sample shapes (foundations spec, section 1.4), real-style BERT inputs
(``[CLS]`` = 101, ``[SEP]`` = 102, pad 0), zero padding after the true length, a few
``-inf`` audio entries like MMSA's acoustic files, and -- for SIMS -- unimodal labels
on the [-1, 1] scale. The features are random; a weak sentiment signal is planted in
the text so that a model can learn something.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# kind -> (text length, text dim, audio (L, D), vision (L, D), label bound, unimodal labels, aligned)
REAL_SHAPES = {
    "mosi_unaligned": (50, 768, (375, 5), (500, 20), 3.0, False, False),
    "mosi_aligned": (50, 768, (50, 5), (50, 20), 3.0, False, True),
    "mosei_unaligned": (50, 768, (500, 74), (500, 35), 3.0, False, False),
    "mosei_aligned": (50, 768, (50, 74), (50, 35), 3.0, False, True),
    "sims": (39, 768, (400, 33), (55, 709), 1.0, True, False),
}


def make_mmsa_fixture(kind: str = "mosi_unaligned", sizes=(32, 12, 12), seed: int = 0) -> dict:
    """An MMSA-format dict of ``kind`` (see REAL_SHAPES) with ``sizes`` train/valid/test samples."""
    if kind not in REAL_SHAPES:
        raise ValueError(f"unknown fixture kind {kind!r}; choose one of {sorted(REAL_SHAPES)}")
    lt, dt, (la, da), (lv, dv), bound, unimodal, aligned = REAL_SHAPES[kind]
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        # SIMS-style labels sit on a 0.2 grid, MOSI-style on a 1/3 grid (annotator averages)
        step = 0.2 if bound == 1.0 else 1 / 3
        label = np.round(rng.uniform(-bound, bound, n) / step) * step
        n_tok = rng.integers(5, lt + 1, n)                           # includes [CLS] and [SEP]
        ids = np.zeros((n, lt)); mask = np.zeros((n, lt))
        text = np.zeros((n, lt, dt), np.float32)
        for i, k in enumerate(n_tok):
            ids[i, :k] = np.r_[101, rng.integers(1000, 30000, k - 2), 102]
            mask[i, :k] = 1
            text[i, :k] = rng.normal(0, 0.5, (k, dt))
            text[i, :k, :8] += label[i] / bound                     # the planted signal
        frames = {}
        for m, L, d in (("audio", la, da), ("vision", lv, dv)):
            lengths = n_tok.copy() if aligned else rng.integers(max(2, L // 4), L + 1, n)
            x = rng.normal(0, 1, (n, L, d)).astype(np.float32)
            x[np.arange(L)[None, :] >= lengths[:, None]] = 0.0
            frames[m], frames[f"{m}_lengths"] = x, lengths
        frames["audio"][0, 0, 0] = -np.inf                           # as in some MMSA audio files
        split_dict = {
            "raw_text": [f"fixture utterance {i} of {split}" for i in range(n)],
            "id": [f"fixture{seed}_{split}$_${i}" for i in range(n)],
            "text": text,
            "text_bert": np.stack([ids, mask, np.zeros_like(ids)], axis=1),
            "audio": frames["audio"], "vision": frames["vision"],
            "regression_labels": label.astype(np.float32),
            "annotations": np.where(label > 0, "Positive", np.where(label < 0, "Negative", "Neutral")),
        }
        if not aligned:                                              # aligned releases carry no lengths
            split_dict["audio_lengths"] = frames["audio_lengths"]
            split_dict["vision_lengths"] = frames["vision_lengths"]
        if unimodal:
            for m in "TAV":
                noisy = label + rng.normal(0, 0.3, n)
                split_dict[f"regression_labels_{m}"] = np.clip(np.round(noisy / 0.2) * 0.2, -1, 1).astype(np.float32)
        data[split] = split_dict
    return data


def write_mmsa_fixture(path, kind: str = "mosi_unaligned", sizes=(32, 12, 12), seed: int = 0) -> Path:
    """Write :func:`make_mmsa_fixture` atomically to ``path`` and return the path."""
    from .mmsa import write_pickle_atomic
    return write_pickle_atomic(make_mmsa_fixture(kind, sizes, seed), path)
