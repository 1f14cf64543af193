"""Missing-data protocols: which elements of a batch are removed, and how.

Three protocols from the literature (see the foundations spec, section 5):

* ``random_missing``  -- each valid token/frame of each modality is dropped with
  probability ``rate`` (TFR-Net, EMT-DLFR, LNLN). Text tokens become the unknown
  token (or a zero vector); the first and last real tokens ([CLS], [SEP]) are kept.
  Audio/vision frames become zero vectors.
* ``apply_pattern``   -- one of the seven fixed modality subsets is kept, the other
  modalities are removed entirely (MMIN-style "specific modality missing").
* ``modality_dropout`` -- whole-modality dropout for training: each (sample, modality)
  is removed with probability ``p``, always keeping at least one modality.
* ``modality_keep_matrix`` / ``apply_keep_matrix`` -- the modality-level protocol of
  GCNet, DiCMoR, IMDer, HME and CyIN: a per-sample keep matrix over (text, audio, vision)
  for a whole split, with an overall missing rate MR and at least one modality per sample.

Every random draw comes from a counter-based hash of (seed, stream, sample index,
position), so the same (seed, sample) gives the same mask whatever the batch order,
batch size or number of DataLoader workers. Each modality uses its own stream, so
masks of different modalities are independent (LNLN's code re-seeds one generator
per modality, which makes equally shaped modalities share their masks).
"""
from __future__ import annotations

import numpy as np
import torch

from .data.batch import Batch
from .data.spec import MODALITIES

