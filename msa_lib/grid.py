"""The benchmark grid: methods x conditions x seeds, one JSON file per cell, on a laptop or a cluster.

A **cell** is one number-producing experiment, named by its key

    (method, preset, profile, data, condition, seed, code version)

and a **condition** is one of

* ``complete``                       -- the clean test clips;
* ``random:R``   (R = 0.0 ... 0.9)   -- every element of every modality missing with rate R (LNLN's protocol);
* ``mr:R``       (R = 0.1 ... 0.7)   -- whole modalities missing per clip, overall rate MR (GCNet, HME, CyIN);
* ``pattern:P``  (P = tav, ta, ..., v) -- one of the seven fixed modality subsets kept (MMIN);
* ``indomain:D``                     -- the test clips of domain D, model trained on every domain;
* ``holdout:D``                      -- the same clips, model trained on every *other* domain (chapter 8).

The first five are *test-time* conditions: one model per (method, seed) is trained and then scored under
each of them. ``holdout:D`` is a *train-time* condition: it trains its own model. A **job** is one
training plus the cells it scores; :func:`run_job` is the only function that computes anything, and it is
a pure function of the job (same seed, same kind of device -> same numbers), so the three backends --
``local`` (a process pool), ``ray`` (Ray core tasks) and ``slurm`` (submitit job arrays) -- give the
same table.

Every cell is written atomically to ``<results>/<method>/<cell>.json``; a run skips cells whose file
exists, so a killed run resumes where it stopped. ``load_results`` reads a folder back into one tidy
table (one row per cell) and names any file that is not a cell result.

    python -m msa_lib grid --profile smoke                     # every method and condition, 1 seed
    python -m msa_lib grid --profile demo --seeds 0,1,2 --backend ray
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import threading
import time
from datetime import date
from pathlib import Path

from .io import write_json
from .profiles import REPO_ROOT

SCHEMA = "msa-grid-cell/1"
RANDOM_RATES = tuple(round(0.1 * i, 1) for i in range(10))    # 0.0 ... 0.9
MR_RATES = tuple(round(0.1 * i, 1) for i in range(1, 8))      # 0.1 ... 0.7
PATTERNS = ("tav", "ta", "tv", "av", "t", "a", "v")
KINDS = ("complete", "random", "mr", "pattern", "indomain", "holdout")
BACKENDS = ("local", "ray", "slurm")
KEY_FIELDS = ("method", "preset", "profile", "data", "condition", "seed", "version")
COST_FIELDS = ("n_params", "train_s", "step_ms", "infer_ms_per_clip", "peak_mem_mb")


class GridError(ValueError):
    """A grid that cannot run as asked (unknown method, condition, backend ...)."""


class ResultFileError(ValueError):
    """A file in a results folder that is not a readable grid cell result."""


# ---------------------------------------------------------------------------------- conditions
def parse_condition(text: str) -> tuple[str, object]:
    """``"random:0.3"`` -> ("random", 0.3); ``"complete"`` -> ("complete", None). Raises GridError."""
    kind, _, value = str(text).partition(":")
    if kind == "complete" and not value:
        return kind, None
    if kind in ("random", "mr"):
        allowed = RANDOM_RATES if kind == "random" else MR_RATES
        try:
            rate = round(float(value), 1)
            rate = rate if abs(float(value) - rate) < 1e-9 else None       # 0.05 is not on the grid
        except ValueError:
            rate = None
        if rate not in allowed:
            raise GridError(f"condition {text!r}: {kind} needs a rate in {allowed[0]}..{allowed[-1]} "
                            f"in steps of 0.1, e.g. '{kind}:{allowed[1]}'")
        return kind, rate
    if kind == "pattern":
        if value not in PATTERNS:
            raise GridError(f"condition {text!r}: pattern must be one of {', '.join(PATTERNS)}")
        return kind, value
    if kind in ("indomain", "holdout"):
        if not value:
            raise GridError(f"condition {text!r}: name the domain, e.g. '{kind}:vloggers'")
        return kind, value
    raise GridError(f"unknown condition {text!r}; conditions are complete, random:R (R 0.0-0.9), mr:R "
                    f"(R 0.1-0.7), pattern:P (P in {','.join(PATTERNS)}), indomain:D and holdout:D")


def condition_name(kind: str, value=None) -> str:
    if kind == "complete":
        return "complete"
    return f"{kind}:{value:.1f}" if kind in ("random", "mr") else f"{kind}:{value}"


def all_conditions(domains=()) -> list[str]:
    """Every condition of the protocol: complete, 10 random rates, 7 MR rates, 7 patterns, and per
    domain its in-domain and held-out scores (none when the data has no domains)."""
    out = ["complete"] + [condition_name("random", r) for r in RANDOM_RATES]
    out += [condition_name("mr", r) for r in MR_RATES] + [f"pattern:{p}" for p in PATTERNS]
    out += [f"indomain:{d}" for d in domains] + [f"holdout:{d}" for d in domains]
    return out


def expand_conditions(spec: str, domains=()) -> list[str]:
    """``"all"``, kinds (``"random,pattern"``) or explicit conditions (``"complete,mr:0.3"``) -> names."""
    out = []
    for item in [s.strip() for s in str(spec).split(",") if s.strip()]:
        if item == "all":
            out += all_conditions(domains)
        elif item in ("random", "mr", "pattern", "indomain", "holdout"):
            picked = [c for c in all_conditions(domains) if c.startswith(item + ":")]
            if not picked:
                raise GridError(f"condition kind {item!r} needs domains, and this data has none "
                                f"(use SynthMSA, 'mosi+mosei+sims', or a file with domain ids)")
            out += picked
        else:
            kind, value = parse_condition(item)
            if kind in ("indomain", "holdout") and value not in domains:
                raise GridError(f"condition {item!r}: unknown domain {value!r}; this data has "
                                f"{', '.join(domains) or 'no domains'}")
            out.append(condition_name(kind, value))
    if not out:
        raise GridError("no conditions given")
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------- keys and jobs
# Files that cannot change a cell's numbers (tables, plots, the command line, the book's tooling):
# editing them keeps the code version, so finished cells stay valid.
NOT_COMPUTING = ("leaderboard.py", "cli.py", "viz.py", "exercises.py", "publish.py", "student.py", "kernel.py",
                 "bench.py", "__main__.py")


def code_version() -> str:
    """A short hash of the ``msa_lib`` source files that compute a cell (all but ``NOT_COMPUTING``):
    a cell computed by other code has another key."""
    h = hashlib.sha1()
    root = Path(__file__).resolve().parent
    for path in sorted(p for p in root.rglob("*.py") if p.relative_to(root).as_posix() not in NOT_COMPUTING):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:10]


def _slug(text) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in str(text))


@dataclasses.dataclass(frozen=True)
class CellKey:
    method: str
    preset: str
    profile: str
    data: str
    condition: str
    seed: int
    version: str

    def file_name(self) -> str:
        data = hashlib.sha1(self.data.encode()).hexdigest()[:6]
        return (f"{self.method}_{self.preset}_{self.profile}_{_slug(self.condition)}_s{self.seed}"
                f"_d{data}_{self.version}.json")

    def path(self, results_dir) -> Path:
        return Path(results_dir) / self.method / self.file_name()


@dataclasses.dataclass(frozen=True)
class Job:
    """One training (``train``: "all" domains, or "holdout:D") and the conditions it scores."""
    method: str
    preset: str
    profile: str
    data: str
    seed: int
    version: str
    train: str
    conditions: tuple

    def cells(self) -> list[CellKey]:
        return [CellKey(self.method, self.preset, self.profile, self.data, c, self.seed, self.version)
                for c in self.conditions]


def plan(methods, conditions, seeds, profile: str = "demo", preset: str = "synth", data: str = "synth",
         version: str | None = None) -> list[Job]:
    """The jobs of a grid, in a stable order: per (method, seed) one job for the test-time
    conditions, one per held-out domain."""
    version = version or code_version()
    jobs = []
    for seed in seeds:                        # seed by seed: a stopped run has whole seeds to show
        for method in methods:
            test_time = tuple(c for c in conditions if not c.startswith("holdout:"))
            if test_time:
                jobs.append(Job(method, preset, profile, data, int(seed), version, "all", test_time))
            jobs += [Job(method, preset, profile, data, int(seed), version, c, (c,))
                     for c in conditions if c.startswith("holdout:")]
    return jobs


def pending(jobs, results_dir) -> list[Job]:
    """The jobs with at least one cell not yet on disk (narrowed to those cells)."""
    out = []
    for job in jobs:
        todo = tuple(k.condition for k in job.cells() if not k.path(results_dir).exists())
        if todo:
            out.append(dataclasses.replace(job, conditions=todo))
    return out


def data_name(data: str, profile: str) -> str:
    """``"synth"`` -> the profile's SynthMSA (``synth:<size>:0``); anything else as given."""
    from .profiles import PROFILES
    if data == "synth":
        if profile not in PROFILES:
            raise GridError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        return f"synth:{PROFILES[profile].data_size}:0"
    return data


