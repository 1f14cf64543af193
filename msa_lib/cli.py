"""Command line: ``python -m msa_lib {data,train,eval,grid,bench,numerics,kernel,exercises,student} ...`` (``--help`` on each).

Errors a user can fix (a wrong model name, a missing file, a malformed pickle) are
reported as one line on stderr with exit code 2, not as a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from .io import write_csv, write_json


class UsageError(Exception):
    """A mistake in the command line or its inputs, reported as one line."""


def _parse_sets(pairs: list[str]) -> dict:
    """["d_model=64", "dropout=0.2", "text_encoder=minilm"] -> typed dict."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _load_data(name: str):
    from .data import load
    from .data.mmsa import MMSAFormatError
    try:
        return load(name)
    except FileNotFoundError as err:
        raise UsageError(f"data {name!r}: {err}") from err
    except (MMSAFormatError, ValueError) as err:
        raise UsageError(str(err)) from err


def _build_model(name: str, spec, options: dict):
    from .models import build
    try:
        return build(name, spec, **options)
    except KeyError as err:
        raise UsageError(err.args[0]) from err
    except TypeError as err:
        raise UsageError(str(err)) from err


def cmd_data_synth(args) -> None:
    from .data.synthetic import write_synth
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    write_synth(out, args.size, args.seed)
    print(f"wrote SynthMSA ({args.size}, seed {args.seed}) to {out}")


def cmd_train(args) -> None:
    from .profiles import device as pick_device
    from .train import TrainConfig, fit_stages

    data = _load_data(args.data)
    if args.holdout is not None or args.source is not None:
        data = _domain_split(data, args)
    options = _parse_sets(args.set)
    if args.preset:
        options["preset"] = args.preset
    model = _build_model(args.model, data.spec, options)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      deterministic=args.deterministic, progress=not args.quiet, dg=args.dg, dg_weight=args.dg_weight)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.prepare(data)                       # e.g. MMSLF's prompts (cached after the first run)
    results = fit_stages(model, data, cfg, device=pick_device(args.device), checkpoint_dir=out, resume=args.resume)
    result = list(results.values())[-1]
    from .train import _plain
    write_json({"model": args.model, "data": args.data, "holdout": args.holdout, "source": args.source,
                "selection": data.config.get("selection"), "model_config": _plain(model.cfg),
                        "train_config": asdict(cfg), "spec": data.spec.to_dict(),
                        "n_params": model.n_params()}, out / "config.json")
    write_csv(result.history, out / "history.csv")
    metrics = {"best_epoch": result.best_epoch, "valid": result.valid, "test": result.test,
               "seconds": round(result.seconds, 2)}
    if len(results) > 1:                      # the earlier stages (MMSLF's teacher)
        metrics["stages"] = {str(k): {"best_epoch": r.best_epoch, "test": r.test} for k, r in results.items()}
    write_json(metrics, out / "metrics.json")
    print(json.dumps({"best_epoch": result.best_epoch, "test": result.test}, indent=1))


def _domain_split(data, args):
    """--holdout D (leave-one-domain-out) or --source S --holdout T (single source), --select."""
    from .data.domains import holdout, single_source
    try:
        if args.source is not None:
            if args.holdout is None:
                raise UsageError("--source needs --holdout TARGET (the domain to test on)")
            return single_source(data, args.source, args.holdout, args.select)
        return holdout(data, args.holdout, args.select)
    except ValueError as err:
        raise UsageError(str(err)) from err


