"""msa_lib.recipes: every model of the book trained with its chapter's SynthMSA recipe."""
import pytest

from msa_lib.models import available
from msa_lib.recipes import BASELINE_EPOCHS, BASELINE_WIDTH, BOOK_MODELS, synth_model, synth_train_config, train_synth


def test_every_book_model_is_registered_and_gets_its_chapter_recipe(tiny):
    assert set(BOOK_MODELS) <= set(available())
    early = synth_model("early_fusion", tiny.spec)
    assert early.cfg.d_model == BASELINE_WIDTH
    cfg = synth_train_config(early, seed=3)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == (BASELINE_EPOCHS, 64, 2e-3, 3)
    midg = synth_model("midg", tiny.spec)
    assert midg.cfg.d_model == 64 and synth_train_config(midg, 0).epochs == midg.cfg.epochs   # the synth preset's own
    dash = synth_model("dashfusion", tiny.spec)
    assert synth_train_config(dash, 0).lr == 2e-3              # chapter 3 trains it with the baselines' recipe
    assert synth_train_config(synth_model("mmslf", tiny.spec), 0) is None   # two stages, each its own recipe
    with pytest.raises(KeyError, match="unknown model 'gpt'"):
        synth_model("gpt", tiny.spec)


def test_train_synth_trains_with_an_objective(synth_smoke):
    model, result = train_synth("early_fusion", synth_smoke, seed=0, epochs=1, dg="coral")
    assert result.config["dg"] == "coral" and "train_coral" in result.history
    assert 0.0 <= result.test["Non0_acc_2"] <= 1.0 and len(result.history) == 1
