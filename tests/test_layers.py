import pytest
import torch

from msa_lib.layers import (BottleneckTokens, CrossModalAttention, GradientReversal, MultiHeadAttention,
                            TextEncoder, TransformerEncoder, VariationalEncoder, grad_reverse, masked_mean)


def test_padding_mask_makes_padding_irrelevant():
    torch.manual_seed(0)
    enc = TransformerEncoder(16, depth=2, heads=4, dropout=0.0, max_len=12).eval()
    x = torch.randn(2, 12, 16)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[:, 8:] = False
    y1 = enc(x, mask)
    x2 = x.clone()
    x2[:, 8:] = 100.0 * torch.randn(2, 4, 16)
    y2 = enc(x2, mask)
    assert torch.allclose(y1[:, :8], y2[:, :8], atol=1e-5)


def test_attention_with_no_visible_key_returns_zeros():
    attn = MultiHeadAttention(8, heads=2).eval()
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1] = False
    y = attn(q, kv, mask)
    assert torch.isfinite(y).all() and torch.all(y[1] == 0) and y[0].abs().sum() > 0
    y_w = attn(q, kv, mask, keep_weights=True)
    assert torch.allclose(y, y_w, atol=1e-5)


def test_cross_attention_shapes():
    block = CrossModalAttention(16, depth=2, heads=4).eval()
    out = block(torch.randn(3, 7, 16), torch.randn(3, 11, 16), torch.ones(3, 11, dtype=torch.bool), keep_weights=True)
    assert out.shape == (3, 7, 16)
    assert [w.shape for w in block.attention_maps()] == [(3, 4, 7, 11)] * 2


def test_gradient_reversal_reverses():
    x = torch.randn(5, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(5.0))
    y = torch.randn(3, requires_grad=True)
    out = GradientReversal()(y)
    assert torch.equal(out, y)
    out.sum().backward()
    assert torch.all(y.grad == -1)


def test_bottleneck_tokens_and_masked_mean():
    tok = BottleneckTokens(4, 8)
    assert tok(3).shape == (3, 4, 8)
    x = torch.arange(12.0).view(1, 4, 3)
    m = torch.tensor([[True, True, False, False]])
    assert torch.allclose(masked_mean(x, m), torch.tensor([[1.5, 2.5, 3.5]]))
    assert torch.all(masked_mean(x, torch.zeros_like(m)) == 0)


def test_variational_encoder_kl():
    enc = VariationalEncoder(6, 3)
    z, mu, logvar = enc(torch.randn(10, 6))
    assert z.shape == mu.shape == (10, 3)
    assert VariationalEncoder.kl(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0
    assert VariationalEncoder.kl(torch.ones(4, 3), torch.zeros(4, 3)).item() == pytest.approx(1.5)
    enc.eval()
    z2, mu2, _ = enc(torch.ones(2, 6))
    assert torch.equal(z2, mu2)


def test_text_encoder_features_and_hf_offline(tmp_path):
    enc = TextEncoder(20, 8, kind="features")
    assert enc(torch.randn(2, 5, 20), torch.ones(2, 5, dtype=torch.bool)).shape == (2, 5, 8)
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16)
    BertModel(cfg).save_pretrained(tmp_path / "tiny-bert")
    # tokenizer files are not needed for the encoder itself; make AutoTokenizer loadable too
    (tmp_path / "tiny-bert" / "vocab.txt").write_text("\n".join(["[PAD]"] + [f"w{i}" for i in range(99)] +
                                                               ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                                                               [f"x{i}" for i in range(16)]))
    enc = TextEncoder(0, 8, kind=str(tmp_path / "tiny-bert"), finetune=True)
    ids = torch.randint(0, 120, (2, 6))
    out = enc(torch.zeros(2, 6, 1), torch.ones(2, 6, dtype=torch.bool), ids)
    assert out.shape == (2, 6, 8)
    out.sum().backward()
    assert enc.pretrained.embeddings.word_embeddings.weight.grad is not None
    with pytest.raises(ValueError, match="token ids"):
        enc(torch.zeros(2, 6, 1), torch.ones(2, 6, dtype=torch.bool), None)
    with pytest.raises(OSError, match="no local copy found"):
        TextEncoder(0, 8, kind=str(tmp_path / "missing-model"))