def load_checkpoint(path, spec=None):
    """Rebuild a model from a ``train`` output folder or its ``best.pt``."""
    import torch

    from .models import build
    path = Path(path)
    file = path / "best.pt" if path.is_dir() else path
    if not file.exists():
        raise UsageError(f"no checkpoint at {file} (expected the folder written by `msa_lib train`)")
    state = torch.load(file, map_location="cpu", weights_only=True)
    from .data.spec import DatasetSpec
    saved = DatasetSpec(**{**state["spec"], "dims": tuple(state["spec"]["dims"]),
                           "lengths": tuple(state["spec"]["lengths"]),
                           "label_range": tuple(state["spec"]["label_range"])})
    if spec is not None and tuple(spec.dims) != tuple(saved.dims):
        raise UsageError(f"checkpoint {file} was trained on feature sizes {saved.dims}, "
                         f"but the data has {tuple(spec.dims)}")
    model = build(state["model_name"], spec or saved, **state["config"])
    model.load_state_dict(state["model"])
    return model.eval()


def cmd_eval(args) -> None:
    from .train import evaluate, robustness_sweep

    data = _load_data(args.data)
    model = load_checkpoint(args.checkpoint, data.spec)
    split = getattr(data, args.split)
    if args.protocol == "none":
        table = evaluate(model, split, data.spec)
        print(json.dumps(table, indent=1))
        return
    rates = [float(r) for r in args.rates.split(",")] if args.rates else None
    patterns = args.patterns.split(",") if args.patterns else None
    try:
        kw = {"patterns": patterns} if patterns else {}
        df = robustness_sweep(model, split, data.spec, args.protocol, rates=rates, seed=args.seed, **kw)
    except ValueError as err:
        raise UsageError(str(err)) from err
    print(df.to_string(index=False))
    if args.out:
        write_csv(df, args.out)


def cmd_grid(args) -> None:
    from . import grid
    from .profiles import REPO_ROOT
    try:
        if args.threads_per_cell < 1 or (args.workers is not None and args.workers < 1):
            raise grid.GridError("--workers and --threads-per-cell must be at least 1")
        methods = _grid_methods(args.methods)
        seeds = _grid_seeds(args.seeds)
        data_name = grid.data_name(args.data, args.profile)
        data = _load_data(data_name)
        from .data.domains import domain_names
        domains = domain_names(data) if data.spec.n_domains > 1 else []
        conditions = grid.expand_conditions(args.conditions, domains)
        if args.conditions == "all" and not domains:
            print("this data has no domains: the indomain/holdout conditions are left out", file=sys.stderr)
        jobs = grid.plan(methods, conditions, seeds, args.profile, args.preset, data_name)
        results = Path(args.results or REPO_ROOT / "_build" / "grid" / args.profile)
        todo = grid.pending(jobs, results)
        cells = sum(len(j.conditions) for j in jobs)
        print(f"grid: {len(methods)} methods x {len(conditions)} conditions x {len(seeds)} seeds = {cells} cells "
              f"({sum(len(j.conditions) for j in todo)} to compute in {len(todo)} trainings); results in {results}",
              file=sys.stderr)
        if args.dry_run:
            for job in todo:
                print(f"{job.method}\tseed {job.seed}\ttrain {job.train}\t{len(job.conditions)} cells")
            return
        options = {}
        if args.backend in ("ray", "slurm"):
            options["gpus_per_cell"] = args.gpus_per_cell
        if args.backend == "slurm":
            options.update(cluster=args.slurm_cluster, partition=args.slurm_partition, time_min=args.slurm_time_min)
        table = grid.run_grid(jobs, results, backend=args.backend, workers=args.workers,
                              threads=args.threads_per_cell, device=args.device, progress=not args.quiet, **options)
    except (grid.GridError, grid.ResultFileError) as err:
        raise UsageError(str(err)) from err
    if args.out:
        write_csv(table, args.out)
        print(f"wrote {len(table)} cells to {args.out}", file=sys.stderr)
    from .leaderboard import formatted, leaderboard
    board = leaderboard(table)
    print(formatted(board).assign(parameters=board["n_params"].map("{:,.0f}".format)).to_string())


def _grid_methods(text: str) -> list[str]:
    from .models import available
    from .recipes import BOOK_MODELS
    if text == "all":                     # the book's eleven in reading order, then the other registered ones
        return list(BOOK_MODELS) + [m for m in available() if m not in BOOK_MODELS]
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in available()]
    if unknown or not methods:
        raise UsageError(f"unknown method(s) {unknown or text!r}; available: all, {', '.join(available())}")
    return methods


