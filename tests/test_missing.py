import numpy as np
import pytest
import torch

from msa_lib.data.batch import iterate, make_batch
from msa_lib.missing import (PATTERNS, apply_keep_matrix, apply_pattern, hashed_uniform, instance_keep_matrix,
                             modality_dropout, modality_keep_matrix, random_missing, sample_train_rates)


def _batch(tiny, idx=None):
    return make_batch(tiny.train, np.arange(32) if idx is None else idx)


def test_hashed_uniform_is_uniform_and_order_free():
    u = hashed_uniform(3, 1, np.arange(2000), 50)
    assert u.shape == (2000, 50) and 0 <= u.min() and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    perm = np.random.default_rng(0).permutation(2000)
    assert torch.equal(hashed_uniform(3, 1, perm, 50), u[perm])
    assert not torch.equal(hashed_uniform(4, 1, np.arange(5), 50), u[:5])   # seed matters
    assert not torch.equal(hashed_uniform(3, 2, np.arange(5), 50), u[:5])   # stream matters


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.7, 1.0])
def test_random_missing_rate_and_rules(tiny, rate):
    b = _batch(tiny)
    out = random_missing(b, rate, seed=1)
    for m in ("audio", "vision"):
        valid = b.mask(m)
        kept = out.avail(m)
        assert not (kept & ~valid).any()                   # only real positions can be observed
        frac = 1 - kept.sum().item() / valid.sum().item()
        assert abs(frac - rate) < 0.08
        zeroed = valid & ~kept
        assert torch.all(out.features(m)[zeroed] == 0)      # removed frames are zero vectors
        assert torch.equal(out.features(m)[kept], b.features(m)[kept])
    # text: [CLS] (first) and [SEP] (last real) always survive
    lengths = b.text_mask.sum(1)
    rows = torch.arange(len(b))
    assert out.text_avail[rows, 0].all() and out.text_avail[rows, lengths - 1].all()
    assert torch.allclose(out.missing_rate, torch.full((len(b), 3), rate))
    assert out.clean is b


def test_random_missing_text_fill_unk_and_ids(tiny):
    b = _batch(tiny)
    unk = np.full(16, 7.0, np.float32)
    out = random_missing(b, 0.5, seed=0, text_fill="unk", unk_vector=unk)
    dropped = b.text_mask & ~out.text_avail
    assert dropped.any()
    assert torch.all(out.text[dropped] == 7.0)
    assert torch.all(out.text_ids[dropped] == 100)          # BERT's [UNK]
    with pytest.raises(ValueError, match="unk_text_feature"):
        random_missing(b, 0.5, text_fill="unk", unk_vector=None)
    with pytest.raises(ValueError, match="text_fill"):
        random_missing(b, 0.5, text_fill="blank")


def test_masks_do_not_depend_on_batch_order(tiny):
    """Same (seed, sample) -> same mask, whatever the batching."""
    whole = random_missing(make_batch(tiny.train, np.arange(96)), 0.4, seed=9)
    parts = [random_missing(b, 0.4, seed=9) for b in iterate(tiny.train, 7, shuffle=True, seed=3)]
    for part in parts:
        for m in ("text", "audio", "vision"):
            assert torch.equal(part.avail(m), whole.avail(m)[part.index])


def test_modalities_are_independent(tiny):
    """Unlike a re-seeded single generator, the modalities get different masks."""
    b = _batch(tiny)
    out = random_missing(b, 0.5, seed=0)
    L = min(out.audio_avail.shape[1], out.vision_avail.shape[1])
    both = b.audio_mask[:, :L] & b.vision_mask[:, :L]
    agree = (out.audio_avail[:, :L] == out.vision_avail[:, :L])[both].float().mean()
    assert agree < 0.65  # independent masks agree about half the time


def test_per_sample_and_per_modality_rates(tiny):
    b = _batch(tiny)
    rates = torch.tensor([0.0, 1.0, 0.5])
    out = random_missing(b, rates, seed=0)
    assert torch.equal(out.audio_avail, torch.zeros_like(out.audio_avail))
    assert torch.equal(out.text_avail, b.text_mask)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_missing(b, 1.5)
    with pytest.raises(ValueError, match="shape"):
        random_missing(b, torch.zeros(5, 2))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_fixed_patterns(tiny, pattern):
    b = _batch(tiny)
    out = apply_pattern(b, pattern)
    present = out.present()
    for i, m in enumerate(("text", "audio", "vision")):
        assert bool(present[:, i].all()) == (m[0] in pattern)
        assert bool(present[:, i].any()) == (m[0] in pattern)
        if m[0] not in pattern:
            assert torch.all(out.features(m) == 0)
    with pytest.raises(ValueError, match="unknown modality pattern"):
        apply_pattern(b, "xyz")


def test_modality_dropout_keeps_one(tiny):
    b = make_batch(tiny.train, np.arange(96))
    out = modality_dropout(b, 0.6, seed=2, epoch=0)
    present = out.present()
    assert present.any(1).all()
    frac_removed = 1 - present.float().mean().item()
    assert 0.35 < frac_removed < 0.65
    other = modality_dropout(b, 0.6, seed=2, epoch=1)
    assert not torch.equal(other.present(), present)   # a new epoch draws anew
    with pytest.raises(ValueError):
        modality_dropout(b, 1.0)


def test_sample_train_rates():
    r = sample_train_rates(np.arange(4000), seed=0, epoch=0)
    assert r.shape == (4000, 3)
    zero = (r == 0).float().mean().item()
    assert 0.47 < zero < 0.53
    assert abs(r[r > 0].mean().item() - 0.5) < 0.03
    assert not torch.equal(r, sample_train_rates(np.arange(4000), seed=0, epoch=1))


