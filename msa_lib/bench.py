"""Benchmarks: train-step time, samples/s, peak memory and parameters per model.

``run_bench`` times every registered model on small data; ``run_official_bench`` times
LNLN and DashFusion at the official configuration: MOSI shapes (50 text tokens, 375 x 5
audio, 500 x 20 vision frames), the ``mosi`` preset (recipe="official"), BERT-base
geometry with random weights, the official batch sizes (64; DashFusion 16 anchors plus 6
companions each), BERT fine-tuned and frozen. Time one machine's speed with the
machine's own numerics (``MSA_NUMERICS=native``, as the official code runs): the pinned
settings of msa_lib.numerics make BERT-sized matrix products about twice as slow.

Each model runs in its own subprocess so that the peak resident memory on CPU
(``ru_maxrss``) belongs to that model alone; on CUDA the peak allocated memory is
read from ``torch.cuda.max_memory_allocated``. Timings are medians over ``steps``
steps after two warm-up steps.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from .io import write_csv
from .profiles import REPO_ROOT


def _rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def bench_one(name: str, data: str = "synth:smoke", device: str | None = None, steps: int = 20,
              batch_size: int = 32, d_model: int | None = None) -> dict:
    """Time ``steps`` training steps of model ``name`` in this process."""
    import numpy as np
    import torch

    from .data import load
    from .data.batch import make_batch
    from .models import build
    from .profiles import device as pick_device

    dev = pick_device(device)
    ds = load(data)
    torch.manual_seed(0)
    options = {"d_model": d_model} if d_model else {}
    model = build(name, ds.spec, **options)
    model.prepare(ds)                       # e.g. MMSLF's prompts (its student step runs the teacher too)
    model = model.to(dev).train()
    model.on_epoch_start(0, ds.train, dev)  # e.g. DashFusion's companion lists: time the real step
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = min(batch_size, len(ds.train))
    batch = model.train_batch(make_batch(ds.train, np.arange(n)), 0, 0).to(dev)
    rss_before = _rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(steps + 2):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        loss = model.loss(batch, model(batch))["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    row = {"model": name, "device": str(dev), "batch_size": n, "params": model.n_params(),
           "step_ms": round(1000 * step, 2), "samples_per_s": round(n / step, 1)}
    if dev.type == "cuda":
        row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        row["device_name"] = torch.cuda.get_device_name(dev)
    else:
        row["peak_mem_mb"] = round(_rss_mb(), 1)
        row["mem_growth_mb"] = round(_rss_mb() - rss_before, 1)
    return row


def run_bench(models=None, data: str = "synth:smoke", device: str | None = None, steps: int = 20,
              batch_size: int = 32, d_model: int | None = None, out: str | None = None) -> pd.DataFrame:
    """Benchmark every model (each in a subprocess); returns a table and writes a CSV if ``out``."""
    from .models import available
    models = models or available()
    unknown = [m for m in models if m not in available()]
    if unknown:
        from .cli import UsageError
        raise UsageError(f"unknown model(s) {unknown}; available: {', '.join(available())}")
    rows = []
    for name in models:
        args = json.dumps({"name": name, "data": data, "device": device, "steps": steps,
                           "batch_size": batch_size, "d_model": d_model})
        proc = subprocess.run([sys.executable, "-c", f"import json,msa_lib.bench as b;"
                               f"print(json.dumps(b.bench_one(**json.loads({args!r}))))"],
                              capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark of {name!r} failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    df = pd.DataFrame(rows)
    if out:
        write_csv(df, out)
    return df


# Seconds per training step of the official code on the same input, 2 CPU threads, measured
# for issue 13 of this project (LNLN: github.com/Haoyu-ha/LNLN; DashFusion: the authors' code).
OFFICIAL_CPU_STEP_S = {("lnln", True): 47.7, ("lnln", False): 31.4,
                       ("dashfusion", True): 44.0, ("dashfusion", False): 33.5}
OFFICIAL_BATCH = {"lnln": 64, "dashfusion": 16}


def official_inputs(root) -> tuple[str, str]:
    """(MOSI-shaped pickle, MSA_BERT folder with a random BERT-base) under ``root``, made once."""
    from pathlib import Path

    from .data.fixtures import write_mmsa_fixture
    from .layers.text import write_random_bert

    root = Path(root)
    data, bert = root / "mosi_shaped.pkl", root / "bert"
    if not data.exists():
        write_mmsa_fixture(data, "mosi_unaligned", sizes=(96, 8, 8))
    if not (bert / "bert-base-uncased" / "config.json").exists():
        write_random_bert(bert / "bert-base-uncased")
    return str(data), str(bert)


def bench_official_one(name: str, finetune: bool, data: str, bert: str, steps: int = 2,
                       profile: str | None = None) -> dict:
    """Time ``steps`` training steps of ``name`` with the mosi preset at the official batch size.

    data: a MOSI-shaped MMSA pickle; bert: a folder holding ``bert-base-uncased/``;
    profile: write torch.profiler's table of one more step to this file.
    """
    import numpy as np
    import torch

    from . import numerics
    from .data import load
    from .data.batch import make_batch
    from .models import build

    ds = load(data)
    torch.manual_seed(0)
    bert_folder = os.path.join(bert, "bert-base-uncased")
    model = build(name, ds.spec, preset="mosi", text_encoder=bert_folder, finetune_text=finetune).train()
    model.on_epoch_start(0, ds.train, "cpu", seed=0)
    opt = torch.optim.AdamW(model.param_groups(1e-4), lr=1e-4)
    n = OFFICIAL_BATCH[name]
    batch = model.train_batch(make_batch(ds.train, np.arange(n)), 0, 0)

    def step():
        loss = model.loss(batch, model(batch))["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()                                                              # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        with open(profile, "w") as fh:
            fh.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    bert_params = sum(p.numel() for m in model.modules() if type(m).__name__ == "BertModel"
                      for p in m.parameters())
    sec = float(np.median(times))
    official = OFFICIAL_CPU_STEP_S.get((name, finetune))
    return {"model": name, "bert": "fine-tuned" if finetune else "frozen", "batch_size": n,
            "encoded_per_step": n * (2 if name == "lnln" else 1 + 3 * model.cfg.n_companions_each),
            "step_s": round(sec, 2), "samples_per_s": round(n / sec, 2), "peak_mem_gb": round(_rss_mb() / 1024, 2),
            "params_without_bert": model.n_params(trainable_only=False) - bert_params,
            "params_with_bert": model.n_params(trainable_only=False),
            "official_step_s": official, "ratio_to_official": round(sec / official, 2) if official else None,
            "huge_pages": os.environ.get("THP_MEM_ALLOC_ENABLE", "0") == "1",
            "threads": torch.get_num_threads(), "numerics": numerics.mode(),
            "cpu": torch.backends.cpu.get_cpu_capability()}


def run_official_bench(root, steps: int = 2, out: str | None = None, models=("lnln", "dashfusion"),
                       huge_pages=(True, False)) -> pd.DataFrame:
    """Every (model, BERT fine-tuned/frozen, huge pages on/off) row, each in its own subprocess
    (its own peak memory). ``huge_pages``: PyTorch's ``THP_MEM_ALLOC_ENABLE``, which backs large
    CPU tensors with 2 MB pages (fewer page faults on fresh attention maps; the same bits,
    ``tests/test_numerics.py``). The official times were measured without it, so the rows
    with ``huge_pages=False`` are the like-for-like comparison."""
    import platform
    from datetime import date

    data, bert = official_inputs(root)
    rows = []
    for name, hp, finetune in itertools.product(models, huge_pages, (True, False)):
        args = json.dumps({"name": name, "finetune": finetune, "data": data, "bert": bert, "steps": steps})
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1" if hp else "0"}
        proc = subprocess.run([sys.executable, "-c", "import json,msa_lib.bench as b;"
                               f"print(json.dumps(b.bench_official_one(**json.loads({args!r}))))"],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"official-configuration benchmark of {name!r} failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.insert(0, "date", str(date.today()))
    df.insert(1, "device", f"{platform.machine()} CPU, {os.cpu_count()} cores")
    if out:
        from .io import write_study_csv
        write_study_csv(df, out, f"python -m msa_lib bench --official --steps {steps}", threads=int(df.threads.iloc[0]))
    return df


def run_grid_bench(backends=("local", "ray"), methods=None, seeds=(0,), workers: int | None = None) -> pd.DataFrame:
    """Cells per hour of the same smoke grid (every registered model, the 25 missing-data conditions) under
    each backend, each into a fresh results folder. ``wall_s`` includes starting the pool or the Ray
    cluster (``startup_s``: Ray's start alone); ``overhead_pct``: extra wall time against the first
    backend; ``overhead_per_cell_pct``: the same without Ray's start, which a grid pays once."""
    import shutil
    import tempfile

    from . import grid
    from .models import available
    from .recipes import BOOK_MODELS
    methods = list(methods or [*BOOK_MODELS, *(m for m in available() if m not in BOOK_MODELS)])
    data = grid.data_name("synth", "smoke")
    jobs = grid.plan(methods, grid.expand_conditions("complete,random,mr,pattern"), list(seeds), "smoke", "synth",
                     data)
    cells = sum(len(j.conditions) for j in jobs)
    rows, tables = [], {}
    for backend in backends:
        folder = Path(tempfile.mkdtemp(prefix=f"grid-bench-{backend}-", dir=REPO_ROOT / "_build"))
        started = False
        try:
            t0 = time.perf_counter()
            if backend == "ray":                   # the cluster's start, once per grid, timed apart
                started = grid.start_ray(workers or os.cpu_count() or 1)
            startup = time.perf_counter() - t0
            tables[backend] = grid.run_grid(jobs, folder, backend=backend, workers=workers, progress=False)
            wall = time.perf_counter() - t0
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if started:
                import ray
                ray.shutdown()
        rows.append({"backend": backend, "cells": cells, "trainings": len(jobs), "wall_s": round(wall, 1),
                     "startup_s": round(startup, 1), "s_per_cell": round(wall / cells, 3),
                     "cells_per_hour": round(3600 * cells / wall)})
    df = pd.DataFrame(rows)
    df["overhead_pct"] = (100 * (df["wall_s"] / df["wall_s"].iloc[0] - 1)).round(1)
    # per cell, once the cluster is up (a real grid pays the start once, over thousands of cells)
    df["overhead_per_cell_pct"] = (100 * ((df["wall_s"] - df["startup_s"]) / df["wall_s"].iloc[0] - 1)).round(1)
    first = tables[backends[0]]
    metric_cols = [c for c in first.columns if c not in (*grid.COST_FIELDS, "device", "date")]
    df["same_table"] = [tables[b][metric_cols].equals(first[metric_cols]) for b in backends]
    return df