# ---------------------------------------------------------------------------------- one job
_DATA = {}


def _load(name: str):
    if name not in _DATA:
        from .data import load
        _DATA.clear()                   # one dataset per worker is enough, and bounds memory
        _DATA[name] = load(name)
    return _DATA[name]


def _resident_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):         # not Linux: the process's high-water mark
        import resource
        scale = 1 if platform.system() == "Darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc), so that resident memory at the
    start of a job is what is still in use, not what earlier jobs of this worker freed."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):          # not glibc: the measure includes reused free memory
        pass


class _PeakMemory:
    """Peak resident memory above the level at entry, sampled every 10 ms (CPU), or CUDA's peak.

    On a CPU the first training in a process also pays PyTorch's one-time allocations (about 80 MB
    here), so ``run_job`` warms each worker up once before it measures anything."""

    def __init__(self, device):
        self.cuda = getattr(device, "type", str(device)) == "cuda"

    def __enter__(self):
        if self.cuda:
            import torch
            torch.cuda.reset_peak_memory_stats()
            return self
        _release_free_memory()
        self.start = self.peak = _resident_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _resident_mb())

    def __exit__(self, *exc):
        if self.cuda:
            import torch
            self.mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.mb = max(self.peak, _resident_mb()) - self.start


_WARM = set()