PATTERNS = ("tav", "ta", "tv", "av", "t", "a", "v")  # the seven non-empty subsets
PATTERN_NAMES = {"tav": "{t,a,v}", "ta": "{t,a}", "tv": "{t,v}", "av": "{a,v}",
                 "t": "{t}", "a": "{a}", "v": "{v}"}
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of each element (Steele et al.'s SplitMix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def hashed_uniform(seed: int, stream: int, index, n_positions: int = 1) -> torch.Tensor:
    """Uniform numbers in [0, 1) fixed by (seed, stream, sample index, position).

    index: (B,) sample indices. Returns (B, n_positions) float32.
    """
    idx = np.asarray(index, dtype=np.uint64).reshape(-1, 1)
    pos = np.arange(n_positions, dtype=np.uint64).reshape(1, -1)
    key = _splitmix64(np.uint64(seed & 0xFFFFFFFF) * np.uint64(1_000_003) + np.uint64(stream))
    with np.errstate(over="ignore"):
        h = _splitmix64(_splitmix64(key ^ (idx * np.uint64(0x100000001B3))) + pos)
    u = (h >> np.uint64(40)).astype(np.float64) / float(1 << 24)  # 24 random bits
    return torch.from_numpy(u.astype(np.float32))


def _stream(kind: int, modality: int, epoch: int) -> int:
    return (kind * 1000 + epoch) * 8 + modality


def _as_rates(rate, batch_size: int) -> torch.Tensor:
    """Scalar, (3,), (B,) or (B, 3) rate -> (B, 3) float tensor in [0, 1]."""
    r = torch.as_tensor(rate, dtype=torch.float32)
    if r.dim() == 0:
        r = r.expand(batch_size, 3)
    elif r.dim() == 1 and r.numel() == 3 and batch_size != 3:
        r = r[None, :].expand(batch_size, 3)
    elif r.dim() == 1:
        r = r[:, None].expand(batch_size, 3)
    if r.shape != (batch_size, 3):
        raise ValueError(f"rate must be a scalar, (3,), (B,) or (B, 3); got shape {tuple(r.shape)}")
    if torch.any((r < 0) | (r > 1)) or not torch.isfinite(r).all():
        raise ValueError(f"missing rates must lie in [0, 1], got min {r.min():.3f} max {r.max():.3f}")
    return r.contiguous()


def _special_tokens(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) padding mask -> (B, L) bool marking the first and last real token."""
    special = torch.zeros_like(mask)
    lengths = mask.sum(1)
    rows = torch.arange(mask.shape[0])
    has = lengths > 0
    special[rows[has], 0] = True
    special[rows[has], (lengths[has] - 1)] = True
    return special


def _drop_text(batch: Batch, drop: torch.Tensor, text_fill: str, unk_vector) -> dict:
    """Replace dropped text positions; returns the changed Batch fields.

    Features get ``text_fill``; token ids (read by a text encoder such as BERT) get the
    dataset tokenizer's [UNK] id *before* the encoder, so a removed word cannot leak
    through the contextual features of its neighbours.
    """
    changes = {}
    text = batch.text.clone()
    if text_fill == "unk":
        if unk_vector is None:
            raise ValueError("text_fill='unk' on precomputed text features needs the dataset's "
                             "unk_text_feature (spec.unk_vector); this dataset has none -- use "
                             "text_fill='zero'")
        text[drop] = torch.as_tensor(unk_vector, dtype=text.dtype, device=text.device)
    elif text_fill == "zero":
        text[drop] = 0.0
    else:
        raise ValueError(f"text_fill must be 'unk' or 'zero', got {text_fill!r}")
    changes["text"] = text
    if batch.text_ids is not None:
        if batch.unk_token_id is None:
            raise ValueError("this batch has token ids but no unk_token_id: build it with make_batch from a "
                             "Split whose unk_token_id the loader set (the dataset spec's unk_token_id)")
        ids = batch.text_ids.clone()
        ids[drop] = batch.unk_token_id
        changes["text_ids"] = ids
    return changes


def _corrupt(batch: Batch, keep: dict[str, torch.Tensor], rates: torch.Tensor,
             text_fill: str, unk_vector, keep_special: bool) -> Batch:
    """Apply per-element keep masks (True = keep) to a clean batch."""
    keep = dict(keep)
    if keep_special:
        keep["text"] = keep["text"] | (_special_tokens(batch.text_mask) & keep["text_special"])
    keep.pop("text_special", None)
    changes = {}
    for m in MODALITIES:
        observed = batch.avail(m) & keep[m]
        dropped = batch.mask(m) & ~observed
        changes[f"{m}_avail"] = observed
        if m == "text":
            changes.update(_drop_text(batch, dropped, text_fill, unk_vector))
        else:
            changes[m] = batch.features(m) * observed.unsqueeze(-1).to(batch.features(m).dtype)
    base = batch.clean if batch.clean is not None else batch
    return batch.replace(**changes, missing_rate=torch.maximum(batch.missing_rate, rates), clean=base)


def random_missing(batch: Batch, rate, seed: int = 0, epoch: int = 0, text_fill: str = "zero",
                   unk_vector=None, keep_special: bool = True) -> Batch:
    """Drop each valid element of each modality independently with probability ``rate``.

    rate: scalar, (3,) per modality, (B,) per sample, or (B, 3) per sample and modality.
    Returns a new Batch whose ``*_avail`` masks mark what is left, ``missing_rate``
    holds the rates, and ``clean`` the uncorrupted batch.
    """
    rates = _as_rates(rate, len(batch))
    keep = {}
    for mi, m in enumerate(MODALITIES):
        u = hashed_uniform(seed, _stream(1, mi, epoch), batch.index.cpu().numpy(), batch.mask(m).shape[1])
        keep[m] = (u.to(rates.device) >= rates[:, mi:mi + 1]).to(batch.mask(m).device)
    keep["text_special"] = torch.ones_like(batch.text_mask)
    return _corrupt(batch, keep, rates, text_fill, unk_vector, keep_special)


def apply_pattern(batch: Batch, pattern: str, text_fill: str = "zero", unk_vector=None) -> Batch:
    """Keep only the modalities in ``pattern`` (one of PATTERNS, e.g. "ta" = text+audio)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown modality pattern {pattern!r}; choose one of {PATTERNS}")
    keep = {m: torch.full_like(batch.mask(m), m[0] in pattern) for m in MODALITIES}
    # A removed text modality loses its [CLS]/[SEP] too: nothing of it is observed.
    keep["text_special"] = torch.full_like(batch.text_mask, "t" in pattern)
    rates = torch.tensor([[0.0 if m[0] in pattern else 1.0 for m in MODALITIES]]).expand(len(batch), 3)
    return _corrupt(batch, keep, rates, text_fill, unk_vector, keep_special=True)


def modality_dropout(batch: Batch, p: float, seed: int = 0, epoch: int = 0, text_fill: str = "zero",
                     unk_vector=None) -> Batch:
    """Remove whole modalities per sample with probability ``p``; at least one survives."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"modality dropout probability must be in [0, 1), got {p}")
    idx = batch.index.cpu().numpy()
    u = torch.cat([hashed_uniform(seed, _stream(2, mi, epoch), idx) for mi in range(3)], dim=1)  # (B, 3)
    present = u >= p
    rescue = hashed_uniform(seed, _stream(3, 0, epoch), idx)[:, 0]  # which one to keep if all dropped
    none_left = ~present.any(1)
    chosen = (rescue * 3).long().clamp(max=2)
    present[none_left, chosen[none_left]] = True
    return _remove_modalities(batch, present, text_fill, unk_vector)


def _remove_modalities(batch: Batch, present: torch.Tensor, text_fill: str, unk_vector) -> Batch:
    """Remove, per sample, every element of the modalities whose ``present`` (B, 3) entry is False
    (a removed text loses its [CLS]/[SEP] too)."""
    keep = {m: present[:, mi:mi + 1].to(batch.mask(m).device).expand_as(batch.mask(m))
            for mi, m in enumerate(MODALITIES)}
    keep["text_special"] = keep["text"]
    return _corrupt(batch, keep, (~present).float(), text_fill, unk_vector, keep_special=True)


def modality_keep_matrix(n: int, missing_rate: float, seed: int = 0, max_tries: int = 1000) -> np.ndarray:
    """Which modalities each of ``n`` samples keeps: (n, 3) bool over (text, audio, vision).

    The generator of GCNet / DiCMoR / IMDer, which HME and CyIN reuse (specs/hme.md 3.1),
    written from its description:

    * keep = 1 - MR. keep == 1: everything. keep <= 1/3: every sample keeps exactly one
      modality, drawn uniformly -- so MR = 0.7 really removes 2/3 of the modalities.
    * Otherwise each sample gets one guaranteed modality (uniform), and every cell is also
      kept with probability p = (3 keep - 1) / 2, in whole percent, rounded down; the
      expected kept fraction of the union is then 1/3 + 2p/3 = keep. The whole draw is
      repeated until the kept fraction is within 0.005 of ``keep``, over max(n, 32) rows
      that are then cut to n. (The official code estimates p from one trial draw instead
      of the expectation; its p differs by at most a percent.)

    Deterministic in ``seed``; a row of the matrix belongs to the sample with that index.
    """
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing rate MR must be in [0, 1), got {missing_rate}")
    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    keep, rows = 1.0 - missing_rate, max(n, 32)
    rng = np.random.Generator(np.random.PCG64(seed))
    if missing_rate == 0.0:
        return np.ones((n, 3), dtype=bool)
    one_hot = lambda: np.eye(3, dtype=bool)[rng.integers(0, 3, rows)]      # noqa: E731
    if keep <= 1.0 / 3.0:
        return one_hot()[:n]
    percent = int(np.floor(100.0 * (3.0 * keep - 1.0) / 2.0 + 1e-9))
    for _ in range(max_tries):
        matrix = one_hot() | (rng.integers(0, 100, (rows, 3)) < percent)
        if abs(matrix.mean() - keep) < 0.005:
            return matrix[:n]
    raise RuntimeError(f"no keep matrix within 0.005 of {keep:.3f} in {max_tries} draws (n={n})")


def apply_keep_matrix(batch: Batch, matrix: np.ndarray, text_fill: str = "zero", unk_vector=None) -> Batch:
    """Remove the modalities that ``matrix`` (from ``modality_keep_matrix``) drops for each sample.

    Row ``batch.index[i]`` of the matrix decides sample i, so the result does not depend on
    the batch order or size. A removed modality loses every element (text: its [CLS]/[SEP] too).
    """
    idx = batch.index.cpu().numpy()
    if idx.max(initial=-1) >= len(matrix):
        raise IndexError(f"sample index {int(idx.max())} but the keep matrix has only {len(matrix)} rows")
    present = torch.from_numpy(np.asarray(matrix, dtype=bool)[idx])                  # (B, 3)
    return _remove_modalities(batch, present, text_fill, unk_vector)


def instance_keep_matrix(n: int, probability: float, seed: int = 0) -> np.ndarray:
    """CyIN's instance-level protocol (in its code, not in its tables): each clip, with
    ``probability``, keeps one of the six incomplete subsets of PATTERNS drawn uniformly; the
    other clips stay complete. -> (n, 3) bool keep matrix (text, audio, vision) for
    ``apply_keep_matrix``."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"instance-level missing probability must be in [0, 1], got {probability}")
    rng = np.random.default_rng(seed)
    subsets = np.array([[m in p for m in "tav"] for p in PATTERNS if p != "tav"])      # (6, 3)
    keep = np.ones((n, 3), dtype=bool)
    hit = rng.random(n) < probability
    keep[hit] = subsets[rng.integers(0, len(subsets), int(hit.sum()))]
    return keep


def sample_train_rates(index, seed: int, epoch: int, p_complete: float = 0.5, exact: bool = False) -> torch.Tensor:
    """LNLN's training rates: per (sample, modality) r ~ U(0, 1), but r = 0 for the complete ones.

    index: (B,) sample indices. Returns (B, 3). Fresh draws every epoch. Which samples
    are complete: each with probability ``p_complete`` (``exact=False``), or exactly
    ``int(p_complete * B)`` of them per modality (``exact=True``: the official code picks
    a random half with ``random.sample``).
    """
    idx = np.asarray(index)
    r = torch.cat([hashed_uniform(seed, _stream(4, mi, epoch), idx) for mi in range(3)], dim=1)
    u = torch.cat([hashed_uniform(seed, _stream(5, mi, epoch), idx) for mi in range(3)], dim=1)
    if exact:
        complete = u.argsort(dim=0).argsort(dim=0) < int(p_complete * len(idx))   # the k lowest draws
    else:
        complete = u < p_complete
    return torch.where(complete, torch.zeros_like(r), r)


def train_keep_matrix(n: int, rate: float, rates: tuple, seed: int, epoch: int) -> np.ndarray:
    """(n, 3) bool keep matrix for one training epoch. ``rates`` empty: one MR for everyone (the
    official one-model-per-MR protocol); otherwise each sample draws its MR from ``rates``."""
    base = seed * 100_003 + epoch * 7_919
    if not rates:
        return modality_keep_matrix(n, rate, seed=base)
    choice = (hashed_uniform(seed, 9_000 + epoch, np.arange(n))[:, 0].numpy() * len(rates)).astype(int)
    out = np.ones((n, 3), dtype=bool)
    for k, r in enumerate(rates):
        rows = choice == k
        if rows.any():
            out[rows] = modality_keep_matrix(n, r, seed=base + 17 * k + 1)[rows]
    return out
