"""MMSLF: a multimodal LLM's hints guide a small teacher, which is distilled into a student.

Zhang, Zhang, Ying, Tang and Yu, "Improving Task-Specific Multimodal Sentiment Analysis with
General MLLMs via Prompting", NeurIPS 2025. Read beside the official code
(github.com/LOGO-CUHKSZ/MMSLF at aeb8d3e), whose behaviour this file follows unless a comment
says otherwise. The blocks are LNLN's (same group, same code base): ``TokenTransformer`` and
``FeedForward`` come from ``lnln.py``.

1. A prompt source (``msa_lib.prompts``) writes a hint per clip; a frozen text encoder turns it
   into token features, cached by ``encode_prompts``; a projection and a small transformer with
   50 prepended tokens summarise it as P (B, 50, d).
2. ``ModulatedAttention``: text queries attend to audio (or vision) frames with the logits
   multiplied element-wise by a prompt-vs-value score map (the "conditional attention"):
   ``softmax((Q K^T / sqrt(dh)) * (P_k V^T / sqrt(dh)))``. Both the plain map softmax(Q K^T)
   and the modulated one are returned.
3. ``Backbone``: text-centred cross encoders for audio and vision, a fusion transformer with 4
   prepended tokens over the 100 concatenated tokens, a linear head on the flattened 4 tokens.
   The teacher is a backbone with prompts (depths 6 and 6), the student one without (depths 2
   and 2 by default; 1 and 2 in the README's SIMS command). At inference only the student runs.
4. Two stages: the teacher is trained with L1 (on inputs with words and elements dropped at a
   random rate); then, with the teacher frozen, the student with
   ``w_reg * L1 + w_attn * (L1 of the last-layer text->audio and text->vision maps) +
   w_fusion * L1 of the 4 fusion tokens``. ``set_stage`` switches, ``stage_config`` gives each
   stage's recipe, and ``msa_lib.train.fit_stages`` runs them in order.

Switches where the book may differ from the code (paper presets: the code's value):
``distill_target`` ("plain": the teacher's un-modulated map, the code; "conditional": the
modulated map, the paper's description), ``teacher_train_mode`` (False; True keeps the teacher's
dropout on while it teaches, as the code does), ``build_unused`` (True builds the MOSEI student's
unused prompt projection, so the parameter counts are the official ones).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch
from ..data.spec import DatasetSpec
from ..layers import TextEncoder
from ..missing import _drop_text
from .base import ModelOutput, MSAModel, register
from .lnln import FeedForward, TokenTransformer


@dataclass
class MMSLFConfig:
    # --- widths (the official MOSI model) ---
    d_model: int = 64
    heads: int = 4                 # cross encoders
    dim_head: int = 32
    mlp_dim: int = 128             # cross encoders' feed-forward (SIMS: 768)
    dropout: float = 0.5           # cross encoders
    teacher_encoder_depth: int = 6
    teacher_fusion_depth: int = 6
    encoder_depth: int = 2         # the student's (README SIMS: 1)
    fusion_depth: int = 2
    fusion_heads: int = 6          # the teacher's fusion (SIMS: 8)
    student_fusion_heads: int = 6  # the student's fusion (SIMS: 4)
    fusion_mlp: int = 64
    n_fusion_tokens: int = 4
    prompt_depth: int = 2
    prompt_heads: int = 6          # SIMS: 8
    prompt_mlp: int = 128          # SIMS: 64
    prompt_positions: int = 512    # rows of the prompt transformer's position table (the token limit)
    prompt_tokens: int = 50        # the summary P keeps the first 50 outputs (the text length)
    pos_init_std: float = 1.0      # position tables ~ N(0, 1) in the code
    build_unused: bool = False     # the MOSEI student's unused prompt projection (official counts)
    # --- distillation (README SIMS weights; MOSI/MOSEI's are not released) ---
    w_reg: float = 1.0
    w_attn: float = 60.0
    w_fusion: float = 8.0
    distill_target: str = "plain"  # "plain" (code) or "conditional" (paper)
    teacher_train_mode: bool = False   # True: the code's teacher keeps its dropout on while teaching
    # --- text and prompts ---
    text_encoder: str = "features"
    finetune_text_teacher: bool = True   # the teacher fine-tunes its own BERT (README: --bert_finetune)
    finetune_text: bool = False    # the student's own copy stays frozen (README student command)
    prompt_encoder: str = "minilm"  # frozen; "bert-base-uncased" etc. where a local copy exists
    prompt_max_length: int = 128
    prompt_source: str = "describer"   # "describer" (offline) or "openai" (prompt_url, prompt_model)
    prompt_error_rate: float = 0.0     # the describer's perception error rate
    prompt_seed: int = 0
    label_leak: bool = True            # the official protocol: training clips' prompts see the label
    prompt_url: str = ""
    prompt_model: str = "gpt-4o-mini"
    # --- the two recipes ---
    teacher_lr: float = 2e-4
    teacher_epochs: int = 100
    teacher_warmup_epochs: int = 10
    lr: float = 1e-4               # the student's
    epochs: int = 200
    warmup_epochs: int = 20
    weight_decay: float = 1e-4
    batch_size: int = 64
    min_keep_rate: float = 0.5     # the teacher's training augmentation: keep rate s ~ U(0.5, 1)
    loss: str = "l1"
    recipe: str = "book"

    @classmethod
    def preset(cls, name: str) -> "MMSLFConfig":
        official = dict(recipe="official", text_encoder="bert-base-uncased", prompt_encoder="bert-base-uncased",
                        prompt_max_length=512)
        presets = {
            "mosi": cls(**official),
            "mosei": cls(build_unused=True, **official),
            "sims": cls(mlp_dim=768, fusion_heads=8, student_fusion_heads=4, prompt_heads=8, prompt_mlp=64,
                        encoder_depth=1, **{**official, "text_encoder": "bert-base-chinese",
                                           "prompt_encoder": "bert-base-chinese"}),
            # SynthMSA on a CPU (chapter 7), not from the paper: shallower teacher, short schedules
            "synth": cls(d_model=32, dim_head=16, mlp_dim=64, teacher_encoder_depth=2, teacher_fusion_depth=2,
                         encoder_depth=1, fusion_depth=1, fusion_heads=4, student_fusion_heads=4, fusion_mlp=32,
                         prompt_heads=4, prompt_mlp=64, prompt_positions=128, prompt_max_length=128, dropout=0.1,
                         pos_init_std=0.1,
                         teacher_lr=1e-3, teacher_epochs=10, teacher_warmup_epochs=1, lr=1e-3, epochs=10,
                         warmup_epochs=1, batch_size=64),
        }
        if name not in presets:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def inference_params(self) -> int:
        """The deployed student: its text encoder and backbone (the teacher only trains it)."""
        return sum(p.numel() for m in (self.student_text, self.student) for p in m.parameters())

    def stage_config(self, stage: str, **overrides):
        """The recipe of one stage: AdamW, linear warm-up from 0 then cosine, per epoch (LNLN's
        scheduler), the epoch chosen on the validation MAE."""
        from ..train import TrainConfig
        if stage not in ("teacher", "student"):
            raise ValueError(f"MMSLF stage must be 'teacher' or 'student', got {stage!r}")
        teacher = stage == "teacher"
        epochs = self.teacher_epochs if teacher else self.epochs
        warm = self.teacher_warmup_epochs if teacher else self.warmup_epochs
        kw = dict(epochs=epochs, batch_size=self.batch_size, lr=self.teacher_lr if teacher else self.lr,
                  weight_decay=self.weight_decay, schedule="cosine", schedule_unit="epoch",
                  warmup=warm / max(1, epochs), grad_clip=None, select_on="MAE", select_from=1)
        kw.update(overrides)
        return TrainConfig(**kw)

    def train_config(self, **overrides):
        """The student's recipe (the stage that makes the deployed model)."""
        return self.stage_config("student", **overrides)