# specs/hme.md 3.1: the pattern mix of the GCNet generator on MOSI's 686 test samples
# (MR: share of complete rows, share of rows with one modality or None if not listed)
HME_TABLE = {0.1: (0.72, None), 0.2: (0.49, None), 0.3: (0.30, None), 0.4: (0.16, 0.37), 0.5: (0.06, 0.56),
             0.6: (0.01, 0.79), 0.7: (0.0, 1.0)}


@pytest.mark.parametrize("mr", sorted(HME_TABLE))
def test_modality_keep_matrix_reproduces_the_generators_pattern_mix(mr):
    complete_share, unimodal_share = HME_TABLE[mr]
    shares = []
    for seed in range(5):
        m = modality_keep_matrix(686, mr, seed=seed)
        assert m.shape == (686, 3) and m.dtype == bool and m.any(1).all()      # at least one modality kept
        kept = m.sum(1)
        shares.append(((kept == 3).mean(), (kept == 1).mean(), 1 - m.mean()))
    complete, unimodal, effective = np.mean(shares, axis=0)
    assert abs(complete - complete_share) <= 0.03
    if unimodal_share is not None:
        assert abs(unimodal - unimodal_share) <= 0.04
    # the overall rate is MR, except that MR = 0.7 keeps exactly one modality: 2/3 missing
    assert abs(effective - (2 / 3 if mr == 0.7 else mr)) <= (1e-9 if mr == 0.7 else 0.005 + 0.005)


def test_modality_keep_matrix_edges_and_seeds():
    assert modality_keep_matrix(10, 0.0).all()
    assert (modality_keep_matrix(5, 0.8).sum(1) == 1).all()
    a, b = modality_keep_matrix(200, 0.3, seed=1), modality_keep_matrix(200, 0.3, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, modality_keep_matrix(200, 0.3, seed=2))
    small = modality_keep_matrix(5, 0.3, seed=0)                                # rows drawn for 32, cut to 5
    assert small.shape == (5, 3) and small.any(1).all()
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="MR"):
            modality_keep_matrix(10, bad)


def test_apply_keep_matrix_removes_whole_modalities_by_sample_index(tiny):
    matrix = modality_keep_matrix(len(tiny.train), 0.5, seed=3)
    b = _batch(tiny)
    out = apply_keep_matrix(b, matrix)
    present = out.present().numpy()
    assert np.array_equal(present, matrix[np.arange(32)])
    for i, m in enumerate(("text", "audio", "vision")):
        gone = ~matrix[np.arange(32), i]
        assert not out.avail(m)[torch.from_numpy(gone)].any()                   # every element of it removed
        if m != "text":
            assert torch.all(out.features(m)[torch.from_numpy(gone)] == 0)
    shuffled = np.random.default_rng(0).permutation(32)                         # batch order does not matter
    again = apply_keep_matrix(_batch(tiny, shuffled), matrix)
    assert np.array_equal(again.present().numpy(), matrix[shuffled])
    with pytest.raises(IndexError, match="rows"):
        apply_keep_matrix(b, matrix[:10])


def test_robustness_sweep_modality_protocol(tiny):
    from msa_lib.models import build
    from msa_lib.train import robustness_sweep
    torch.manual_seed(0)
    model = build("early_fusion", tiny.spec, d_model=8)
    df = robustness_sweep(model, tiny.test, tiny.spec, "modality")
    assert list(df["rate"]) == [round(0.1 * i, 1) for i in range(8)]
    assert df.loc[df.rate == 0.0, "effective_rate"].item() == 0.0
    assert abs(df.loc[df.rate == 0.7, "effective_rate"].item() - 2 / 3) < 1e-9


def test_instance_keep_matrix_gives_a_share_of_clips_one_of_the_six_subsets():
    assert instance_keep_matrix(50, 0.0).all()
    keep = instance_keep_matrix(6000, 1.0, seed=3)
    subsets = ["".join(m for m, k in zip("tav", row) if k) for row in keep]
    counts = {p: subsets.count(p) for p in PATTERNS}
    assert counts["tav"] == 0 and all(900 <= counts[p] <= 1100 for p in PATTERNS if p != "tav")
    half = instance_keep_matrix(6000, 0.5, seed=3)
    assert 0.47 <= 1 - half.all(axis=1).mean() <= 0.53 and half.any(axis=1).all()
    assert (instance_keep_matrix(40, 0.5, seed=1) == instance_keep_matrix(40, 0.5, seed=1)).all()
    with pytest.raises(ValueError, match="probability must be in"):
        instance_keep_matrix(10, 1.5)


def test_three_protocols_rows_and_means(tiny):
    from msa_lib.models import build
    from msa_lib.train import protocol_means, three_protocols
    torch.manual_seed(0)
    model = build("early_fusion", tiny.spec, d_model=8)
    table = three_protocols(model, tiny.test, tiny.spec, mask_seeds=(0, 1))
    assert list(table.protocol).count("complete") == 1 and list(table.protocol).count("fixed") == 6
    assert list(table.loc[table.mask_seed == 1, "condition"]) == [f"MR {0.1 * i:.1f}" for i in range(1, 8)]
    means = protocol_means(table, "Has0_acc_2")
    fixed = table.loc[table.condition.isin(["ta", "tv", "av", "t", "a", "v"]), "Has0_acc_2"].mean()
    assert means["fixed"] == pytest.approx(fixed) and set(means) == {"complete", "fixed", "random"}
