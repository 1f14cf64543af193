"""The benchmark grid (msa_lib.grid): conditions, keys, the three backends, resume, bad files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from msa_lib import grid
from msa_lib.profiles import REPO_ROOT

DOMAINS = ["studio-reviewers", "street-interviews", "vloggers", "call-centre"]
SMOKE = grid.data_name("synth", "smoke")
# a small grid with every kind of condition: 2 methods x 6 conditions x 2 seeds = 24 cells, 8 trainings
METHODS = ["early_fusion", "late_fusion"]
CONDITIONS = ["complete", "random:0.3", "mr:0.5", "pattern:t", "indomain:vloggers", "holdout:vloggers"]
SEEDS = [0, 1]
NUMBERS = [*grid.KEY_FIELDS, "kind", "value", "Non0_acc_2", "MAE", "Corr", "Mult_acc_7", "n_params"]


def small_jobs():
    return grid.plan(METHODS, CONDITIONS, SEEDS, "smoke", "synth", SMOKE)


def numbers(table: pd.DataFrame) -> pd.DataFrame:
    """What must agree between runs: keys and metrics (not the measured times and memory)."""
    return table[NUMBERS].sort_values(["method", "seed", "condition"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid-local")
    table = grid.run_grid(small_jobs(), folder, backend="local", workers=2, progress=False)
    return folder, table


# ---------------------------------------------------------------------------------- conditions and keys
def test_all_conditions_cover_every_protocol():
    conds = grid.all_conditions(DOMAINS)
    assert len(conds) == 1 + 10 + 7 + 7 + 4 + 4
    assert conds[:3] == ["complete", "random:0.0", "random:0.1"]
    assert "random:0.9" in conds and "random:1.0" not in conds
    assert "mr:0.1" in conds and "mr:0.7" in conds and "mr:0.0" not in conds
    assert [c for c in conds if c.startswith("pattern:")] == [f"pattern:{p}" for p in grid.PATTERNS]
    assert grid.all_conditions() == conds[:25]                 # no domains: no domain conditions


@pytest.mark.parametrize("bad, words", [("random:1.0", "0.0..0.9"), ("mr:0.05", "0.1..0.7"), ("pattern:xyz", "tav"),
                                        ("holdout:", "name the domain"), ("noise:0.1", "unknown condition"),
                                        ("holdout:mars", "unknown domain")])
def test_bad_conditions_say_what_is_wrong(bad, words):
    with pytest.raises(grid.GridError, match=words):
        grid.expand_conditions(bad, DOMAINS)


def test_kinds_expand_and_domain_kinds_need_domains():
    assert grid.expand_conditions("mr,complete", DOMAINS) == [f"mr:0.{i}" for i in range(1, 8)] + ["complete"]
    assert grid.expand_conditions("random:0.30,random:0.3") == ["random:0.3"]
    with pytest.raises(grid.GridError, match="needs domains"):
        grid.expand_conditions("holdout", [])


def test_plan_trains_once_per_seed_plus_once_per_held_out_domain():
    jobs = grid.plan(["tfn"], grid.all_conditions(DOMAINS), [0, 1], "demo", "synth", "synth:demo:0", "v1")
    assert len(jobs) == 2 * (1 + 4)
    shared = [j for j in jobs if j.train == "all"]
    assert len(shared) == 2 and len(shared[0].conditions) == 29
    assert all(not c.startswith("holdout") for c in shared[0].conditions)
    assert sorted(j.train for j in jobs if j.seed == 0 and j.train != "all") == sorted(f"holdout:{d}" for d in DOMAINS)
    keys = [k for j in jobs for k in j.cells()]
    assert len({k.file_name() for k in keys}) == len(keys) == 2 * 33      # one file per cell


def test_a_key_names_every_field_it_depends_on():
    key = grid.CellKey("tfn", "synth", "demo", "synth:demo:0", "random:0.3", 0, "v1")
    for field, other in (("method", "mult"), ("preset", "mosi"), ("profile", "full"), ("data", "synth:demo:1"),
                         ("condition", "random:0.4"), ("seed", 1), ("version", "v2")):
        changed = grid.CellKey(**{**key.__dict__, field: other})
        assert changed.file_name() != key.file_name(), field


def test_code_version_changes_with_the_source(tmp_path, monkeypatch):
    v = grid.code_version()
    assert len(v) == 10 and v == grid.code_version()
    fake = tmp_path / "msa_lib"
    fake.mkdir()
    (fake / "grid.py").write_text("x = 1\n")
    monkeypatch.setattr(grid, "__file__", str(fake / "grid.py"))
    first = grid.code_version()
    (fake / "grid.py").write_text("x = 2\n")
    assert grid.code_version() != first


# ---------------------------------------------------------------------------------- running
def test_run_job_is_a_pure_function_of_its_key():
    job = grid.plan(["early_fusion"], ["complete", "random:0.5", "mr:0.3"], [3], "smoke", "synth", SMOKE)[0]
    a = grid.run_job(job, None, threads=1)
    b = grid.run_job(job, None, threads=1)
    assert [r["metrics"] for r in a] == [r["metrics"] for r in b]
    assert a[0]["key"]["condition"] == "complete" and a[0]["metrics"] != a[1]["metrics"]   # conditions differ
    other = grid.run_job(grid.plan(["early_fusion"], ["complete"], [4], "smoke", "synth", SMOKE)[0], None, threads=1)
    assert other[0]["metrics"] != a[0]["metrics"]                                          # seeds differ
    assert set(a[0]["cost"]) == set(grid.COST_FIELDS) and a[0]["cost"]["n_params"] > 0


def test_local_backend_writes_one_file_per_cell_and_a_rerun_skips_them(local_run):
    folder, table = local_run
    files = sorted(folder.rglob("*.json"))
    assert len(files) == len(table) == 24
    assert set(table["method"]) == set(METHODS) and set(table["seed"]) == set(SEEDS)
    assert set(table["condition"]) == set(CONDITIONS)
    assert table[["Non0_acc_2", "MAE", "Corr"]].notna().all().all()
    assert not list(folder.rglob("*.tmp"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    assert grid.pending(small_jobs(), folder) == []
    again = grid.run_grid(small_jobs(), folder, backend="local", workers=2, progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes                    # nothing recomputed
    pd.testing.assert_frame_equal(again, table)


def test_held_out_and_in_domain_score_the_same_clips_with_different_models(local_run):
    _, table = local_run
    part = table[table["kind"].isin(["indomain", "holdout"])].set_index(["method", "seed", "kind"])
    assert (part["value"] == "vloggers").all()
    # the held-out model is another training: at least one (method, seed) scores differently
    diff = part.xs("indomain", level="kind")["MAE"] - part.xs("holdout", level="kind")["MAE"]
    assert (diff.abs() > 0).any()


def _workers_of(pid: int) -> list[int]:
    """The pool's worker processes below ``pid`` (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in cmd:
                out.append(int(child))
    return out