# ---------------------------------------------------------------------------------------------
# 1. Conditional (modulated) cross-attention
# ---------------------------------------------------------------------------------------------
def modulated_attention(q, k, v, prompt_k=None):
    """(B, h, Lt, dh) queries, (B, h, Ls, dh) keys and values, (B, h, Lt, dh) prompt keys or None
    -> (output (B, h, Lt, dh), plain map (B, h, Lt, Ls), modulated map or None). The logits
    Q K^T / sqrt(dh) are multiplied element-wise by P_k V^T / sqrt(dh) before the softmax."""
    scale = q.shape[-1] ** -0.5
    logits = q @ k.transpose(-2, -1) * scale
    plain = logits.softmax(-1)
    if prompt_k is None:
        return plain @ v, plain, None
    modulated = (logits * (prompt_k @ v.transpose(-2, -1) * scale)).softmax(-1)
    return modulated @ v, plain, modulated


class ModulatedAttention(nn.Module):
    """Pre-norm cross-attention (a LayerNorm each for query, key, value and prompt inputs; no bias
    on the projections; dropout after the output projection). forward(target (B, Lt, d), source
    (B, Ls, d), prompt (B, Lt, d) or None) -> (B, Lt, d), plain map, modulated map or None."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm_q, self.norm_k, self.norm_v, self.norm_p = (nn.LayerNorm(dim) for _ in range(4))
        self.to_q, self.to_k, self.to_v, self.to_prompt_k = (nn.Linear(dim, inner, bias=False) for _ in range(4))
        self.out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def split(self, x):
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.dim_head).transpose(1, 2)            # (B, h, L, dh)

    def forward(self, target, source, prompt=None):
        q = self.split(self.to_q(self.norm_q(target)))
        k = self.split(self.to_k(self.norm_k(source)))
        v = self.split(self.to_v(self.norm_v(source)))
        pk = None if prompt is None else self.split(self.to_prompt_k(self.norm_p(prompt)))
        y, plain, modulated = modulated_attention(q, k, v, pk)
        B, h, L, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, L, h * dh)), plain, modulated


class ModulatedCrossEncoder(nn.Module):
    """Text (target) queries over one nonverbal stream (source), modulated by the prompt summary.
    forward(source (B, Ls, d), target (B, Lt, d), prompt (B, Lt, d) or None) -> (target (B, Lt, d),
    [plain map per layer], [modulated map per layer] or None). The source and the prompt are not
    updated; position tables have L + 1 rows, of which the first L are used (the code's)."""

    def __init__(self, cfg: MMSLFConfig, source_len: int, target_len: int, depth: int):
        super().__init__()
        d = cfg.d_model
        self.pos_s = nn.Parameter(torch.randn(1, source_len + 1, d) * cfg.pos_init_std)
        self.pos_t = nn.Parameter(torch.randn(1, target_len + 1, d) * cfg.pos_init_std)
        self.pos_p = nn.Parameter(torch.randn(1, source_len + 1, d) * cfg.pos_init_std)
        self.attn = nn.ModuleList(ModulatedAttention(d, cfg.heads, cfg.dim_head, cfg.dropout) for _ in range(depth))
        self.ff = nn.ModuleList(FeedForward(d, cfg.mlp_dim, cfg.dropout) for _ in range(depth))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, source, target, prompt=None):
        s = source + self.pos_s[:, : source.shape[1]]
        t = target + self.pos_t[:, : target.shape[1]]
        p = None if prompt is None else prompt + self.pos_p[:, : target.shape[1]]
        plains, modulated = [], []
        for attn, ff in zip(self.attn, self.ff):
            y, plain, mod = attn(t, s, p)
            t = t + y
            t = t + self.drop(ff(t))
            plains.append(plain)
            modulated.append(mod)
        return t, plains, (modulated if prompt is not None else None)


