"""Pinned CPU numerics: the same bits from the same code on any x86-64 machine with AVX2.

PyTorch picks its vectorised kernels (AVX2, AVX-512, ...) by CPU, and MKL picks its
matrix-multiply code path by CPU vendor and model; each path rounds differently, so
the same training run ends with different weights on different laptops. The book's
committed outputs are checked bit for bit (nbval), so every place a chapter runs
pins the choices below *before torch does its first computation*:

========================  ==============  =============================================
variable                  value           what it fixes
========================  ==============  =============================================
``ATEN_CPU_CAPABILITY``   ``avx2``        PyTorch's vectorised kernels (every x86-64 CPU
                                          of the last decade has AVX2)
``MKL_CBWR``              ``COMPATIBLE``  MKL's GEMM code path; the one branch MKL
                                          documents as identical on Intel and AMD CPUs
                                          (``AVX2`` falls back to per-CPU dispatch on AMD)
``MKL_DYNAMIC``           ``FALSE``       MKL uses exactly the threads it is given
``ONEDNN_MAX_CPU_ISA``    ``AVX2``        oneDNN, used by a few PyTorch operators
``OMP_NUM_THREADS``,      ``2``           how reductions are split between threads
``MKL_NUM_THREADS``
========================  ==============  =============================================

plus ``torch.use_deterministic_algorithms(True)`` (``apply``). They are set by the
project's Jupyter kernel (``msa_lib.kernel``, installed by ``python -m msa_lib kernel``), by the Makefile, and by
``import msa_lib`` itself when torch has not computed anything yet.

``MSA_NUMERICS=native`` is the one way to run with the machine's own defaults (on
purpose: outputs then differ from the committed ones in the last digits). On a
machine where the pins cannot apply (not x86-64, no AVX2, a PyTorch without MKL,
e.g. Apple silicon) nothing is pinned and ``describe`` says which guarantee is lost.
GPU computations are not covered: a run on CUDA is not bit-for-bit reproducible.
"""
from __future__ import annotations

import ctypes
import os
import platform
import re
import sys
import tempfile

PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}
THREADS = 2
KERNEL_NAME = "msa-book"
OPT_OUT = "MSA_NUMERICS"          # MSA_NUMERICS=native: the machine's defaults, on purpose
EXPECTED = {"cpu_capability": "AVX2", "mkl_cnr": "COMPATIBLE", "mkl_dynamic": False, "deterministic": True}


def opted_out(environ=os.environ) -> bool:
    """True when the user asked for the machine's defaults (``MSA_NUMERICS=native``)."""
    value = environ.get(OPT_OUT, "pinned").strip().lower()
    if value not in {"pinned", "native"}:
        raise ValueError(f"{OPT_OUT}={environ[OPT_OUT]!r}: use 'pinned' (the default) or 'native'")
    return value == "native"


def unsupported_reason() -> str | None:
    """Why this machine cannot run the pinned settings, or None when it can (no torch import)."""
    machine = platform.machine().lower()
    if machine not in {"x86_64", "amd64"}:
        return f"the CPU is {machine}, not x86-64 (no AVX2 kernels, no MKL)"
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo") as fh:
                flags = next((line for line in fh if line.startswith("flags")), "")
        except OSError:
            flags = " avx2 "
        if " avx2" not in flags:
            return "the CPU has no AVX2"
    return None


def mode() -> str:
    """"pinned", or "native" when opted out or unsupported (used to key caches of computed data)."""
    return "native" if opted_out() or unsupported_reason() else "pinned"


def pin_environment(environ=os.environ) -> bool:
    """Write the pinned variables into ``environ`` (unless opted out or unsupported) -> pinned?

    They take effect only if torch has not yet run a computation in this process; the
    thread and MKL_DYNAMIC settings only if torch is not imported yet.
    """
    if opted_out(environ) or unsupported_reason():
        return False
    environ.update(PINNED_ENV)
    return True