def _grid_cli(folder, *extra):
    return [sys.executable, "-m", "msa_lib", "grid", "--methods", ",".join(METHODS), "--conditions",
            ",".join(CONDITIONS), "--seeds", ",".join(map(str, SEEDS)), "--profile", "smoke", "--results",
            str(folder), "--quiet", *extra]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the pool's workers through Linux /proc")
def test_a_killed_worker_stops_the_run_and_a_rerun_resumes_to_the_same_table(tmp_path, local_run):
    _, reference = local_run
    folder = tmp_path / "results"
    proc = subprocess.Popen(_grid_cli(folder, "--workers", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO_ROOT)
    deadline = time.time() + 240
    while not list(folder.rglob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers = _workers_of(proc.pid)
    assert workers and proc.poll() is None, "the grid finished before a worker could be killed"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 2, err
    assert "a worker died" in err and "rerun the same command to resume" in err
    done = list(folder.rglob("*.json"))
    assert 0 < len(done) < 24                                         # stopped mid-grid
    for f in done:
        grid.read_cell(f)                                             # every file whole
    rerun = subprocess.run(_grid_cli(folder), capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({24 - len(done)} to compute" in rerun.stderr            # only the missing cells ran
    assert not list(folder.rglob("*.tmp"))
    pd.testing.assert_frame_equal(numbers(grid.load_results(folder)), numbers(reference))


def test_a_killed_run_leaves_no_partial_result_and_resumes(tmp_path, local_run):
    _, reference = local_run
    folder = tmp_path / "results"
    proc = subprocess.Popen(_grid_cli(folder, "--workers", "1"), cwd=REPO_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(list(folder.rglob("*.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)                               # the driver and its workers at once
    proc.wait()
    (folder / "early_fusion" / ".half-written.json.x1.tmp").write_text('{"schema": ')   # as a kill mid-write leaves
    assert len(list(folder.rglob("*.json"))) < 24
    grid.load_results(folder)                                         # dot-files are never read as results
    table = grid.run_grid(small_jobs(), folder, backend="local", workers=2, progress=False)
    assert not list(folder.rglob("*.tmp"))
    pd.testing.assert_frame_equal(numbers(table), numbers(reference))


def test_ray_backend_gives_the_local_table(local_run, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the ray extra: pip install 'msa_lib[ray]'")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _, reference = local_run
    table = grid.run_grid(small_jobs(), tmp_path / "ray", backend="ray", workers=2, progress=False)
    pd.testing.assert_frame_equal(numbers(table), numbers(reference))
    assert grid.ray_temp_dir().is_relative_to(REPO_ROOT / "_build") or "MSA_RAY_TMP" in os.environ
    assert any(grid.ray_temp_dir().glob("session_*"))                 # Ray kept its files inside _build


def test_slurm_backend_through_submitits_local_executor(local_run, tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra: pip install 'msa_lib[slurm]'")
    _, reference = local_run
    jobs = [j for j in small_jobs() if j.method == "early_fusion" and j.seed == 0]
    table = grid.run_grid(jobs, tmp_path / "slurm", backend="slurm", workers=2, progress=False, cluster="local",
                          log_dir=tmp_path / "logs")
    expected = reference[(reference["method"] == "early_fusion") & (reference["seed"] == 0)]
    pd.testing.assert_frame_equal(numbers(table), numbers(expected))
    assert list((tmp_path / "logs").iterdir())                       # submitit's job folders


# ---------------------------------------------------------------------------------- bad files
def _copy_results(src: Path, dst: Path) -> Path:
    for f in src.rglob("*.json"):
        (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        (dst / f.relative_to(src)).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("content, words", [("{not json", "not a readable JSON file"),
                                            ('{"rows": [1, 2]}', "not a grid cell result"),
                                            ("[]", "not a grid cell result")])
def test_a_corrupt_or_foreign_json_is_named(local_run, tmp_path, content, words):
    folder = _copy_results(local_run[0], tmp_path / "r")
    bad = folder / "early_fusion" / "notes.json"
    bad.write_text(content)
    with pytest.raises(grid.ResultFileError, match=words) as err:
        grid.load_results(folder)
    assert str(bad) in str(err.value)
    cli = subprocess.run([sys.executable, "-m", "msa_lib", "grid", "--methods", "early_fusion", "--conditions",
                          "complete", "--results", str(folder), "--quiet"], capture_output=True, text=True,
                         cwd=REPO_ROOT)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr and str(bad) in cli.stderr


def test_a_result_whose_key_does_not_match_its_name_is_refused(local_run, tmp_path):
    folder = _copy_results(local_run[0], tmp_path / "r")
    f = sorted(folder.rglob("*complete*.json"))[0]
    record = json.loads(f.read_text())
    record["key"]["seed"] = 99
    f.write_text(json.dumps(record))
    with pytest.raises(grid.ResultFileError, match="its key names another cell"):
        grid.load_results(folder)
    record["key"]["seed"] = 0
    del record["metrics"]
    f.write_text(json.dumps(record))
    with pytest.raises(grid.ResultFileError, match="no 'metrics' object"):
        grid.load_results(folder)


# ---------------------------------------------------------------------------------- the command line
def test_grid_help_documents_every_option():
    out = subprocess.run([sys.executable, "-m", "msa_lib", "grid", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT).stdout
    for option in ("--methods", "--conditions", "--seeds", "--profile", "--preset", "--data", "--backend",
                   "--workers", "--threads-per-cell", "--gpus-per-cell", "--device", "--results", "--out",
                   "--dry-run", "--quiet", "--slurm-partition", "--slurm-time-min", "--slurm-cluster",
                   "random:R", "mr:R", "pattern:P", "holdout:D", "RAY_ADDRESS"):
        assert option in out, option


def test_grid_dry_run_and_usage_errors(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "msa_lib", "grid", "--results", str(tmp_path), *args],
                              capture_output=True, text=True, cwd=REPO_ROOT)
    dry = cli("--dry-run", "--methods", "tfn,mult", "--seeds", "0,1")
    assert dry.returncode == 0, dry.stderr
    assert "2 methods x 33 conditions x 2 seeds = 132 cells" in dry.stderr
    assert len(dry.stdout.strip().splitlines()) == 2 * 2 * 5
    for args, words in ((("--methods", "nope"), "unknown method"), (("--conditions", "random:2"), "0.0..0.9"),
                        (("--seeds", "a"), "--seeds expects integers"), (("--seeds", "1,1"), "no repeats"),
                        (("--workers", "0"), "at least 1")):
        r = cli(*args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not list(tmp_path.rglob("*.json"))


# ---------------------------------------------------------------------------------- the committed grid
def test_committed_demo_grid_covers_every_method_and_condition_with_three_seeds():
    from msa_lib.models import available
    path = REPO_ROOT / "chapters" / "studies" / "09_benchmark_grid.csv"
    header = path.read_text().splitlines()[0]
    table = pd.read_csv(path, comment="#")
    assert "code version" in header and "cells computed 20" in header and "CPU" in header   # labelled
    assert set(table["method"]) == set(available())
    assert set(table["seed"]) == {0, 1, 2}
    assert set(table["condition"]) == set(grid.all_conditions(DOMAINS))
    assert not table.duplicated(["method", "condition", "seed"]).any()
    assert len(table) == len(available()) * 33 * 3
    assert table[["Non0_acc_2", "MAE", "n_params", "step_ms", "infer_ms_per_clip"]].notna().all().all()   # Corr: NaN for
    # a constant prediction (text-only without text)
    assert table["version"].nunique() == 1


def test_grid_bench_compares_backends_on_one_smoke_grid():
    pytest.importorskip("ray")
    from msa_lib.bench import run_grid_bench
    df = run_grid_bench(backends=("local", "ray"), methods=["early_fusion"], workers=2)
    assert list(df["backend"]) == ["local", "ray"] and df["same_table"].all()
    assert (df["cells"] == 25).all() and (df["cells_per_hour"] > 0).all() and df.loc[0, "overhead_pct"] == 0