@dataclass
class _Blocks:
    """The widths LNLN's TokenTransformer and Layer read."""
    d_model: int
    heads: int
    dim_head: int
    mlp_dim: int
    depth: int
    dropout: float = 0.0
    pos_init_std: float = 1.0


# ---------------------------------------------------------------------------------------------
# 2. Teacher and student
# ---------------------------------------------------------------------------------------------
class Backbone(nn.Module):
    """forward(text (B, Lt, Dt), audio, vision, prompt (B, Lp, Dp) or None) -> dict with pred (B,),
    h_reg (B, 4, d) fusion tokens, attn_la / attn_lv (plain maps per layer), mod_la / mod_lv."""

    def __init__(self, cfg: MMSLFConfig, dims: tuple, lengths: tuple, prompt_dim: int | None,
                 encoder_depth: int, fusion_depth: int, fusion_heads: int, build_unused: bool = False):
        super().__init__()
        d = cfg.d_model
        self.proj_t, self.proj_a, self.proj_v = (nn.Linear(n, d) for n in dims)
        self.proj_p = nn.Linear(prompt_dim, d) if prompt_dim is not None else None
        if prompt_dim is None and build_unused:
            self.unused_proj_p = nn.Linear(768, d)                            # MOSEI student: never called
        self.prompt = (TokenTransformer(_Blocks(d, cfg.prompt_heads, cfg.dim_head, cfg.prompt_mlp, cfg.prompt_depth,
                                                pos_init_std=cfg.pos_init_std),
                                        max_len=cfg.prompt_positions, n_extra=cfg.prompt_tokens)
                       if prompt_dim is not None else None)
        self.enc_a = ModulatedCrossEncoder(cfg, lengths[1], lengths[0], encoder_depth)
        self.enc_v = ModulatedCrossEncoder(cfg, lengths[2], lengths[0], encoder_depth)
        self.n_tokens = cfg.n_fusion_tokens
        self.fusion = TokenTransformer(_Blocks(d, fusion_heads, cfg.dim_head, cfg.fusion_mlp, fusion_depth,
                                               pos_init_std=cfg.pos_init_std),
                                       max_len=2 * lengths[0], n_extra=cfg.n_fusion_tokens)
        self.head = nn.Linear(cfg.n_fusion_tokens * d, 1)

    def summarise_prompt(self, prompt):
        """(B, Lp, Dp) prompt features -> (B, 50, d): the first outputs of the prompt transformer."""
        return self.prompt(self.proj_p(prompt))[:, : self.prompt.n_extra]

    def forward(self, text, audio, vision, prompt=None):
        t, a, v = self.proj_t(text), self.proj_a(audio), self.proj_v(vision)
        p = None
        if prompt is not None:
            p = self.summarise_prompt(prompt)[:, : t.shape[1]]
        h_la, attn_la, mod_la = self.enc_a(a, t, p)
        h_lv, attn_lv, mod_lv = self.enc_v(v, t, p)
        h_reg = self.fusion(torch.cat([h_la, h_lv], dim=1))[:, : self.n_tokens]   # (B, 4, d)
        pred = self.head(h_reg.flatten(1))[:, 0]
        return {"pred": pred, "h_reg": h_reg, "attn_la": attn_la, "attn_lv": attn_lv, "mod_la": mod_la, "mod_lv": mod_lv}