def _grid_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects integers separated by commas, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds needs at least one seed and no repeats, got {text!r}")
    return seeds


def cmd_bench(args) -> None:
    if args.grid:
        from .bench import run_grid_bench
        from .profiles import seed_everything
        seed_everything(0, threads=2)         # the numerics the header reports (workers use 1 thread each)
        df = run_grid_bench(backends=[b.strip() for b in args.backends.split(",") if b.strip()])
        print(df.to_string(index=False))
        if args.out:
            from .io import write_study_csv
            write_study_csv(df, args.out, "grid bench: python -m msa_lib bench --grid (a smoke grid: every registered "
                            "model x the 25 missing-data conditions x seed 0, cpu_count workers x 1 thread, fresh results "
                            "folders; wall time includes starting the pool or the Ray cluster)")
        return
    if args.official:
        from .bench import run_official_bench
        from .profiles import REPO_ROOT
        df = run_official_bench(REPO_ROOT / "_build" / "bench-official", steps=args.steps, out=args.out)
        print(df.to_string(index=False))
        return
    from .bench import run_bench
    models = args.models.split(",") if args.models else None
    df = run_bench(models, data=args.data, device=args.device, steps=args.steps, batch_size=args.batch_size,
                   d_model=args.d_model, out=args.out)
    print(df.to_string(index=False))


def cmd_numerics(args) -> None:
    from . import numerics
    if args.supported:
        reason = numerics.unsupported_reason()
        print(f"not supported: {reason}" if reason else "supported")
        raise SystemExit(1 if reason else 0)
    numerics.apply(args.threads)
    print(json.dumps(numerics.active()))
    try:
        print(numerics.ensure(args.threads))
    except RuntimeError as err:
        raise UsageError(str(err)) from None


def cmd_kernel(args) -> None:
    from . import numerics
    print(f"installed the Jupyter kernel {numerics.KERNEL_NAME!r}: {numerics.install_kernel(args.prefix)}")


def cmd_exercises_list(args) -> None:
    from .exercises import exercises
    for ex, form in exercises().items():
        print(f"{ex}: {form}")


def cmd_exercises_grade(args) -> None:
    import pandas as pd

    from .exercises import grade
    folder = Path(args.folder)
    if not folder.exists():
        raise UsageError(f"no such folder: {folder}")
    df = grade(folder)
    if df.empty:
        print(f"no notebooks under {folder}")
    else:
        exercise = df["exercise"].replace("", "(notebook)")
        table = pd.crosstab(exercise, df["verdict"], margins=True, margins_name="total")
        print(table.to_string())
    if args.out:
        write_csv(df, args.out)
        print(f"wrote {len(df)} rows to {args.out}")


