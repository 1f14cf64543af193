"""Domain shift: leave-one-domain-out splits and the domain-generalization objectives."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msa_lib.data.batch import make_batch
from msa_lib.data.domains import domain_names, domain_table, holdout, in_domain, resolve_domain, single_source
from msa_lib.dg import Objective, coral_penalty, cross_domain_partners, irm_penalty, mix_across_domains
from msa_lib.models import build
from msa_lib.train import TrainConfig, fit


# ------------------------------------------------------------------------------------- splits
def test_holdout_never_leaks_the_held_out_domain(synth_smoke):
    names = domain_names(synth_smoke)
    assert len(names) == 4 and names[0] == "studio-reviewers"
    for target, name in enumerate(names):
        data = holdout(synth_smoke, name)
        assert target not in set(data.train.domain) and target not in set(data.valid.domain)
        assert set(data.test.domain) == {target}
        assert set(data.train.domain) == set(range(4)) - {target}
        assert len(data.train) + (synth_smoke.train.domain == target).sum() == len(synth_smoke.train)
        assert data.config["selection"] == "source validation" and data.config["target"] == name
        assert "oracle" not in data.spec.name


def test_oracle_selection_is_labelled_and_uses_the_target(synth_smoke):
    data = holdout(synth_smoke, 2, select="oracle")
    assert set(data.valid.domain) == {2} and 2 not in set(data.train.domain)
    assert "oracle" in data.spec.name and data.config["selection"].startswith("oracle")
    with pytest.raises(ValueError, match="select"):
        holdout(synth_smoke, 2, select="target")


def test_unknown_domain_and_empty_training_data_are_clear_errors(synth_smoke):
    with pytest.raises(ValueError, match=r"no domain 'podcasts'.*0='studio-reviewers'"):
        holdout(synth_smoke, "podcasts")
    with pytest.raises(ValueError, match="no domain 7"):
        holdout(synth_smoke, 7)
    assert resolve_domain(synth_smoke, "VLOGGERS") == 2 == resolve_domain(synth_smoke, "2")
    only = holdout(synth_smoke, "vloggers")                 # three domains left ...
    one = single_source(synth_smoke, "vloggers", "call-centre")
    with pytest.raises(ValueError, match="leaves no training data"):
        holdout(one, "vloggers")                             # ... a single-source set has one
    assert set(only.train.domain) == {0, 1, 3}
    with pytest.raises(ValueError, match="two different domains"):
        single_source(synth_smoke, 1, "street-interviews")


def test_single_source_and_in_domain_reference(synth_smoke):
    data = single_source(synth_smoke, "studio-reviewers", "call-centre")
    assert set(data.train.domain) == {0} == set(data.valid.domain) and set(data.test.domain) == {3}
    ref = in_domain(synth_smoke, "call-centre")
    assert set(ref.train.domain) == set(range(4)) and set(ref.test.domain) == {3}
    assert np.array_equal(ref.test.label, holdout(synth_smoke, 3).test.label)   # the same test clips
    table = domain_table(synth_smoke)
    assert list(table.domain) == domain_names(synth_smoke) and table.samples.sum() == len(synth_smoke.train)


def test_target_scale_and_metric_set_follow_the_domain(synth_smoke):
    import dataclasses
    combined = dataclasses.replace(synth_smoke, config={**synth_smoke.config, "domain_scales": [3.0, 1.0, 3.0, 3.0],
                                                        "domain_metric_sets": ["mosi", "sims", "mosi", "mosi"]})
    sims = holdout(combined, 1)
    assert sims.spec.metric_set == "sims" and sims.spec.score_scale == 1.0
    mosi = holdout(combined, 0)
    assert mosi.spec.metric_set == "mosi" and mosi.spec.score_scale == 3.0


def test_evaluate_scores_on_the_native_scale(tiny):
    import dataclasses
    from msa_lib.train import evaluate
    model = build("early_fusion", tiny.spec, d_model=16).eval()
    base = evaluate(model, tiny.test, tiny.spec)
    scaled = evaluate(model, tiny.test, dataclasses.replace(tiny.spec, score_scale=3.0))
    assert scaled["MAE"] == pytest.approx(3 * base["MAE"], abs=2e-3)
    assert scaled["loss"] == base["loss"]                   # the loss stays on the training scale


# --------------------------------------------------------------------------------- penalties
def test_irm_penalty_is_zero_for_a_predictor_optimal_in_every_domain():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=200), dtype=torch.float32)
    domain = torch.tensor(np.repeat([0, 1], 100))
    y = 2.0 * x + torch.tensor(rng.normal(0, 0.1, 200), dtype=torch.float32)
    # least squares through the origin, fitted per domain and identical across them: optimal in each
    beta = [float((x[domain == e] @ y[domain == e]) / (x[domain == e] @ x[domain == e])) for e in (0, 1)]
    pred = torch.where(domain == 0, beta[0] * x, beta[1] * x)
    assert float(irm_penalty(pred, y, domain, F.mse_loss).detach()) < 1e-10
    # one shared slope that is wrong for both domains when they disagree: positive penalty
    y2 = torch.where(domain == 0, 1.0 * x, 3.0 * x)
    assert float(irm_penalty(2.0 * x, y2, domain, F.mse_loss).detach()) > 0.5


def test_coral_is_zero_for_identical_statistics_and_grows_with_the_shift():
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.normal(size=(64, 5)), dtype=torch.float32)
    domain = torch.tensor([0] * 64 + [1] * 64)
    same = torch.cat([a, a.flip(0)])                          # same mean and covariance, other order
    assert float(coral_penalty(same, domain)) < 1e-10
    shifted = torch.cat([a, 2.0 * a.flip(0)])
    assert float(coral_penalty(shifted, domain)) > 0.1
    assert float(coral_penalty(a, torch.zeros(64, dtype=torch.long))) == 0.0   # one domain: nothing to align


def test_mixup_pairs_clips_across_domains(tiny):
    batch = make_batch(tiny.train, np.arange(16))
    partner = cross_domain_partners(batch.domain, torch.Generator().manual_seed(0))
    assert (batch.domain != batch.domain[partner]).all()
    mixed = mix_across_domains(batch, 0.7, torch.Generator().manual_seed(0))
    p = partner
    assert torch.allclose(mixed.label, 0.7 * batch.label + 0.3 * batch.label[p])
    assert torch.allclose(mixed.audio, 0.7 * batch.audio + 0.3 * batch.audio[p])
    assert torch.equal(mixed.audio_mask, batch.audio_mask | batch.audio_mask[p])
    assert torch.equal(mixed.text_ids, batch.text_ids)       # lam >= 0.5: the clip's own words
    same = mix_across_domains(batch, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(same.text, batch.text) and torch.equal(same.label, batch.label)


# ------------------------------------------------------------------------ through the trainer
def _fit(tiny, **kw):
    torch.manual_seed(0)
    model = build(kw.pop("model", "early_fusion"), tiny.spec, d_model=16)
    return model, fit(model, tiny, TrainConfig(epochs=2, batch_size=16, lr=3e-3, deterministic=True, **kw))


@pytest.mark.parametrize("method", ["irm", "coral", "adversarial", "mixup"])
def test_every_objective_trains_and_logs_its_term(tiny, method):
    model, res = _fit(tiny, dg=method)
    assert np.isfinite(res.history["train_total"]).all()
    if method != "mixup":
        assert f"train_{method}" in res.history and (res.history[f"train_{method}"] > 0).all()
    assert not model._forward_pre_hooks                     # the objective removed its hooks
    _, erm = _fit(tiny)
    assert res.test != erm.test                              # the objective changed the training


def test_a_zero_weight_penalty_leaves_erm_unchanged(tiny):
    _, erm = _fit(tiny)
    _, irm0 = _fit(tiny, dg="irm", dg_weight=0.0)
    _, coral0 = _fit(tiny, dg="coral", dg_weight=0.0)
    assert irm0.test == erm.test == coral0.test


def test_the_adversary_reverses_the_gradient_into_the_model(tiny):
    torch.manual_seed(0)
    model = build("early_fusion", tiny.spec, d_model=16)
    objective = Objective("adversarial", weight=1.0)
    batch = make_batch(tiny.train, np.arange(32))
    objective.attach(model, 2, batch)
    loss = objective.terms(model, batch, model(batch))["adversarial"]
    captured = objective._features[0]                       # the head's input, inside the graph
    into_model, = torch.autograd.grad(loss, captured, retain_graph=True)
    feats = captured.detach().requires_grad_(True)
    into_classifier, = torch.autograd.grad(F.cross_entropy(objective.classifier(feats), batch.domain), feats)
    assert into_classifier.abs().sum() > 0
    assert torch.allclose(into_model, -into_classifier, atol=1e-7)   # the model is pushed the other way
    objective.detach()
    assert not model._forward_pre_hooks and not model.head._forward_pre_hooks


def test_models_without_a_representation_say_so(tiny):
    model = build("late_fusion", tiny.spec, d_model=16)
    with pytest.raises(ValueError, match="no single representation.*'irm' or 'mixup'"):
        fit(model, tiny, TrainConfig(epochs=1, batch_size=16, dg="coral"))
    with pytest.raises(ValueError, match="unknown domain-generalization method 'dro'"):
        fit(model, tiny, TrainConfig(epochs=1, batch_size=16, dg="dro"))


# ----------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("model", ["early_fusion", "midg"])
def test_cli_trains_with_a_held_out_domain(tmp_path, synth_smoke, capsys, model):
    from msa_lib.cli import main
    out = tmp_path / "run"
    rc = main(["train", "--model", model, "--data", "synth:smoke", "--holdout", "call-centre", "--preset", "synth",
               "--dg", "coral", "--epochs", "1", "--quiet", "--set", "d_model=16", "--out", str(out)])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["holdout"] == "call-centre" and config["selection"] == "source validation"
    assert config["train_config"]["dg"] == "coral" and config["model"] == model
    assert json.loads((out / "metrics.json").read_text())["test"]["MAE"] > 0
    rc = main(["train", "--model", "early_fusion", "--data", "synth:smoke", "--holdout", "radio",
               "--epochs", "1", "--quiet", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "no domain 'radio'" in capsys.readouterr().err


def test_speaker_domains_group_videos_and_fall_back_to_clips(tmp_path):
    from msa_lib.data import load
    from msa_lib.data.domains import speaker_domains
    from msa_lib.data.fixtures import write_mmsa_fixture
    data = load(write_mmsa_fixture(tmp_path / "mosi.pkl", sizes=(40, 16, 16)))
    assert data.spec.n_domains == 1
    groups = speaker_domains(data, 4)                     # one video per split: grouped by clip
    assert groups.spec.n_domains == 4 and domain_names(groups)[3] == "speakers 3"
    assert len(set(groups.train.domain)) == 4
    held = holdout(groups, "speakers 1")
    assert 1 not in set(held.train.domain) and set(held.test.domain) == {1}
    import dataclasses
    ids = [f"video{i % 6}$_${i}" for i in range(len(data.train))]
    videos = speaker_domains(dataclasses.replace(data, train=dataclasses.replace(data.train, ids=ids)), 4)
    by_video = {}
    for i, d in zip(ids, videos.train.domain):            # every clip of a video in one group
        by_video.setdefault(i.split("$_$")[0], set()).add(int(d))
    assert all(len(v) == 1 for v in by_video.values())


def test_the_cli_offers_exactly_the_library_objectives():
    from msa_lib.cli import parser
    from msa_lib.dg import METHODS
    train = next(a for a in parser()._subparsers._group_actions[0].choices["train"]._actions if a.dest == "dg")
    assert tuple(train.choices) == METHODS          # the CLI lists them without importing torch