def test_bundled_minilm_loads_offline():
    enc = TextEncoder(0, 8, kind="minilm")
    assert enc.pretrained.config.hidden_size == 384


def test_dropout_bits_has_dropouts_distribution_and_gradient():
    from msa_lib.layers import dropout_bits
    x = torch.ones(1001, 1003, requires_grad=True)                  # odd size: not a multiple of 8
    torch.manual_seed(0)
    y = dropout_bits(x, 0.5)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert abs((y > 0).float().mean().item() - 0.5) < 0.002           # ~1e6 draws: sd 5e-4
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())                            # gradient = mask / (1 - p)
    torch.manual_seed(0)
    assert torch.equal(dropout_bits(x.detach(), 0.5), y.detach())     # seeded
    assert not torch.equal(dropout_bits(x.detach(), 0.5), y.detach())
    # neighbouring elements come from different bits of one byte: their masks must be independent
    keep = (y.detach() > 0).view(-1)
    agree = (keep[:-1] == keep[1:]).float().mean().item()
    assert abs(agree - 0.5) < 0.003
    assert torch.equal(dropout_bits(x.detach(), 0.5, training=False), x.detach())
    torch.manual_seed(1)
    a = dropout_bits(x.detach(), 0.3)
    torch.manual_seed(1)
    assert torch.equal(a, torch.nn.functional.dropout(x.detach(), 0.3, True))   # other p: torch's dropout


def test_dashfusion_long_attention_with_dropout_is_unbiased():
    """The CPU path for long sequences with dropout averages to the attention without dropout."""
    from msa_lib.models.dashfusion import LONG_ATTENTION, attend
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 130, 4) for _ in range(3))
    assert 130 * 130 > LONG_ATTENTION
    key_mask = torch.ones(2, 130, dtype=torch.bool)
    key_mask[1, 100:] = False
    drop = torch.nn.Dropout(0.5).train()
    clean, _ = attend(q, k, v, 0.5, key_mask, None, need_weights=False)
    mean = sum(attend(q, k, v, 0.5, key_mask, drop, need_weights=False)[0] for _ in range(400)) / 400
    one = attend(q, k, v, 0.5, key_mask, drop, need_weights=False)[0]
    assert (mean - clean).abs().mean() < 0.1 * (one - clean).abs().mean()   # 400 draws: about 1/20
    v2 = v.clone()
    v2[1, :, 100:] = 1e6                                              # masked keys must not leak
    assert torch.allclose(attend(q, k, v2, 0.5, key_mask, drop.eval(), need_weights=False)[0][1], clean[1])


def test_precomputed_controls_hold_every_state_and_show_the_default():
    import json
    import re

    from msa_lib import viz
    calls = []

    def render(clip, text, r):
        calls.append((clip, text, r))
        return f"<pre>clip {clip} text {text} r {r}</pre>"

    out = viz.precomputed_controls([
        {"name": "clip", "kind": "select", "options": [("first", 7), ("second", 9)], "default": 1},
        {"name": "text", "kind": "checkbox", "default": True},
        {"name": "r", "kind": "slider", "options": [("0.0", 0.0), ("0.5", 0.5), ("0.9", 0.9)], "default": 2},
    ], render).data
    assert len(calls) == 2 * 2 * 3
    states = json.loads(re.search(r'class="msa-states">(.*?)</script>', out, re.S).group(1).replace("<\\/", "</"))
    assert states["0|1|2"] == "<pre>clip 7 text True r 0.9</pre>" and states["1|0|0"] == "<pre>clip 9 text False r 0.0</pre>"
    shown = re.search(r'<div class="msa-out">(.*?)</div>', out, re.S).group(1)
    assert shown == states["1|1|2"]                                   # the default state, without JavaScript
    again = viz.precomputed_controls([{"name": "r", "kind": "slider", "options": [("a", 1), ("b", 2)]}], str).data
    assert again == viz.precomputed_controls([{"name": "r", "kind": "slider", "options": [("a", 1), ("b", 2)]}], str).data
    with pytest.raises(ValueError, match="kind"):
        viz.precomputed_controls([{"name": "x", "kind": "knob"}], str)
