#!/usr/bin/env python
"""Place real MMSA releases where ``msa_lib.data.load("mosi")`` looks, after checking them.

The processed MOSI / MOSEI / CH-SIMS features are distributed by the MMSA authors
through Google Drive and Baidu Netdisk (links in https://github.com/thuiar/MMSA's
README); their licences do not allow us to bundle them and the hosts need a browser,
so this script does not download. You download, it does the rest:

    python data_scripts/prepare_real.py --src ~/Downloads/MMSA          # find, verify, link
    python data_scripts/prepare_real.py --src ~/Downloads/MMSA --copy   # copy instead of symlink
    python data_scripts/prepare_real.py --check                         # re-check what is placed

For every known release found under ``--src`` (by file name: ``MOSI/Processed/
unaligned_50.pkl`` and so on, or any ``<name>.pkl`` via ``--file NAME=PATH``) it

1. checks the SHA-256 published in the MMSA README (refuses a mismatch unless
   ``--no-verify``);
2. loads it with msa_lib's safe loader (no code in the pickle can run) and prints
   the dataset spec and split sizes;
3. links or copies it atomically to ``$MSA_DATA/<release path>`` (default ``./data``).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msa_lib.data.mmsa import (  # noqa: E402
    DATASETS, KNOWN_SHA256, MMSAFormatError, check_release, default_data_dir, load_mmsa)
from msa_lib.io import atomic_path  # noqa: E402


def find_releases(src: Path) -> dict[str, Path]:
    """name -> file for every release path (e.g. MOSI/Processed/aligned_50.pkl) found under src."""
    found = {}
    for name, rel in DATASETS.items():
        tail = Path(rel)
        direct = src / tail
        if direct.is_file():
            found[name] = direct
            continue
        for candidate in src.rglob(tail.name):
            if candidate.as_posix().endswith(rel) or candidate.parent.parent.name.upper() == tail.parts[0].upper():
                found[name] = candidate
                break
    return found


def place(src_file: Path, dest: Path, copy: bool) -> None:
    """Copy or symlink ``src_file`` to ``dest`` without ever leaving a half-written file."""
    with atomic_path(dest) as tmp:
        if copy:
            shutil.copyfile(src_file, tmp)
        else:
            tmp.unlink()
            tmp.symlink_to(src_file.resolve())


def check(name: str, path: Path, verify: bool) -> bool:
    rel = DATASETS[name]
    if verify and rel in KNOWN_SHA256:
        try:
            check_release(path, rel)
        except MMSAFormatError as exc:
            print(f"  {name}: SHA-256 mismatch: {exc}")
            return False
        print(f"  {name}: SHA-256 ok")
    elif rel not in KNOWN_SHA256:
        print(f"  {name}: no published hash for {rel}; checking the format only")
    try:
        data = load_mmsa(path, name=name, verify=False)
    except (MMSAFormatError, FileNotFoundError) as exc:
        print(f"  {name}: not a valid MMSA file: {exc}")
        return False
    print(f"  {name}: {data!r}; metric set {data.spec.metric_set}; cleaned {data.cleaned or 'nothing'}")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, help="folder holding the downloaded MMSA releases")
    ap.add_argument("--file", action="append", default=[], metavar="NAME=PATH",
                    help=f"one release given explicitly; NAME in {sorted(DATASETS)}")
    ap.add_argument("--dest", type=Path, default=None, help="data folder (default: $MSA_DATA or ./data)")
    ap.add_argument("--copy", action="store_true", help="copy the files instead of symlinking them")
    ap.add_argument("--no-verify", action="store_true", help="accept files whose SHA-256 does not match")
    ap.add_argument("--check", action="store_true", help="only re-check the releases already placed")
    args = ap.parse_args(argv)
    dest = args.dest or default_data_dir()

    if args.check:
        placed = {n: dest / r for n, r in DATASETS.items() if (dest / r).exists()}
        if not placed:
            print(f"no releases under {dest}")
            return 1
        return 0 if all(check(n, p, not args.no_verify) for n, p in placed.items()) else 1

    found = find_releases(args.src) if args.src else {}
    for item in args.file:
        name, sep, path = item.partition("=")
        if not sep or name not in DATASETS:
            ap.error(f"--file expects NAME=PATH with NAME in {sorted(DATASETS)}, got {item!r}")
        if not Path(path).is_file():
            ap.error(f"--file {item}: {path} is not a file")
        found[name] = Path(path)
    if not found:
        ap.error("nothing to do: give --src FOLDER (with e.g. MOSI/Processed/unaligned_50.pkl inside) or --file")
    ok = True
    for name, path in sorted(found.items()):
        print(f"{name}: {path}")
        if check(name, path, not args.no_verify):
            place(path, dest / DATASETS[name], args.copy)
            print(f"  -> {dest / DATASETS[name]}")
        else:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