def _warm_up(data, threads, dev) -> None:
    """One epoch of early fusion, once per worker and dataset: PyTorch's one-time allocations and
    thread pools then do not count as the first measured job's memory and time. Every job
    re-seeds before it trains, so this changes no number."""
    if (data.spec.name, dev.type) in _WARM:
        return
    from .recipes import train_recipe
    train_recipe("early_fusion", data, 0, threads=threads, device=dev, epochs=1)
    _WARM.add((data.spec.name, dev.type))


def _train_overrides(profile: str) -> dict:
    """Smoke: two epochs (a pipeline check); demo: each chapter's recipe; full: the profile's epochs."""
    from .profiles import PROFILES
    return {"smoke": {"epochs": 2}, "demo": {}}.get(profile, {"epochs": PROFILES[profile].epochs})


def _protocol(kind: str, value, seed: int, n: int):
    """The batch transform of a test-time condition (masks drawn from the cell's seed)."""
    from .missing import apply_keep_matrix, apply_pattern, modality_keep_matrix, random_missing
    if kind == "random":
        return lambda b: random_missing(b, value, seed=seed)
    if kind == "mr":
        keep = modality_keep_matrix(n, value, seed=seed)
        return lambda b: apply_keep_matrix(b, keep)
    if kind == "pattern":
        return lambda b: apply_pattern(b, value)
    return None


