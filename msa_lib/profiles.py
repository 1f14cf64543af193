"""Run profiles (smoke / demo / full), the device helper, and recorded claims.

Every chapter has one ``parameters`` cell with ``PROFILE = "demo"``. The
``MSA_PROFILE`` environment variable wins over it, so both papermill (``-p``) and a
plain Jupyter Book build can switch profiles. ``MSA_DEVICE`` forces a device.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """How big a chapter's experiments are.

    name: "smoke" (CI, seconds), "demo" (laptop CPU, ~2 minutes a chapter, the
        committed outputs) or "full" (GPU, paper-scale).
    data_size: SynthMSA size to load ("smoke", "demo", "full").
    epochs: training epochs for one model.
    seeds: how many seeds a chapter averages over.
    batch_size: training batch size.
    width: hidden width of the small models.
    """

    name: str
    data_size: str
    epochs: int
    seeds: int
    batch_size: int
    width: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "smoke": Profile("smoke", data_size="smoke", epochs=1, seeds=1, batch_size=32, width=32, threads=2),
    "demo": Profile("demo", data_size="demo", epochs=8, seeds=2, batch_size=32, width=64, threads=2),
    "full": Profile("full", data_size="full", epochs=40, seeds=3, batch_size=64, width=128, threads=8),
}


def profile(name: str = "demo", **overrides) -> Profile:
    """The profile ``name``, unless ``MSA_PROFILE`` is set; fields may be overridden."""
    chosen = os.environ.get("MSA_PROFILE") or name
    if chosen not in PROFILES:
        raise ValueError(f"unknown profile {chosen!r}; choose one of {sorted(PROFILES)}")
    return replace(PROFILES[chosen], **overrides)


def device(prefer: str | None = None):
    """CUDA, then Apple MPS, then CPU; ``MSA_DEVICE`` (or ``prefer``) overrides -> torch.device."""
    import torch

    wanted = os.environ.get("MSA_DEVICE") or prefer
    if wanted:
        dev = torch.device(wanted)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"MSA_DEVICE={wanted!r} but CUDA is not available on this machine")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch; set the thread count and the pinned numerics' run-time part
    (deterministic algorithms, see ``msa_lib.numerics``); ``deterministic`` also covers CUDA."""
    import numpy as np
    import torch

    from . import numerics

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    numerics.apply(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False


def claims_dir() -> Path:
    """Where recorded claims go: ``MSA_CLAIMS_DIR`` or ``chapters/claims`` in the repo."""
    return Path(os.environ.get("MSA_CLAIMS_DIR") or REPO_ROOT / "chapters" / "claims")


class Claims:
    """A chapter's headline numbers, written to ``<claims_dir>/<chapter>.<profile>.json``.

    Tests read them back against profile-specific ranges, so a chapter that runs but
    learns nothing fails. The file is rewritten atomically after every ``record``.
    """

    def __init__(self, chapter: str, profile_name: str):
        self.chapter, self.profile = chapter, profile_name
        self.values: dict[str, float] = {}
        self.path = claims_dir() / f"{chapter}.{profile_name}.json"

    def record(self, name: str, value) -> float:
        value = float(value)
        self.values[name] = round(value, 4)
        from .io import write_json
        write_json(self.values, self.path, indent=1)
        return value


def load_claims(chapter: str, profile_name: str, directory: Path | None = None) -> dict:
    path = Path(directory or claims_dir()) / f"{chapter}.{profile_name}.json"
    return json.loads(path.read_text())


def load_study(name: str):
    """A committed study table (``chapters/studies/<name>``) -> (DataFrame, its header line).

    Looked up beside the running notebook first (``studies/<name>``), then in the repository.
    """
    import pandas as pd

    for path in (Path("studies") / name, REPO_ROOT / "chapters" / "studies" / name):
        if path.exists():
            return pd.read_csv(path, comment="#"), path.read_text().splitlines()[0].lstrip("# ")
    raise FileNotFoundError(f"no study table {name!r} in ./studies or {REPO_ROOT / 'chapters' / 'studies'}; "
                            f"run chapters/studies/{Path(name).stem}.py to make it")
