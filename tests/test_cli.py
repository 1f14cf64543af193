import json
import os
import subprocess
import sys

import pytest

from msa_lib.cli import main


def run_cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "msa_lib", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_help_everywhere():
    for cmd in ([], ["data", "synth"], ["train"], ["eval"], ["bench"]):
        r = run_cli(*cmd, "--help")
        assert r.returncode == 0 and "usage" in r.stdout.lower(), cmd


def test_wrong_model_and_path_are_one_line(tmp_path, capsys):
    assert main(["train", "--model", "nope", "--data", "synth:smoke", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unknown model 'nope'" in err and "\n" not in err
    assert main(["train", "--model", "tfn", "--data", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.pkl" in err and "\n" not in err
    assert main(["eval", "--checkpoint", str(tmp_path / "none"), "--data", "synth:smoke"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_train_then_eval_round_trip(tmp_path, synth_smoke):
    out = tmp_path / "run"
    assert main(["train", "--model", "late_fusion", "--data", "synth:smoke", "--epochs", "2",
                 "--quiet", "--set", "d_model=16", "--out", str(out)]) == 0
    for name in ("metrics.json", "config.json", "best.pt", "last.pt", "history.csv"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.tmp"))                      # atomic writes leave no temporaries
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["d_model"] == 16 and "Has0_acc_2" in metrics["test"]
    r = run_cli("eval", "--checkpoint", str(out), "--data", "synth:smoke", "--protocol", "random",
                "--rates", "0.0,0.5", "--out", str(tmp_path / "sweep.csv"))
    assert r.returncode == 0, r.stderr
    import pandas as pd
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    assert list(sweep["rate"]) == [0.0, 0.5]
    assert sweep["MAE"].iloc[0] == pytest.approx(metrics["test"]["MAE"], abs=1e-3)


def test_data_synth_writes_a_loadable_pickle(tmp_path):
    out = tmp_path / "s.pkl"
    assert main(["data", "synth", "--out", str(out), "--size", "smoke", "--seed", "1"]) == 0
    from msa_lib.data import load
    assert len(load(str(out)).train) == 240


def test_bench_table(tmp_path):
    r = run_cli("bench", "--models", "text_only,tfn", "--steps", "3", "--out", str(tmp_path / "b.csv"))
    assert r.returncode == 0, r.stderr
    import pandas as pd
    df = pd.read_csv(tmp_path / "b.csv")
    assert list(df["model"]) == ["text_only", "tfn"]
    assert (df["step_ms"] > 0).all() and (df["params"] > 0).all() and (df["peak_mem_mb"] > 0).all()
    bad = run_cli("bench", "--models", "nope")
    assert bad.returncode == 2 and "unknown model" in bad.stderr and "Traceback" not in bad.stderr


def test_train_hme_then_eval_with_whole_modalities_missing(tmp_path):
    out = tmp_path / "hme"
    assert main(["train", "--model", "hme", "--preset", "synth", "--data", "synth:smoke", "--epochs", "1",
                 "--quiet", "--set", "d_model=16", "--set", "head_ff=16", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["retrieval"] == "bank" and config["model_config"]["d_model"] == 16
    r = run_cli("eval", "--checkpoint", str(out), "--data", "synth:smoke", "--protocol", "modality",
                "--rates", "0.0,0.7", "--out", str(tmp_path / "sweep.csv"))
    assert r.returncode == 0, r.stderr
    import pandas as pd
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    assert list(sweep["rate"]) == [0.0, 0.7]
    assert sweep["effective_rate"].tolist() == pytest.approx([0.0, 2 / 3], abs=1e-9)


def test_train_cyin_then_eval_under_both_missing_protocols(tmp_path):
    out = tmp_path / "cyin"
    assert main(["train", "--model", "cyin", "--preset", "synth", "--data", "synth:smoke", "--epochs", "1",
                 "--quiet", "--set", "common_dim=16", "--set", "ib_dim=8", "--out", str(out)]) == 0
    import pandas as pd
    for protocol, column, values in (("pattern", "pattern", ["t", "av"]), ("modality", "rate", [0.1, 0.7])):
        flag = ["--patterns", "t,av"] if protocol == "pattern" else ["--rates", "0.1,0.7"]
        r = run_cli("eval", "--checkpoint", str(out), "--data", "synth:smoke", "--protocol", protocol, *flag,
                    "--out", str(tmp_path / f"{protocol}.csv"))
        assert r.returncode == 0, r.stderr
        assert list(pd.read_csv(tmp_path / f"{protocol}.csv")[column]) == values
