"""The packaging promises: environment.yml agrees with pyproject, import stays light."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(map(_norm, project["dependencies"]))
    for extra in project["optional-dependencies"].values():
        wanted |= set(map(_norm, extra))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = {_norm(r) for r in pip_list if not r.startswith("-e")}
    assert have == wanted, f"only in pyproject: {wanted - have}; only in environment.yml: {have - wanted}"


def test_torch_is_a_range_not_a_pin():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    assert ">=" in torch_req and "==" not in torch_req


def test_import_is_light():
    code = ("import sys, msa_lib, msa_lib.data, msa_lib.missing, msa_lib.models;"
            "print(any(m in sys.modules for m in ('transformers', 'sentence_transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gitignore_keeps_generated_files_out():
    ignored = (ROOT / ".gitignore").read_text().split()
    for entry in ("_build/", ".venv/", "__pycache__/"):
        assert entry in ignored
