"""What travels with a dataset: shapes, label range, metric set.

One model definition serves SynthMSA, MOSI, MOSEI and SIMS because every model
reads its input sizes from a :class:`DatasetSpec` instead of hard-coding them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MODALITIES = ("text", "audio", "vision")  # the one order used everywhere in msa_lib


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a dataset.

    dims:     feature size per modality, in MODALITIES order, e.g. (768, 5, 20) for MOSI.
    lengths:  padded sequence length per modality, e.g. (50, 375, 500).
    label_range: (low, high) of the regression label, (-3, 3) or (-1, 1).
    metric_set:  "mosi" (MOSI/MOSEI/SynthMSA) or "sims" (CH-SIMS, CH-SIMS v2).
    unimodal_labels: True when the split has text/audio/vision labels (SIMS style).
    n_domains: number of distinct domain ids (1 when the data has no domains).
    has_text_ids: the splits carry token ids (MMSA's ``text_bert``) for a text encoder.
    unk_token_id: the tokenizer's [UNK] id; a removed word becomes this id before the
        text encoder (100 in every MMSA release's BERT vocabulary, unless the file says).
    unk_text_feature: feature vector for the unknown token, used when a missing-data
        protocol replaces text tokens by "unk" on precomputed features (None if unknown).
    score_scale: predictions and labels are multiplied by this before the metrics (1 unless
        the data was put on a common label scale, e.g. MOSI's [-3, 3] divided by 3 when it is
        combined with SIMS: the metrics are then computed on the native scale again).
    """

    name: str
    dims: tuple[int, int, int]
    lengths: tuple[int, int, int]
    label_range: tuple[float, float] = (-3.0, 3.0)
    metric_set: str = "mosi"
    unimodal_labels: bool = False
    n_domains: int = 1
    has_text_ids: bool = False
    unk_token_id: int = 100
    score_scale: float = 1.0
    unk_text_feature: tuple[float, ...] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.metric_set not in ("mosi", "sims"):
            raise ValueError(f"metric_set must be 'mosi' or 'sims', got {self.metric_set!r}")
        if len(self.dims) != 3 or len(self.lengths) != 3:
            raise ValueError("dims and lengths need one entry per modality (text, audio, vision)")

    @property
    def unk_vector(self) -> np.ndarray | None:
        return None if self.unk_text_feature is None else np.asarray(self.unk_text_feature, np.float32)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("unk_text_feature")
        return d