def cmd_student(args) -> None:
    from . import student
    out = student.write_edition(args.out, student=not args.teacher)
    print(f"{'a copy of the book' if args.teacher else 'student edition (chapters without solutions)'} written to {out}")
    if args.build:
        print(f"its HTML: {student.build_html(out) / 'index.html'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msa_lib", description="msa_lib command line")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="make datasets").add_subparsers(dest="what", required=True)
    s = d.add_parser("synth", help="write a SynthMSA pickle (MMSA format)")
    s.add_argument("--out", required=True, help="output .pkl path")
    s.add_argument("--size", default="demo", choices=["smoke", "demo", "full"])
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_data_synth)

    t = sub.add_parser("train", help="train one model; writes metrics.json, best.pt, config.json into --out")
    t.add_argument("--model", required=True, help="registry name, e.g. tfn, mult, late_fusion")
    t.add_argument("--data", default="synth", help="synth[:size[:seed]], a dataset name (mosi, sims, ...) or a .pkl path")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--preset", help="model preset (synth, mosi, mosei, sims)")
    t.add_argument("--holdout", metavar="DOMAIN",
                   help="leave this domain out: train and select on the others, test on it (a SynthMSA domain "
                        "name or id, or a dataset of a combined --data such as mosi+mosei+sims)")
    t.add_argument("--source", metavar="DOMAIN", help="single-source protocol: train on this domain only "
                                                      "(needs --holdout TARGET)")
    t.add_argument("--select", default="source", choices=["source", "oracle"],
                   help="model selection on the source domains' validation data (default) or, labelled as "
                        "an oracle, on the held-out domain's")
    t.add_argument("--dg", default="erm", choices=["erm", "irm", "coral", "adversarial", "mixup"],
                   help="domain-generalization objective added to the model's loss (msa_lib.dg)")
    t.add_argument("--dg-weight", type=float, default=None, help="weight of its penalty (default per method)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a model option (repeatable)")
    t.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    t.add_argument("--deterministic", action="store_true")
    t.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--out", required=True, help="output folder")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint, optionally under a missing-data protocol")
    e.add_argument("--checkpoint", required=True, help="folder written by `train` (or its best.pt)")
    e.add_argument("--data", default="synth")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--protocol", default="none", choices=["none", "random", "pattern", "modality"],
                   help="random: words/frames erased at rate r; pattern: fixed modality subsets; modality: "
                        "whole modalities removed with GCNet's keep matrix at rate MR (HME, CyIN)")
    e.add_argument("--rates", help="comma-separated missing rates, default 0.0..0.9 (random) or 0.0..0.7 (modality)")
    e.add_argument("--patterns", help="comma-separated patterns from tav,ta,tv,av,t,a,v")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", help="write the table as CSV here")
    e.set_defaults(func=cmd_eval)

    gr = sub.add_parser(
        "grid", help="the benchmark: methods x conditions x seeds, one JSON per cell, resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train every method once per seed (plus once per held-out domain), score it under every "
                    "condition, write each cell to RESULTS/<method>/<cell>.json atomically; cells already there "
                    "are skipped, so rerunning a killed grid resumes it. Prints the leaderboard.",
        epilog="conditions: complete | random:R (R 0.0-0.9, every element missing with rate R) | mr:R (R 0.1-0.7, "
               "whole modalities missing) | pattern:P (P in tav,ta,tv,av,t,a,v) | indomain:D | holdout:D (trains "
               "on every domain but D); or the kinds random, mr, pattern, indomain, holdout; or all.\n"
               "examples:\n  python -m msa_lib grid --profile smoke\n"
               "  python -m msa_lib grid --profile demo --seeds 0,1,2 --out grid.csv\n"
               "  RAY_ADDRESS=auto python -m msa_lib grid --backend ray --profile full --gpus-per-cell 0.25\n"
               "  python -m msa_lib grid --backend slurm --slurm-partition gpu --gpus-per-cell 1 --profile full")
    gr.add_argument("--methods", default="all", help="comma-separated models, or all (every registered model, the book's 11 first; default)")
    gr.add_argument("--conditions", default="all", help="comma-separated conditions or kinds, or all (default)")
    gr.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0; the book uses 0,1,2)")
    gr.add_argument("--profile", default="smoke", choices=["smoke", "demo", "full"],
                    help="smoke: SynthMSA smoke, 2 epochs; demo: SynthMSA demo, each chapter's recipe; "
                         "full: SynthMSA full, the full profile's epochs (default smoke)")
    gr.add_argument("--preset", default="synth", help="model preset: synth (default), or mosi/mosei/sims with --data")
    gr.add_argument("--data", default="synth",
                    help="synth (the profile's SynthMSA, default), a dataset path, or mosi+mosei+sims")
    gr.add_argument("--backend", default="local", choices=["local", "ray", "slurm"],
                    help="local: a process pool on this machine (default); ray: Ray tasks on RAY_ADDRESS or a "
                         "local cluster (pip install 'msa_lib[ray]'); slurm: submitit job arrays "
                         "(pip install 'msa_lib[slurm]')")
    gr.add_argument("--workers", type=int, default=None,
                    help="cells trained at once (default: CPU cores // --threads-per-cell; slurm: array parallelism)")
    gr.add_argument("--threads-per-cell", type=int, default=1, help="torch CPU threads (and CPUs requested) per cell")
    gr.add_argument("--gpus-per-cell", type=float, default=0.0, help="GPUs requested per cell (ray, slurm; default 0)")
    gr.add_argument("--device", help="cpu or cuda inside each cell (default: best available)")
    gr.add_argument("--results", help="results folder (default: _build/grid/<profile>)")
    gr.add_argument("--out", help="also write the tidy table (one row per cell) as CSV here")
    gr.add_argument("--dry-run", action="store_true", help="list the trainings still to run, run nothing")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    gr.add_argument("--slurm-partition", help="SLURM partition (slurm backend)")
    gr.add_argument("--slurm-time-min", type=int, default=60, help="time limit per array task in minutes (default 60)")
    gr.add_argument("--slurm-cluster", default=None, choices=["slurm", "local", "debug"],
                    help="submitit executor: slurm, or local/debug to try the slurm path on this machine "
                         "(default: slurm where sbatch exists, else local)")
    gr.set_defaults(func=cmd_grid)

    b = sub.add_parser("bench", help="time a training step per model (CPU or GPU), CSV out")
    b.add_argument("--models", help="comma-separated names (default: every registered model)")
    b.add_argument("--data", default="synth:smoke")
    b.add_argument("--device", help="cpu or cuda (default: best available)")
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--d-model", type=int, default=None, help="override every model's width")
    b.add_argument("--official", action="store_true",
                   help="LNLN and DashFusion at the official configuration (MOSI shapes, mosi preset, random "
                        "BERT-base fine-tuned and frozen, official batch sizes); --steps counts timed steps "
                        "(use 2-3: a step takes about a minute on 2 CPU cores); run with MSA_NUMERICS=native")
    b.add_argument("--grid", action="store_true",
                   help="instead: cells per hour of a smoke grid under each backend (--backends), side by side")
    b.add_argument("--backends", default="local,ray", help="with --grid: backends to compare (default local,ray)")
    b.add_argument("--out", help="CSV path")
    b.set_defaults(func=cmd_bench)

    n = sub.add_parser("numerics", help="show the CPU numerics this process runs with; exit 2 if pins are off")
    n.add_argument("--threads", type=int, default=2, help="thread count the pins expect (default 2)")
    n.add_argument("--supported", action="store_true",
                   help="only say whether this machine can run the pinned settings (exit 0) or not (exit 1)")
    n.set_defaults(func=cmd_numerics)

    k = sub.add_parser("kernel", help="install the chapters' Jupyter kernel 'msa-book' (pinned numerics)")
    k.add_argument("--prefix", default=sys.prefix, help="environment to install into (default: this one)")
    k.set_defaults(func=cmd_kernel)

    x = sub.add_parser("exercises", help="list the self-checked exercises, or grade handed-in notebooks")
    xs = x.add_subparsers(dest="what", required=True)
    xs.add_parser("list", help="print each exercise id and the form of its answer").set_defaults(
        func=cmd_exercises_list)
    g = xs.add_parser("grade", help="re-check the answers in every notebook below FOLDER against the key")
    g.add_argument("folder", metavar="FOLDER", help="folder of handed-in .ipynb files (searched recursively)")
    g.add_argument("--out", help="write one row per notebook and exercise as CSV here")
    g.set_defaults(func=cmd_exercises_grade)

    st = sub.add_parser("student", help="write the student edition (chapters without solutions) and build its HTML")
    st.add_argument("--out", help="folder to write (default: _build/student in the repository)")
    st.add_argument("--build", action="store_true", help="also build its HTML book (hide_solutions on)")
    st.add_argument("--teacher", action="store_true", help="copy the book unchanged, solutions included")
    st.set_defaults(func=cmd_student)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
