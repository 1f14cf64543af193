"""Benchmarks: train-step time, samples/s, peak memory and parameters per model.

Each model runs in its own subprocess so that the peak resident memory on CPU
(``ru_maxrss``) belongs to that model alone; on CUDA the peak allocated memory is
read from ``torch.cuda.max_memory_allocated``. Timings are medians over ``steps``
steps after two warm-up steps.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pandas as pd

from .io import write_csv


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
    model = build(name, ds.spec, **options).to(dev).train()
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
