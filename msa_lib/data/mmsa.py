"""A safe reader for MMSA-format pickles (MOSI, MOSEI, CH-SIMS, CH-SIMS v2, SynthMSA).

The file layout is described in ``shared/specs/foundations.md`` section 1: a dict with
``train``/``valid``/``test``, each a dict of parallel arrays (``text`` (N, L, 768),
``text_bert`` (N, 3, L), ``audio``, ``vision``, ``*_lengths``, ``regression_labels``,
``regression_labels_T/A/V`` for SIMS, ``raw_text``, ``id``).

Three promises:

1. **Nothing runs.** Pickles can execute code when loaded. :class:`SafeUnpickler`
   only admits the handful of NumPy reconstruction functions and plain containers;
   anything else is refused before it is called.
2. **One clear error.** Every malformed input raises :class:`MMSAFormatError` naming
   the file, the split and the key (truncated file, missing split or key, wrong rank
   or sample count, non-finite or out-of-range labels).
3. **Clean arrays.** Features become float32 with ``-inf``/``NaN`` set to 0 (MMSA's
   own loader does this for audio); lengths come from ``*_lengths``, else the BERT
   attention mask, else the last non-zero frame.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .batch import Split
from .spec import MODALITIES, DatasetSpec

SPLITS = ("train", "valid", "test")

# SHA-256 of the releases linked from the MMSA README (foundations spec, section 1.1).
KNOWN_SHA256 = {
    "MOSI/Processed/unaligned_50.pkl": "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    "MOSI/Processed/aligned_50.pkl": "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    "MOSEI/Processed/unaligned_50.pkl": "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    "MOSEI/Processed/aligned_50.pkl": "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
    "SIMS/Processed/unaligned_39.pkl": "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",
}

# Short names accepted by ``msa_lib.data.load`` -> path under the data folder.
DATASETS = {
    "mosi": "MOSI/Processed/unaligned_50.pkl",
    "mosi_aligned": "MOSI/Processed/aligned_50.pkl",
    "mosei": "MOSEI/Processed/unaligned_50.pkl",
    "mosei_aligned": "MOSEI/Processed/aligned_50.pkl",
    "sims": "SIMS/Processed/unaligned_39.pkl",
    "simsv2": "SIMSv2/Processed/sims_unaligned.pkl",
}


class MMSAFormatError(ValueError):
    """A file that is not a well-formed MMSA dataset; the message says where."""


# ------------------------------------------------------------------ safe unpickling
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that only resolves NumPy array machinery and plain containers."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: an MMSA file holds only NumPy arrays, lists, "
            "dicts and strings, so this pickle may try to run code; nothing was executed")


def _unpickle(path: Path):
    try:
        with open(path, "rb") as fh:
            return SafeUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        if "refused to load" in str(exc):
            raise MMSAFormatError(f"{path}: {exc}") from None
        raise MMSAFormatError(f"{path}: not a readable pickle ({exc}); is the file truncated?") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as exc:
        raise MMSAFormatError(f"{path}: the pickle is truncated or corrupt ({type(exc).__name__}: {exc})") from None


def write_pickle_atomic(obj, path) -> Path:
    """Pickle ``obj`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def known_release(path) -> str | None:
    """The MMSA release name (e.g. ``MOSI/Processed/unaligned_50.pkl``) that ``path`` ends with."""
    posix = Path(path).as_posix()
    return next((k for k in KNOWN_SHA256 if posix.endswith(k)), None)


def check_release(path, release: str) -> None:
    """Raise MMSAFormatError unless ``path`` has the published SHA-256 of ``release``."""
    digest = sha256(path)
    if digest != KNOWN_SHA256[release]:
        raise MMSAFormatError(
            f"{path}: SHA-256 {digest[:16]}... does not match the published hash of {release} "
            f"({KNOWN_SHA256[release][:16]}...); the download is incomplete or a different "
            "version -- re-download it, or pass verify=False to load it anyway")


def default_data_dir() -> Path:
    """``$MSA_DATA`` or ``<repo>/data`` -- where ``data_scripts/prepare_real.py`` puts releases."""
    from ..profiles import REPO_ROOT
    return Path(os.environ.get("MSA_DATA") or REPO_ROOT / "data")


def resolve_dataset_path(name: str) -> Path:
    """Map a short name (``mosi``, ``sims``, ...) to its file under the data folder."""
    key = name.lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use 'synth', one of {sorted(DATASETS)}, "
                         "or a path to an MMSA .pkl file")
    path = default_data_dir() / DATASETS[key]
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: the real {name} release is not bundled (licence and size). "
            "Download it from the MMSA README's links, then run "
            "`python data_scripts/prepare_real.py --src DOWNLOAD_FOLDER` (see data_scripts/README.md)")
    return path


# ------------------------------------------------------------------ the dataset object
@dataclass
class MMSAData:
    """A loaded dataset: its spec, three splits, where it came from, what was cleaned."""

    spec: DatasetSpec
    train: Split
    valid: Split
    test: Split
    path: Path | None = None
    config: dict = field(default_factory=dict)
    cleaned: dict = field(default_factory=dict)   # "split/key" -> number of non-finite values set to 0

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise KeyError(f"no split {name!r}; have {SPLITS}")
        return getattr(self, name)

    def __repr__(self) -> str:
        sizes = "/".join(str(len(self.split(s))) for s in SPLITS)
        return f"MMSAData({self.spec.name}: {sizes} samples, dims {self.spec.dims}, lengths {self.spec.lengths})"


class _Reader:
    """Validates and converts one split; every error names file, split and key."""

    def __init__(self, path: Path, split: str, raw):
        self.path, self.split = path, split
        if not isinstance(raw, dict):
            self.fail(None, f"expected a dict of arrays, got {type(raw).__name__}")
        self.raw = raw
        self.n = None

    def fail(self, key, msg):
        where = f"split {self.split!r}" + (f", key {key!r}" if key else "")
        raise MMSAFormatError(f"{self.path}: {where}: {msg}")

    def has(self, key) -> bool:
        return key in self.raw and self.raw[key] is not None

    def array(self, key, ndim: int, dtype=np.float32, what: str = "") -> np.ndarray:
        if not self.has(key):
            self.fail(key, f"missing (keys present: {sorted(self.raw)})")
        try:
            a = np.asarray(self.raw[key], dtype=dtype)
        except (TypeError, ValueError) as exc:
            self.fail(key, f"cannot be read as numbers ({exc})")
        if a.ndim != ndim:
            self.fail(key, f"expected a {ndim}-d array {what}, got shape {a.shape}")
        self.count(key, len(a))
        return a

    def count(self, key, n: int):
        if self.n is None:
            self.n = n
        elif n != self.n:
            self.fail(key, f"has {n} samples but the split's other keys have {self.n}")

    def features(self, key, cleaned: dict) -> np.ndarray:
        a = self.array(key, 3, what="(N, L, D)")
        if a.shape[1] == 0 or a.shape[2] == 0:
            self.fail(key, f"has an empty axis, shape {a.shape}")
        bad = ~np.isfinite(a)
        if bad.any():
            cleaned[f"{self.split}/{key}"] = int(bad.sum())
            a = np.where(bad, 0.0, a).astype(np.float32)
        return a

    def labels(self, key, low: float, high: float) -> np.ndarray:
        y = self.array(key, 1)
        bad = ~np.isfinite(y)
        if bad.any():
            self.fail(key, f"{int(bad.sum())} non-finite label(s), first at sample {int(np.flatnonzero(bad)[0])}")
        out = (y < low - 1e-6) | (y > high + 1e-6)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            self.fail(key, f"label {y[i]:g} at sample {i} is outside the range [{low:g}, {high:g}]")
        return y

    def strings(self, key, default_prefix: str | None) -> list:
        """A list of str; when absent, ``default_prefix + index`` (or "" when prefix is None)."""
        if not self.has(key):
            return [("" if default_prefix is None else f"{default_prefix}{i}") for i in range(self.n)]
        values = [str(v) for v in list(self.raw[key])]
        self.count(key, len(values))
        return values

    def lengths(self, key, x: np.ndarray, fallback: np.ndarray | None) -> np.ndarray:
        """True lengths in [1, L]: stored ``key``, else ``fallback``, else the last non-zero frame."""
        L = x.shape[1]
        if self.has(key):
            ln = self.array(key, 1, dtype=np.float64)
            if not np.isfinite(ln).all() or (ln < 0).any():
                self.fail(key, "lengths must be finite and non-negative")
            ln = ln.astype(np.int64)
        elif fallback is not None:
            ln = fallback
        else:
            nonzero = np.abs(x).sum(axis=2) > 0                     # (N, L)
            ln = np.where(nonzero.any(1), L - np.argmax(nonzero[:, ::-1], axis=1), 1)
        return np.clip(ln, 1, L).astype(np.int64)


def _guess_metric_set(name: str, raw_splits: dict) -> str:
    if "sims" in name.lower():
        return "sims"
    top = max(float(np.max(np.abs(np.asarray(raw_splits[s].get("regression_labels", [0]), np.float64))))
              for s in SPLITS)
    has_unimodal = all("regression_labels_T" in raw_splits[s] for s in SPLITS)
    return "sims" if has_unimodal and top <= 1.0 else "mosi"


def load_mmsa(path, name: str | None = None, verify: bool = True, metric_set: str | None = None) -> MMSAData:
    """Read an MMSA-format pickle into an :class:`MMSAData`.

    path: the .pkl file. name: dataset name for the spec (default: derived from the
    path). verify: check the SHA-256 of known MMSA releases. metric_set: "mosi" or
    "sims" (default: "sims" when the name says so or labels are SIMS-like).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    release = known_release(path)
    if verify and release is not None:
        check_release(path, release)
    raw = _unpickle(path)
    if not isinstance(raw, dict):
        raise MMSAFormatError(f"{path}: expected a dict with train/valid/test, got {type(raw).__name__}")
    for s in SPLITS:
        if s not in raw:
            raise MMSAFormatError(f"{path}: split {s!r} is missing (top-level keys: {sorted(map(str, raw))})")
        if not isinstance(raw[s], dict):
            raise MMSAFormatError(f"{path}: split {s!r}: expected a dict of arrays, got {type(raw[s]).__name__}")
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    name = name or config.get("name") or (release.split("/")[0].lower() if release else path.stem)
    metric_set = metric_set or _guess_metric_set(name, raw)
    low, high = (-1.0, 1.0) if metric_set == "sims" else (-3.0, 3.0)

    cleaned: dict = {}
    splits = {s: _read_split(path, s, raw[s], low, high, cleaned) for s in SPLITS}

    ref = splits["train"]
    for s in ("valid", "test"):
        for m in MODALITIES:
            a, b = getattr(ref, m), getattr(splits[s], m)
            if a.shape[1:] != b.shape[1:]:
                raise MMSAFormatError(f"{path}: split {s!r}, key {m!r}: shape (N, {b.shape[1]}, {b.shape[2]}) "
                                      f"differs from train's (N, {a.shape[1]}, {a.shape[2]})")
    unimodal = all(splits[s].label_t is not None for s in SPLITS)
    if not unimodal:
        for s in SPLITS:
            splits[s].label_t = splits[s].label_a = splits[s].label_v = None
    has_ids = all(splits[s].text_ids is not None for s in SPLITS)
    # [UNK] is id 100 in the vocabularies of every MMSA release (bert-base-uncased for MOSI
    # and MOSEI, bert-base-chinese for SIMS) and of SynthMSA's MiniLM; a file may say otherwise.
    unk_id = int(config.get("unk_token_id", 100))
    for s in SPLITS:
        if not has_ids:
            splits[s].text_ids = None
        splits[s].unk_token_id = unk_id if has_ids else None
    unk = config.get("unk_text_feature")
    if unk is not None:
        unk = np.asarray(unk, np.float32).reshape(-1)
        if unk.shape[0] != ref.text.shape[2]:
            raise MMSAFormatError(f"{path}: config 'unk_text_feature' has size {unk.shape[0]}, "
                                  f"text features have {ref.text.shape[2]}")
    spec = DatasetSpec(
        name=name,
        dims=tuple(int(getattr(ref, m).shape[2]) for m in MODALITIES),
        lengths=tuple(int(getattr(ref, m).shape[1]) for m in MODALITIES),
        label_range=(low, high), metric_set=metric_set, unimodal_labels=unimodal,
        n_domains=int(max(splits[s].domain.max() for s in SPLITS)) + 1,
        has_text_ids=has_ids,
        unk_token_id=unk_id,
        unk_text_feature=None if unk is None else tuple(float(v) for v in unk),
    )
    return MMSAData(spec=spec, path=path, config=config, cleaned=cleaned, **splits)


_KNOWN_KEYS = {"text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths", "text_lengths",
               "regression_labels", "regression_labels_T", "regression_labels_A", "regression_labels_V",
               "raw_text", "id", "domain"}


def _read_split(path: Path, split: str, raw: dict, low: float, high: float, cleaned: dict) -> Split:
    r = _Reader(path, split, raw)
    label = r.labels("regression_labels", low, high)
    text = r.features("text", cleaned)
    audio = r.features("audio", cleaned)
    vision = r.features("vision", cleaned)

    text_ids, text_len = None, None
    if r.has("text_bert"):
        tb = r.array("text_bert", 3, dtype=np.float64, what="(N, 3, L)")
        if tb.shape[1] != 3 or tb.shape[2] != text.shape[1]:
            r.fail("text_bert", f"expected shape (N, 3, {text.shape[1]}) (ids, mask, segments), got {tb.shape}")
        if not np.isfinite(tb).all():
            r.fail("text_bert", "token ids and masks must be finite")
        text_ids = tb[:, 0].astype(np.int64)
        text_len = (tb[:, 1] > 0).sum(axis=1).astype(np.int64)
    text_len = r.lengths("text_lengths", text, text_len)
    # Aligned files have no frame lengths; their frames follow the words, so use the text length.
    aligned_fallback = text_len if not r.has("audio_lengths") and audio.shape[1] == text.shape[1] else None
    audio_len = r.lengths("audio_lengths", audio, aligned_fallback)
    aligned_fallback = text_len if not r.has("vision_lengths") and vision.shape[1] == text.shape[1] else None
    vision_len = r.lengths("vision_lengths", vision, aligned_fallback)

    unimodal = {}
    for m in "TAV":
        key = f"regression_labels_{m}"
        unimodal[m] = r.labels(key, low, high) if r.has(key) else None
    if any(v is None for v in unimodal.values()):
        unimodal = dict.fromkeys("TAV")

    domain = np.zeros(r.n, np.int64)
    if r.has("domain"):
        d = r.array("domain", 1, dtype=np.float64)
        if not np.isfinite(d).all() or (d < 0).any() or (d != np.round(d)).any():
            r.fail("domain", "domain ids must be non-negative integers")
        domain = d.astype(np.int64)

    extra = {}
    for key, value in raw.items():
        if key in _KNOWN_KEYS:
            continue
        try:
            a = np.asarray(value)
        except Exception:   # noqa: BLE001 -- unusual extras are simply not exposed
            continue
        if a.ndim >= 1 and len(a) == r.n and a.dtype != object:
            extra[key] = a
    return Split(text=text, audio=audio, vision=vision, text_lengths=text_len, audio_lengths=audio_len,
                 vision_lengths=vision_len, label=label, raw_text=r.strings("raw_text", None),
                 ids=r.strings("id", f"{split}_"), domain=domain, text_ids=text_ids,
                 label_t=unimodal["T"], label_a=unimodal["A"], label_v=unimodal["V"], extra=extra)

