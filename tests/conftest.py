"""Shared fixtures: a tiny random dataset (fast) and SynthMSA smoke (real text features)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import msa_lib  # noqa: F401  (first: pins the CPU numerics before torch computes anything)
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)

from msa_lib.data.batch import Split  # noqa: E402
from msa_lib.data.spec import DatasetSpec  # noqa: E402


def random_split(n: int, dims=(16, 6, 8), lengths=(10, 20, 14), seed: int = 0, signal: bool = True) -> Split:
    """A Split of random features; with ``signal`` the label is readable from text and audio."""
    rng = np.random.default_rng(seed)
    lens = [rng.integers(max(2, L // 2), L + 1, n) for L in lengths]
    feats = []
    for d, L, ln in zip(dims, lengths, lens):
        x = rng.normal(size=(n, L, d)).astype(np.float32)
        x[np.arange(L)[None, :] >= ln[:, None]] = 0.0
        feats.append(x)
    label = np.clip(rng.normal(0, 1.5, n), -3, 3).astype(np.float32)
    if signal:
        feats[0][:, :, 0] += label[:, None] * (np.arange(lengths[0])[None, :] < lens[0][:, None])
        feats[1][:, :, 0] += 0.5 * label[:, None] * (np.arange(lengths[1])[None, :] < lens[1][:, None])
    return Split(text=feats[0], audio=feats[1], vision=feats[2], text_lengths=lens[0].astype(np.int64),
                 audio_lengths=lens[1].astype(np.int64), vision_lengths=lens[2].astype(np.int64),
                 label=label, raw_text=[f"sample {i}" for i in range(n)], ids=[str(i) for i in range(n)],
                 domain=(np.arange(n) % 2).astype(np.int64),
                 text_ids=rng.integers(1000, 2000, (n, lengths[0])).astype(np.int64),
                 label_t=label.copy(), label_a=(0.5 * label).astype(np.float32),
                 label_v=np.zeros(n, np.float32), unk_token_id=100)


@pytest.fixture(scope="session")
def fit_batch():
    """fit_batch(model, batch, steps, lr=3e-3): Adam on one batch in train mode for ``steps``
    steps; returns the loss terms of every step as floats (for overfitting tests)."""
    def run(model, batch, steps: int, lr: float = 3e-3) -> list[dict]:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        history = []
        for _ in range(steps):
            terms = model.loss(batch, model(batch))
            opt.zero_grad()
            terms["total"].backward()
            opt.step()
            history.append({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in terms.items()})
        return history
    return run


@pytest.fixture(scope="session")
def tiny():
    """A small random dataset object shaped like MMSAData (spec + three splits)."""
    spec = DatasetSpec("tiny", dims=(16, 6, 8), lengths=(10, 20, 14), n_domains=2,
                       unk_text_feature=tuple([0.5] * 16))
    return SimpleNamespace(spec=spec, train=random_split(96, seed=0), valid=random_split(32, seed=1),
                           test=random_split(32, seed=2))


@pytest.fixture(scope="session")
def synth_smoke():
    """SynthMSA at smoke size (real MiniLM text features), cached under _build/cache."""
    from msa_lib.data import load
    return load("synth:smoke")


@pytest.fixture(scope="module")
def one_thread():
    """The machine is shared: a module's tests run on one thread (restored afterwards).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_finite_when_modalities_go_missing(model, split, n: int = 16) -> None:
    """The model's predictions stay finite under each of the seven modality patterns and under
    GCNet's keep matrix at every MR 0 ... 0.7 (HME's and CyIN's protocols)."""
    from msa_lib.data.batch import make_batch
    from msa_lib.missing import PATTERNS, apply_keep_matrix, apply_pattern, modality_keep_matrix
    b = make_batch(split, np.arange(n))
    with torch.no_grad():
        for p in PATTERNS:
            assert torch.isfinite(model(apply_pattern(b, p)).pred).all(), p
        for mr in [round(0.1 * i, 1) for i in range(8)]:
            keep = modality_keep_matrix(len(split), mr, seed=3)
            assert torch.isfinite(model(apply_keep_matrix(b, keep)).pred).all(), mr


def load_script(name: str):
    """Import ``data_scripts/<name>.py`` as a module (the scripts are not a package)."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "data_scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_bert_root(tmp_path_factory):
    """A folder for MSA_BERT holding bert-base-uncased/ and bert-base-chinese/ (tiny random BERTs)."""
    root = tmp_path_factory.mktemp("bert")
    from msa_lib.layers.text import write_random_bert
    for name in ("bert-base-uncased", "bert-base-chinese"):
        write_random_bert(root / name, hidden=32, layers=2, heads=2, intermediate=64)
    return root


def pytest_collection_modifyitems(config, items):
    """The browser tests need headless Chromium: without it, stop at once with one message."""
    needs_browser = [i for i in items if "browser" in getattr(i, "fixturenames", ())]
    if needs_browser and not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.exit("the browser check needs headless Chromium: install the Debian/Ubuntu packages 'chromium' "
                    "and 'chromium-driver' (sudo apt-get install chromium chromium-driver), or deselect it "
                    "with -m 'not book'", returncode=3)
