import numpy as np
import pytest
import torch

from msa_lib.data.batch import make_batch
from msa_lib.missing import PATTERNS, apply_pattern, random_missing
from msa_lib.models import BASELINES, available, build

ALL_BASELINES = BASELINES + ("audio_only", "vision_only")


def test_registry():
    assert set(ALL_BASELINES) <= set(available())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        build("nope", None)


def test_unknown_option_is_named(tiny):
    with pytest.raises(TypeError, match="no option"):
        build("tfn", tiny.spec, widht=3)


@pytest.mark.parametrize("name", ALL_BASELINES)
def test_forward_shapes_and_all_patterns(tiny, name):
    torch.manual_seed(0)
    model = build(name, tiny.spec, d_model=16).eval()
    b = make_batch(tiny.train, np.arange(8))
    assert model(b).pred.shape == (8,)
    for p in PATTERNS:
        out = model(apply_pattern(b, p))
        assert out.pred.shape == (8,) and torch.isfinite(out.pred).all(), p
    for r in (0.0, 0.5, 0.9, 1.0):
        assert torch.isfinite(model(random_missing(b, r)).pred).all()
    terms = model.loss(b, model(b))
    assert "total" in terms and terms["total"].dim() == 0


@pytest.mark.parametrize("name", ALL_BASELINES)
def test_overfits_a_tiny_batch(tiny, name, fit_batch):
    torch.manual_seed(0)
    model = build(name, tiny.spec, d_model=32, dropout=0.0)
    b = make_batch(tiny.train, np.arange(16))
    first = fit_batch(model, b, 150)[0]["total"]
    model.eval()
    final = torch.nn.functional.l1_loss(model(b).pred, b.label).item()
    assert final < 0.25 * first, (name, first, final)


def test_late_fusion_ignores_missing_modality(tiny):
    torch.manual_seed(0)
    model = build("late_fusion", tiny.spec, d_model=16).eval()
    b = make_batch(tiny.train, np.arange(8))
    out = model(apply_pattern(b, "ta"))
    assert torch.all(out.aux["weights"][:, 2] == 0)
    assert torch.allclose(out.aux["weights"].sum(1), torch.ones(8))


def test_mult_exposes_attention(tiny):
    model = build("mult", tiny.spec, d_model=16).eval()
    model.keep_attention = True
    b = make_batch(tiny.train, np.arange(4))
    maps = model(b).aux["attention"]
    assert maps["audio->text"].shape == (4, 4, 10, 20)
    rows = maps["audio->text"].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
    # padded audio frames get no attention
    pad = ~b.audio_mask
    assert torch.all(maps["audio->text"].permute(0, 2, 1, 3)[pad[:, None, None, :].expand(-1, 10, 4, -1)] == 0)