def _mkl_verbose_line() -> str:
    """Run one small matrix product with MKL's verbose log on and return the log.

    MKL prints its conditional-reproducibility mode (``CNR:...``), whether it may
    change the thread count (``Dyn:``) and the threads it used (``NThr:``); it writes to
    the process's file descriptor 1, so that is redirected to a temporary file.
    """
    import torch

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
                a = torch.ones(64, 64)
                a @ a
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        return log.read()


def active() -> dict:
    """What this process actually runs with: read from torch and MKL, not from the environment."""
    import torch

    state = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cnr": None,
        "mkl_dynamic": None,
        "mkl_threads": None,
        "torch_threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
    if torch.backends.mkl.is_available():
        line = _mkl_verbose_line()
        found = re.search(r"CNR:(\S+)\s+Dyn:(\d)\s.*?NThr:(\d+)", line)
        if found:
            state["mkl_cnr"] = found.group(1)
            state["mkl_dynamic"] = found.group(2) == "1"
            state["mkl_threads"] = int(found.group(3))
    return state


def apply(threads: int | None = None) -> None:
    """Set what torch takes at run time: deterministic algorithms and, if given, the thread count."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if not opted_out():
        torch.use_deterministic_algorithms(True, warn_only=True)


def problems(threads: int = THREADS, state: dict | None = None) -> list[str]:
    """How the running process (or ``state``, from ``active()``) departs from the pinned settings."""
    state = state or active()
    found = [f"{key} is {state[key]!r}, pinned {want!r}" for key, want in EXPECTED.items() if state[key] != want]
    for key in ("torch_threads", "mkl_threads"):
        if state[key] != threads:
            found.append(f"{key} is {state[key]!r}, pinned {threads!r}")
    return found


def describe(threads: int = THREADS) -> str:
    """One line for a chapter's first output: the numerics it ran under."""
    reason = unsupported_reason()
    if reason:
        return (f"numerics: machine defaults, because {reason}; results agree with the committed "
                f"outputs within the claims' ranges, not bit for bit")
    if opted_out():
        return f"numerics: machine defaults ({OPT_OUT}=native); not bit-for-bit comparable with the book"
    state = active()
    found = problems(threads, state)
    if found:
        return "numerics: NOT pinned (" + "; ".join(found) + ")"
    return (f"numerics: pinned (PyTorch kernels {state['cpu_capability']}, MKL CNR {state['mkl_cnr']}, "
            f"{state['torch_threads']} threads, deterministic algorithms)")


def ensure(threads: int = THREADS) -> str:
    """``describe()``, but raise when pinning was expected and is not active.

    Chapters call this first, so that running one with other numerics happens only on
    purpose (``MSA_NUMERICS=native``), never by accident.
    """
    if not (unsupported_reason() or opted_out()):
        found = problems(threads)
        if found:
            raise RuntimeError(
                "this process does not run the book's pinned numerics: " + "; ".join(found) + ". "
                f"Use the '{KERNEL_NAME}' Jupyter kernel (installed by `make setup`; `make lab` starts "
                "Jupyter with it), or import msa_lib before torch computes anything, or set "
                f"{OPT_OUT}=native to run with this machine's defaults on purpose.")
    return describe(threads)


def kernel_spec(python: str = sys.executable) -> dict:
    """The project's Jupyter kernel: this Python, started through ``msa_lib.kernel``."""
    return {
        "argv": [python, "-m", "msa_lib.kernel", "-f", "{connection_file}"],
        "display_name": "Python 3 (MSA book, pinned numerics)",
        "language": "python",
        "metadata": {"debugger": True},
    }


def install_kernel(prefix: str = sys.prefix) -> str:
    """Write the kernel spec into ``<prefix>/share/jupyter/kernels/msa-book`` -> its path."""
    import json
    from pathlib import Path

    from .io import write_json

    path = Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"
    spec = kernel_spec()
    if not path.exists() or json.loads(path.read_text()) != spec:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(spec, path, indent=1)
    return str(path)
