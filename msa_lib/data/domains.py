"""Domain shift: leave-one-domain-out and single-source splits of any data with domain ids.

Every :class:`~msa_lib.data.batch.Split` carries a ``domain`` id per sample. SynthMSA has
four (speaker style, recording condition and topic mix differ, ``config["domains"]`` names
them); a combination of real MMSA releases (``msa_lib.data.harmonise``) makes each dataset a
domain. From such data this module cuts the two domain-generalization protocols:

* :func:`holdout` -- **leave one domain out** (protocol A): train and select on every other
  domain, test on the held-out one;
* :func:`single_source` -- **single source** (protocol B): train and select on one domain,
  test on another.

Model selection uses the **source** domains' validation samples only (DomainBed's
"training-domain validation"): the target is never seen before the test. ``select="oracle"``
selects on the target's validation samples instead -- an upper bound that a deployed system
cannot have; the returned data says so in its name and ``config["selection"]``.

When the domains were combined from datasets with different label scales or metric sets,
``config["domain_scales"]`` and ``config["domain_metric_sets"]`` (one entry per domain) make
the held-out data score on the target's native scale with the target's metric set (the spec's
``score_scale``; :func:`msa_lib.train.evaluate` applies it).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .batch import Split
from .spec import DatasetSpec

SELECTIONS = ("source", "oracle")


def domain_names(data) -> list[str]:
    """The names of the data's domains, by id (``config["domains"]``, else "domain 0", ...)."""
    names = list(data.config.get("domains") or [])
    n = max(data.spec.n_domains, len(names))
    return names + [f"domain {i}" for i in range(len(names), n)]


def resolve_domain(data, domain) -> int:
    """A domain id from a name (case-insensitive) or an id; a clear error naming the choices."""
    names = domain_names(data)
    if isinstance(domain, (int, np.integer)) and not isinstance(domain, bool):
        if 0 <= int(domain) < len(names):
            return int(domain)
    else:
        text = str(domain).strip().lower()
        for i, name in enumerate(names):
            if name.lower() == text:
                return i
        if text.isdigit() and int(text) < len(names):
            return int(text)
    choices = ", ".join(f"{i}={name!r}" for i, name in enumerate(names))
    raise ValueError(f"{data.spec.name} has no domain {domain!r}; its domains are {choices}")


def in_domains(split: Split, ids) -> Split:
    """The samples of ``split`` whose domain id is in ``ids``."""
    return split.subset(np.isin(split.domain, list(ids)))


def _check_nonempty(split: Split, what: str, data, ids) -> None:
    if len(split) == 0:
        names = [domain_names(data)[i] for i in ids]
        raise ValueError(f"{data.spec.name}: {what} would be empty (domains {names} have no samples there)")


def _target_spec(data, target: int, name: str) -> DatasetSpec:
    """The spec under which the target is scored: its metric set and native label scale."""
    sets = data.config.get("domain_metric_sets")
    scales = data.config.get("domain_scales")
    changes = {"name": name}
    if sets:
        changes["metric_set"] = sets[target]
    if scales:
        changes["score_scale"] = float(scales[target])
    return dataclasses.replace(data.spec, **changes)


def _cut(data, sources: list[int], target: int, select: str, label: str):
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    train = in_domains(data.train, sources)
    _check_nonempty(train, "the training split", data, sources)
    valid_ids = sources if select == "source" else [target]
    valid = in_domains(data.valid, valid_ids)
    _check_nonempty(valid, "the validation split", data, valid_ids)
    test = in_domains(data.test, [target])
    _check_nonempty(test, "the test split", data, [target])
    name = f"{data.spec.name}|{label}" + ("|oracle-selection" if select == "oracle" else "")
    names = domain_names(data)
    config = {**data.config, "sources": [names[i] for i in sources], "target": names[target],
              "selection": "source validation" if select == "source" else "oracle (target validation)"}
    return dataclasses.replace(data, spec=_target_spec(data, target, name), train=train, valid=valid,
                               test=test, config=config)


def holdout(data, domain, select: str = "source"):
    """Leave ``domain`` out: train on every other domain's training samples, select on their
    validation samples (``select="oracle"``: on the held-out domain's, labelled as such), test on
    the held-out domain's test samples. -> a new MMSAData of the same type."""
    target = resolve_domain(data, domain)
    present = sorted(set(np.unique(data.train.domain).tolist()) - {target})
    if not present:
        raise ValueError(f"{data.spec.name}: holding out {domain_names(data)[target]!r} leaves no training "
                         "data (it is the only domain in the training split)")
    return _cut(data, present, target, select, f"holdout={domain_names(data)[target]}")


def single_source(data, source, target, select: str = "source"):
    """Train and select on ``source``'s samples only, test on ``target``'s (protocol B)."""
    s, t = resolve_domain(data, source), resolve_domain(data, target)
    if s == t:
        raise ValueError(f"single_source needs two different domains, got {domain_names(data)[s]!r} twice")
    return _cut(data, [s], t, select, f"{domain_names(data)[s]}->{domain_names(data)[t]}")


def in_domain(data, domain):
    """The in-domain reference for :func:`holdout`: train and select on *every* domain, test on
    the same held-out domain's test samples, so the generalization gap compares like with like."""
    target = resolve_domain(data, domain)
    test = in_domains(data.test, [target])
    _check_nonempty(test, "the test split", data, [target])
    name = f"{data.spec.name}|in-domain={domain_names(data)[target]}"
    return dataclasses.replace(data, spec=_target_spec(data, target, name), test=test,
                               config={**data.config, "target": domain_names(data)[target],
                                       "selection": "source validation"})


def speaker_domains(data, n: int = 4):
    """Data without domains (a single MMSA release) cut into ``n`` pseudo-domains: groups of videos
    (the part of an MMSA id before ``$_$``), assigned by a stable hash, so a held-out group is a set
    of speakers never seen in training. When the ids name fewer than ``n`` videos, clips are grouped
    by their own id instead. -> a new MMSAData with ``config["domains"]`` "speakers 0", ...."""
    import zlib

    ids = [i for s in ("train", "valid", "test") for i in data.split(s).ids]
    videos = {i.split("$_$")[0] for i in ids}
    key = (lambda i: i.split("$_$")[0]) if len(videos) >= n else (lambda i: i)
    group = lambda split: np.array([zlib.crc32(key(i).encode()) % n for i in split.ids], np.int64)  # noqa: E731
    splits = {s: dataclasses.replace(data.split(s), domain=group(data.split(s))) for s in ("train", "valid", "test")}
    return dataclasses.replace(data, **splits, spec=dataclasses.replace(data.spec, n_domains=n),
                               config={**data.config, "domains": [f"speakers {g}" for g in range(n)]})


def domain_table(data, split: str = "train"):
    """One row per domain of ``split``: samples, label mean/std, share positive -- a quick look."""
    import pandas as pd

    part = data.split(split)
    rows = []
    for i, name in enumerate(domain_names(data)):
        y = part.label[part.domain == i]
        if len(y):
            rows.append({"domain": name, "samples": int(len(y)), "label_mean": float(y.mean()),
                         "label_std": float(y.std()), "positive": float((y > 0).mean())})
    return pd.DataFrame(rows)