# ---------------------------------------------------------------------------------------------
# 3. Prompt features
# ---------------------------------------------------------------------------------------------
def encode_prompts(texts: list[str], encoder: str = "minilm", max_length: int = 128, cache_dir=None):
    """Token features of the prompts from a frozen text encoder -> (N, max_length, D) float16 (zeros
    after each prompt's last token), cached on disk by (encoder, max_length, texts) so that a second
    run reads them back. Half precision halves the memory of a frozen table (2,300 SynthMSA prompts
    at 128 tokens: 226 MB); the model computes in float32."""
    from ..io import atomic_path
    from ..layers.text import load_pretrained
    key = hashlib.sha256("\x1e".join([encoder, str(max_length), *texts]).encode("utf-8")).hexdigest()[:24]
    path = None
    if cache_dir is not None:
        from pathlib import Path
        path = Path(cache_dir) / f"prompt-features-{key}.npy"
        if path.exists():
            return torch.from_numpy(np.load(path))
    tokenizer, model = load_pretrained(encoder)
    model.eval()
    feats = torch.zeros(len(texts), max_length, model.config.hidden_size, dtype=torch.float16)
    order = np.argsort([len(t) for t in texts], kind="stable")      # similar lengths share a batch: less padding
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            idx = order[start:start + 64]
            tok = tokenizer([texts[i] for i in idx], padding="longest", truncation=True, max_length=max_length,
                            return_tensors="pt")
            hidden = model(**tok).last_hidden_state * tok["attention_mask"][..., None]
            feats[torch.from_numpy(idx), : hidden.shape[1]] = hidden.half()
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, feats.numpy())
    return feats


