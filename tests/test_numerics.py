"""The pinned CPU numerics (msa_lib/numerics.py) are active wherever a chapter runs, and
with them a training run gives the same bits in processes started in different ways."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from msa_lib import numerics

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
PINNABLE = numerics.unsupported_reason() is None and not numerics.opted_out()
PINNED_STATE = {**numerics.EXPECTED, "torch_threads": numerics.THREADS, "mkl_threads": numerics.THREADS}


def clean_env(**extra) -> dict:
    """This process's environment without any pinned variable: what a user's shell may look like."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV and k != numerics.OPT_OUT}
    return {**env, **extra}


def test_makefile_exports_exactly_the_pinned_environment():
    exported = dict(re.findall(r"^export (\w+) := (\S+)$", (ROOT / "Makefile").read_text(), re.M))
    assert {k: exported.get(k) for k in numerics.PINNED_ENV} == numerics.PINNED_ENV


def test_every_chapter_runs_in_the_pinned_kernel_and_checks_it_first():
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == numerics.KERNEL_NAME, path.name
        setup = next(c for c in nb.cells if c.cell_type == "code" and "seed_everything(" in c.source)
        before_data = setup.source.split("load(")[0]
        assert "numerics.ensure(" in before_data, f"{path.name}: ensure() must run before any data is made"


def test_the_kernel_spec_is_installed_in_this_environment():
    path = Path(sys.prefix) / "share" / "jupyter" / "kernels" / numerics.KERNEL_NAME / "kernel.json"
    assert path.exists(), f"{path} is missing: run `make setup` (or python -m msa_lib kernel)"
    assert json.loads(path.read_text()) == numerics.kernel_spec()


def run_in_chapter_kernel(code: str, env: dict) -> str:
    """Start the chapters' kernel the way papermill and nbval do, run ``code``, return its stdout."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name=numerics.KERNEL_NAME, cwd=str(ROOT / "chapters"), env=env)
    out = []
    try:
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: out.append(
            msg["content"].get("text", "") if msg["msg_type"] == "stream" else ""))
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return "".join(out)


def test_pins_are_active_inside_the_chapter_kernel():
    """Started from a shell without any pinned variable, torch imported first as chapter 2 does."""
    code = ("import json, torch\nfrom msa_lib import numerics\nnumerics.apply(2)\n"
            "print(json.dumps(numerics.active()))\nprint(numerics.describe())")
    state_line, description = run_in_chapter_kernel(code, clean_env()).strip().splitlines()[-2:]
    state = json.loads(state_line)
    if PINNABLE:
        assert {k: state[k] for k in PINNED_STATE} == PINNED_STATE
        assert description.startswith("numerics: pinned")
    else:
        assert description.startswith("numerics: machine defaults")


TRAIN = r"""
import sys
if sys.argv[1] == "torch-first":
    import torch
    junk = [torch.empty(n) for n in (7, 1 << 16, 12345)]   # a different heap when training starts
import hashlib, json
import msa_lib
import torch
from msa_lib import numerics
from msa_lib.data.batch import make_batch
from msa_lib.data.spec import DatasetSpec
from msa_lib.models import build
sys.path.insert(0, sys.argv[2])
from conftest import random_split

msa_lib.seed_everything(0, threads=2)
spec = DatasetSpec("tiny", dims=(16, 6, 8), lengths=(10, 20, 14), n_domains=2)
batch = make_batch(random_split(48, seed=0), range(48))
digest = hashlib.sha256()
for name in ("tfn", "mult"):
    torch.manual_seed(0)
    model = build(name, spec)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(12):
        loss = model.loss(batch, model(batch))["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        digest.update(p.detach().numpy().tobytes())
print(json.dumps({"sha256": digest.hexdigest(), "state": numerics.active()}))
"""


def train_in_subprocess(order: str, env: dict, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", TRAIN, order, str(ROOT / "tests")], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_training_gives_the_same_bits_in_differently_started_processes(tmp_path):
    # A: a bare shell; msa_lib pins itself on import, before torch.
    a = train_in_subprocess("msa_lib-first", clean_env(PYTHONHASHSEED="1"), ROOT)
    # B: the pins come from the environment (kernel, Makefile); torch is imported and used first.
    b = train_in_subprocess("torch-first", clean_env(PYTHONHASHSEED="2", **numerics.PINNED_ENV), tmp_path)
    assert a["sha256"] == b["sha256"]
    if not PINNABLE:
        return
    for run in (a, b):
        assert {k: run["state"][k] for k in PINNED_STATE} == PINNED_STATE
    # The same run with the machine's defaults: where those are not the pinned ones (this
    # machine's AVX-512, say), the weights differ; that is what the pins are for.
    native = train_in_subprocess("msa_lib-first", clean_env(MSA_NUMERICS="native"), ROOT)
    if native["state"]["cpu_capability"] != numerics.EXPECTED["cpu_capability"]:
        assert native["sha256"] != a["sha256"]


def test_a_chapter_refuses_to_run_unpinned_by_accident():
    """torch computed before msa_lib was imported: too late to pin, so ensure() stops the chapter."""
    code = ("import torch\ntorch.ones(4, 4) @ torch.ones(4, 4)\nfrom msa_lib import numerics\n"
            "try:\n    print(numerics.ensure())\nexcept RuntimeError as err:\n    print('REFUSED', err)\n")
    accident = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True,
                              timeout=120)
    on_purpose = subprocess.run([sys.executable, "-c", code], env=clean_env(MSA_NUMERICS="native"),
                                capture_output=True, text=True, timeout=120)
    if PINNABLE:
        assert accident.stdout.startswith("REFUSED") and "MSA_NUMERICS=native" in accident.stdout
    assert on_purpose.stdout.startswith("numerics: machine defaults"), on_purpose.stdout + on_purpose.stderr


def test_a_wrong_opt_out_value_is_an_error():
    with pytest.raises(ValueError, match="MSA_NUMERICS"):
        numerics.opted_out({"MSA_NUMERICS": "fast"})


BIG = """
import hashlib, torch
import msa_lib  # noqa: F401
torch.manual_seed(0)
x = torch.randn(64, 8, 300, 300)                       # 184 MB: allocated in huge pages when enabled
w = (x @ x.transpose(-2, -1)).softmax(-1) @ x
print(hashlib.sha256(w.numpy().tobytes()).hexdigest())
"""


def test_huge_pages_change_no_bits():
    """THP_MEM_ALLOC_ENABLE=1 (PyTorch's 2 MB pages for large CPU tensors, an option of
    `bench --official`) changes speed only: the same computation gives the same bits."""
    digests = {}
    for flag in ("0", "1"):
        done = subprocess.run([sys.executable, "-c", BIG], env=clean_env(THP_MEM_ALLOC_ENABLE=flag),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        digests[flag] = done.stdout.split()[-1]
    assert digests["0"] == digests["1"]