def _scores(metrics: dict) -> dict:
    return {k: round(float(v), 4) for k, v in metrics.items() if isinstance(v, (int, float))}


def run_job(job: Job, results_dir=None, threads: int | None = 1, device: str | None = None) -> list[dict]:
    """Train ``job``'s model and score each of its conditions -> one record per cell.

    With ``results_dir`` each record is also written there, atomically, as it is finished. The
    masks of the missing-data conditions are drawn from the job's seed (LNLN scores each checkpoint
    with masks from its own config seed)."""
    import torch

    from .data.domains import holdout, in_domain
    from .profiles import device as pick_device
    from .recipes import train_recipe
    from .train import evaluate

    dev = pick_device(device)
    data = _load(job.data)
    train_data = holdout(data, job.train.split(":", 1)[1]) if job.train != "all" else data
    torch.set_num_threads(threads or torch.get_num_threads())
    _warm_up(data, threads, dev)
    with _PeakMemory(dev) as memory:
        t0 = time.perf_counter()
        model, result = train_recipe(job.method, train_data, job.seed, preset=job.preset, threads=threads,
                                     device=dev, **_train_overrides(job.profile))
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        clean = evaluate(model, train_data.test, train_data.spec, device=dev)
        infer_ms = 1000 * (time.perf_counter() - t0) / max(1, len(train_data.test))
    epochs_run = len(result.history)
    batch = result.config.get("batch_size") or 32
    steps = max(1, epochs_run * -(-len(train_data.train) // batch))
    cost = {"n_params": int(model.inference_params()), "train_s": round(train_s, 2),
            "step_ms": round(1000 * result.seconds / steps, 2), "infer_ms_per_clip": round(infer_ms, 4),
            "peak_mem_mb": round(memory.mb, 1)}
    run = {"device": dev.type, "device_name": _device_name(dev), "threads": threads, "date": str(date.today()),
           "host": platform.node(), "best_epoch": int(result.best_epoch), "train": job.train}
    records = []
    for key in job.cells():
        kind, value = parse_condition(key.condition)
        if kind == "holdout":
            metrics = result.test                          # the held-out domain's test clips
        elif kind == "complete":
            metrics = clean
        elif kind == "indomain":
            ref = in_domain(data, value)
            metrics = evaluate(model, ref.test, ref.spec, device=dev)
        else:
            split = train_data.test
            metrics = evaluate(model, split, train_data.spec, _protocol(kind, value, job.seed, len(split)), device=dev)
        record = {"schema": SCHEMA, "key": dataclasses.asdict(key), "metrics": _scores(metrics),
                  "metric_set": train_data.spec.metric_set, "cost": cost, "run": run}
        if results_dir is not None:
            write_json(record, key.path(results_dir))
        records.append(record)
    return records


def _device_name(dev) -> str:
    if dev.type == "cuda":
        import torch
        return torch.cuda.get_device_name(dev)
    return f"{platform.machine()} CPU"


# ---------------------------------------------------------------------------------- backends
def _progress(total: int, done: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, unit="cell", disable=not enabled, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} cells [{elapsed}{postfix}]")


def _eta(seconds: float, done: int, left: int) -> str:
    """Time left from the mean time per training so far (a training, not a cell, is the unit of work)."""
    if done == 0:
        return "?"
    s = int(seconds / done * left)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _run_local(todo, results_dir, workers, threads, device, bar):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    context = multiprocessing.get_context("spawn")      # no fork after torch started its threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_job, job, str(results_dir), threads, device): job for job in todo}
        try:
            for future in as_completed(futures):
                try:
                    records = future.result()
                except BrokenProcessPool:
                    job = futures[future]
                    raise GridError(f"a worker died (killed, or out of memory) during {job.method} seed {job.seed} "
                                    f"({job.train}); every finished cell is saved in {results_dir}: rerun the "
                                    f"same command to resume") from None
                yield futures[future], records
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def ray_temp_dir() -> Path:
    """Ray's session folder: ``MSA_RAY_TMP``, else ``_build/ray`` (Ray needs a short path: its
    sockets live there and Unix socket paths stop at 107 characters)."""
    return Path(os.environ.get("MSA_RAY_TMP") or REPO_ROOT / "_build" / "ray").resolve()


def _ray_env() -> dict:
    from .numerics import PINNED_ENV
    keep = set(PINNED_ENV) | {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "MSA_NUMERICS"}
    return {k: os.environ[k] for k in sorted(keep) if k in os.environ}


def start_ray(workers: int, threads: int | None = 1, gpus_per_cell: float = 0.0) -> bool:
    """Connect to the Ray cluster at ``RAY_ADDRESS``, or start a local one of ``workers * threads``
    CPUs whose files stay in ``ray_temp_dir()``, with usage reports and token prompts off. Returns
    True when this call connected (the caller then shuts Ray down), False if Ray was already up."""
    try:
        import ray
    except ImportError as err:
        raise GridError("the ray backend needs Ray: pip install 'msa_lib[ray]' (or pip install ray)") from err
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")           # no usage reports, no prompt
    os.environ.setdefault("RAY_USAGE_STATS_PROMPT_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):                               # an existing cluster, with its own auth
        ray.init(address=os.environ["RAY_ADDRESS"], runtime_env={"env_vars": _ray_env()}, log_to_driver=False)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")              # a private local cluster: no token
    tmp = ray_temp_dir()
    tmp.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=workers * (threads or 1), num_gpus=None if gpus_per_cell else 0, include_dashboard=False,
             _temp_dir=str(tmp), log_to_driver=False, logging_level="warning", runtime_env={"env_vars": _ray_env()})
    return True


def _run_ray(todo, results_dir, workers, threads, device, bar, gpus_per_cell=0.0):
    started = start_ray(workers, threads, gpus_per_cell)
    import ray
    task = ray.remote(num_cpus=threads or 1, num_gpus=gpus_per_cell, max_retries=0)(run_job)
    refs = {task.remote(job, str(results_dir), threads, device): job for job in todo}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(done[0])
            yield job, ray.get(done[0])
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _run_slurm(todo, results_dir, workers, threads, device, bar, gpus_per_cell=0.0, cluster=None,
               partition=None, time_min=60, log_dir=None):
    try:
        import submitit
    except ImportError as err:
        raise GridError("the slurm backend needs submitit: pip install 'msa_lib[slurm]'") from err
    folder = Path(log_dir or Path(results_dir).parent / "submitit") / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": time_min, "cpus_per_task": threads or 1, "slurm_array_parallelism": workers}
    if gpus_per_cell:
        params["gpus_per_node"] = int(max(1, gpus_per_cell))
    if partition:
        params["slurm_partition"] = partition
    if executor.cluster != "slurm":            # the local and debug executors know only the generic names
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    todo = list(todo)
    handles = executor.map_array(run_job, todo, [str(results_dir)] * len(todo), [threads] * len(todo),
                                 [device] * len(todo))
    by_id = {h.job_id: job for h, job in zip(handles, todo)}
    for handle in submitit.helpers.as_completed(handles):
        yield by_id[handle.job_id], handle.result()


def remove_stale(results_dir) -> int:
    """Delete the temporary files a killed run left behind (``.<name>.<random>.tmp``)."""
    n = 0
    for tmp in Path(results_dir).rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def run_grid(jobs, results_dir, backend: str = "local", workers: int | None = None, threads: int | None = 1,
             device: str | None = None, progress: bool = True, **options):
    """Run every unfinished cell of ``jobs``, writing ``<results_dir>/<method>/<cell>.json``
    -> the tidy table of all of ``jobs``' cells (``load_results``). Cells already on disk are skipped.

    backend: "local" (a pool of ``workers`` processes, default ``cpu_count // threads``), "ray"
    (``RAY_ADDRESS`` or a local cluster of ``workers * threads`` CPUs) or "slurm" (submitit job
    arrays; ``options``: cluster, partition, time_min, log_dir, gpus_per_cell)."""
    if backend not in BACKENDS:
        raise GridError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(results_dir)
    for path in result_files(results_dir):
        read_cell(path)                       # a bad file stops the run now, not after hours of training
    workers = workers or max(1, (os.cpu_count() or 1) // (threads or 1))
    jobs = list(jobs)
    total = sum(len(j.conditions) for j in jobs)
    todo = pending(jobs, results_dir)
    left = sum(len(j.conditions) for j in todo)
    runner = {"local": _run_local, "ray": _run_ray, "slurm": _run_slurm}[backend]
    start = time.perf_counter()
    with _progress(total, total - left, progress) as bar:
        bar.set_postfix_str(f"{left} cells in {len(todo)} trainings to go")
        for n_done, (job, records) in enumerate(runner(todo, results_dir, workers, threads, device, bar, **options), 1):
            for record in records:                     # a worker on another machine may not share the folder
                path = CellKey(**record["key"]).path(results_dir)
                if not path.exists():
                    write_json(record, path)
            left -= len(records)
            bar.update(len(records))
            bar.set_postfix_str(f"{left} cells in {len(todo) - n_done} trainings to go, ETA "
                                f"{_eta(time.perf_counter() - start, n_done, len(todo) - n_done)}")
    return load_results(results_dir, cells=[k for j in jobs for k in j.cells()])


# ---------------------------------------------------------------------------------- results
def result_files(results_dir) -> list[Path]:
    """Every result file under ``results_dir`` (temporary ``.*.tmp`` files and other dot-files are not)."""
    return sorted(p for p in Path(results_dir).rglob("*.json") if not p.name.startswith("."))


def read_cell(path) -> dict:
    """One result file -> its record; ResultFileError naming the file if it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultFileError(f"{path}: not a readable JSON file ({err}); delete it and rerun the grid "
                              f"to recompute that cell") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise ResultFileError(f"{path}: not a grid cell result (expected \"schema\": \"{SCHEMA}\"); "
                              f"move it out of the results folder")
    for part, fields in (("key", KEY_FIELDS), ("metrics", ()), ("cost", COST_FIELDS)):
        if not isinstance(record.get(part), dict):
            raise ResultFileError(f"{path}: no {part!r} object")
        missing = [f for f in fields if f not in record[part]]
        if missing:
            raise ResultFileError(f"{path}: {part!r} lacks {', '.join(missing)}")
    if not all(isinstance(v, (int, float)) for v in record["metrics"].values()):
        raise ResultFileError(f"{path}: a metric is not a number")
    if path.name != CellKey(**record["key"]).file_name():
        raise ResultFileError(f"{path}: its key names another cell ({CellKey(**record['key']).file_name()})")
    return record


def load_results(results_dir, cells=None):
    """Every cell result under ``results_dir`` (or only ``cells``, a list of CellKey) -> a tidy
    DataFrame: the key fields, kind and value of the condition, the metrics, the costs, device."""
    import pandas as pd
    results_dir = Path(results_dir)
    paths = [k.path(results_dir) for k in cells] if cells is not None else result_files(results_dir)
    rows = []
    for path in paths:
        if not path.exists():
            raise ResultFileError(f"{path}: no result for this cell (did the run stop early?)")
        r = read_cell(path)
        kind, value = parse_condition(r["key"]["condition"])
        rows.append({**r["key"], "kind": kind, "value": None if value is None else str(value),
                     "metric_set": r.get("metric_set", "mosi"), **r["metrics"],
                     **r["cost"], "device": r["run"].get("device_name", ""), "date": r["run"].get("date", "")})
    first = [*KEY_FIELDS, "kind", "value", "metric_set"]
    table = pd.DataFrame(rows, columns=None if rows else first)
    return table[first + [c for c in table.columns if c not in first]]