# ---------------------------------------------------------------------------------------------
# 4. The model: both networks, the two stages
# ---------------------------------------------------------------------------------------------
@register("mmslf", MMSLFConfig)
class MMSLF(MSAModel):
    """forward(batch) -> ModelOutput(pred (B,), aux). In the "teacher" stage the teacher predicts
    (prompts needed: ``set_prompts``); in the "student" stage (the default, and inference) the
    student predicts, and in training the frozen teacher's maps and fusion tokens ride along in aux
    as distillation targets."""

    def __init__(self, spec: DatasetSpec, cfg: MMSLFConfig, prompt_dim: int | None = None):
        super().__init__(spec, cfg)
        if cfg.distill_target not in ("plain", "conditional"):
            raise ValueError(f"distill_target must be 'plain' or 'conditional', got {cfg.distill_target!r}")
        # each network reads the words through its own copy of the text encoder, as in the code
        self.teacher_text = TextEncoder(spec.dims[0], None, cfg.text_encoder, cfg.finetune_text_teacher, spec.unk_token_id)
        self.student_text = TextEncoder(spec.dims[0], None, cfg.text_encoder, cfg.finetune_text, spec.unk_token_id)
        dims = (self.student_text.out_dim, *spec.dims[1:])
        prompt_dim = prompt_dim or {"minilm": 384}.get(cfg.prompt_encoder, 768)
        self.teacher = Backbone(cfg, dims, spec.lengths, prompt_dim, cfg.teacher_encoder_depth,
                                cfg.teacher_fusion_depth, cfg.fusion_heads)
        self.student = Backbone(cfg, dims, spec.lengths, None, cfg.encoder_depth, cfg.fusion_depth,
                                cfg.student_fusion_heads, build_unused=cfg.build_unused)
        self._prompt_row: dict[str, int] = {}
        self.register_buffer("prompt_features", torch.zeros(0, 1, prompt_dim, dtype=torch.float16), persistent=False)
        self.set_stage("student")           # the deployed network; the teacher stays frozen unless trained

    # -- prompts -----------------------------------------------------------------------------
    def set_prompts(self, ids: list[str], features: torch.Tensor) -> None:
        """Prompt features (N, Lp, Dp) for the clips ``ids`` (any splits; added to those already set)."""
        if len(ids) != len(features):
            raise ValueError(f"{len(ids)} ids but {len(features)} prompt feature rows")
        if self.prompt_features.shape[0] and features.shape[1:] != self.prompt_features.shape[1:]:
            raise ValueError(f"prompt features of shape {tuple(features.shape[1:])}; earlier ones were "
                             f"{tuple(self.prompt_features.shape[1:])}")
        start = self.prompt_features.shape[0]
        self.prompt_features = torch.cat([self.prompt_features.reshape(start, *features.shape[1:]),
                                          features.to(self.prompt_features.device, torch.float16)])
        self._prompt_row.update({i: start + r for r, i in enumerate(ids)})

    def prompts_for(self, batch: Batch) -> torch.Tensor:
        missing = [i for i in batch.ids if i not in self._prompt_row]
        if missing:
            raise KeyError(f"no prompt for clip(s) {missing[:3]}{' ...' if len(missing) > 3 else ''}: the teacher "
                           f"needs one per clip it sees; call set_prompts with every split's prompts first")
        rows = torch.tensor([self._prompt_row[i] for i in batch.ids], device=self.prompt_features.device)
        return self.prompt_features[rows].float()

    def prompt_source(self):
        """The configured prompt source (``msa_lib.prompts``)."""
        from ..prompts import Describer, OpenAIChat
        cfg = self.cfg
        if cfg.prompt_source == "describer":
            return Describer(cfg.prompt_error_rate, cfg.prompt_seed)
        if cfg.prompt_source == "openai":
            if not cfg.prompt_url:
                raise ValueError("prompt_source='openai' needs prompt_url (an OpenAI-compatible base URL)")
            return OpenAIChat(cfg.prompt_url, cfg.prompt_model)
        raise ValueError(f"prompt_source must be 'describer' or 'openai', got {cfg.prompt_source!r}")

    def prompt_cache_path(self, data, cache_dir=None):
        """The CSV in which ``prepare`` keeps this configuration's prompts for ``data`` (official columns)."""
        from pathlib import Path

        from ..data.synthetic import cache_dir as default_cache
        folder = Path(cache_dir) if cache_dir is not None else default_cache() / "prompts"
        leak = "leak" if self.cfg.label_leak else "noleak"
        return folder / f"{self.spec.name}-{len(data.train.label)}-{self.prompt_source().tag}-{leak}.csv"

    def prepare(self, data, cache_dir=None) -> None:
        """Write (or read back from the cache) a prompt for every clip of every split, encode them with
        the frozen prompt encoder and hand them to the teacher (``set_prompts``)."""
        from ..prompts import clips_from_split, generate_prompts
        source, cfg, path = self.prompt_source(), self.cfg, self.prompt_cache_path(data, cache_dir)
        ids, texts = [], []
        for mode in ("train", "valid", "test"):
            split = getattr(data, mode)
            texts += generate_prompts(source, clips_from_split(split, mode), path, label_leak=cfg.label_leak)
            ids += list(split.ids)
        self.set_prompts(ids, encode_prompts(texts, cfg.prompt_encoder, cfg.prompt_max_length, cache_dir=path.parent))

    # -- stages ------------------------------------------------------------------------------
    def stages(self) -> list[str]:
        return ["teacher", "student"]

    def set_stage(self, stage: str) -> None:
        if stage not in ("teacher", "student"):
            raise ValueError(f"MMSLF stage must be 'teacher' or 'student', got {stage!r}")
        self.stage = stage
        for name, net, text, finetune in (("teacher", self.teacher, self.teacher_text, self.cfg.finetune_text_teacher),
                                          ("student", self.student, self.student_text, self.cfg.finetune_text)):
            net.requires_grad_(stage == name)
            if text.pretrained is not None:
                text.pretrained.requires_grad_(finetune and stage == name)

    def inference_params(self) -> int:
        """The deployed student: its text encoder and backbone (the teacher only trains it)."""
        return sum(p.numel() for m in (self.student_text, self.student) for p in m.parameters())

    def stage_config(self, stage: str, **overrides):
        return self.cfg.stage_config(stage, **overrides)

    def train_batch(self, batch: Batch, epoch: int, seed: int) -> Batch:
        """The teacher's augmentation: per clip a keep rate s ~ U(min_keep_rate, 1); each text token
        becomes [UNK] (its id, or the dataset's [UNK] feature) and each audio/vision *element* is
        zeroed with probability 1 - s. As in the code, any text position may be hit ([CLS], [SEP] and
        padding too) and elements, not frames, are dropped. The student trains on clean inputs."""
        if self.stage != "teacher" or self.cfg.min_keep_rate >= 1.0:
            return batch
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + int(batch.index[0]))
        s = torch.empty(len(batch)).uniform_(self.cfg.min_keep_rate, 1.0, generator=g)       # (B,) keep rates
        keep = lambda x: torch.rand(x.shape, generator=g) < s.view(-1, *([1] * (x.dim() - 1)))  # noqa: E731
        unk = self.spec.unk_vector
        text = _drop_text(batch, ~keep(batch.text_mask), "unk" if unk is not None else "zero", unk)
        return batch.replace(**text, audio=batch.audio * keep(batch.audio), vision=batch.vision * keep(batch.vision))

    # -- forward and loss ----------------------------------------------------------------------
    def run_teacher(self, batch: Batch) -> dict:
        text = self.teacher_text(batch.text, batch.text_mask, batch.text_ids)
        return self.teacher(text, batch.audio, batch.vision, self.prompts_for(batch))

    def forward(self, batch: Batch) -> ModelOutput:
        if self.stage == "teacher":
            out = self.run_teacher(batch)
            return ModelOutput(out["pred"], {"net": out})
        text = self.student_text(batch.text, batch.text_mask, batch.text_ids)
        out = self.student(text, batch.audio, batch.vision)
        aux = {"net": out}
        if self.training:                                   # the frozen teacher's targets
            was = self.teacher.training
            self.teacher.train(self.cfg.teacher_train_mode)
            with torch.no_grad():
                aux["teacher"] = self.run_teacher(batch)
            self.teacher.train(was)
        return ModelOutput(out["pred"], aux)

    def representation_module(self) -> nn.Module:
        return (self.teacher if self.stage == "teacher" else self.student).head   # input: the fusion tokens

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        task = self.regression_loss(out.pred, batch.label)
        if self.stage == "teacher" or "teacher" not in out.aux:
            return {"task": task, "total": task}
        s, t, cfg = out.aux["net"], out.aux["teacher"], self.cfg
        target = "attn" if cfg.distill_target == "plain" else "mod"
        attn = (F.l1_loss(s["attn_la"][-1], t[f"{target}_la"][-1]) + F.l1_loss(s["attn_lv"][-1], t[f"{target}_lv"][-1]))
        fusion = F.l1_loss(s["h_reg"], t["h_reg"])
        return {"task": task, "attn": attn, "fusion": fusion,
                "total": cfg.w_reg * task + cfg.w_attn * attn + cfg.w_fusion * fusion}
