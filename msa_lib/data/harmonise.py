"""Combine several MMSA releases (MOSI, MOSEI, CH-SIMS, ...) into one dataset with one domain per release.

Domain generalization asks: if a model is trained on some datasets, how well does it do on a
dataset it has never seen? To ask that question with the real releases we first have to put
them into *one* :class:`~msa_lib.data.mmsa.MMSAData` whose splits carry a domain id per sample,
so that :func:`msa_lib.data.domains.holdout` and friends can cut leave-one-dataset-out splits.
The releases were never meant to be mixed, and they disagree on almost everything a model
sees. :func:`harmonise` removes the disagreements one by one; each step below says what it
does, why, and what it costs.

1. **Domains.** Each input dataset becomes one domain. The ids follow the order of the dict
   you pass (``{"mosi": ..., "mosei": ..., "sims": ...}`` gives MOSI id 0, MOSEI id 1, SIMS id
   2) and ``config["domains"]`` keeps the names, so a domain can be held out by name. Whatever
   domain ids an input already had are overwritten: here a domain *is* a dataset.

2. **Feature widths.** The releases were made with different feature extractors: audio has 5
   (MOSI), 74 (MOSEI, COVAREP) or 33 (SIMS, Librosa) channels, vision 20 (MOSI), 35 (MOSEI,
   Facet) or 709 (SIMS, OpenFace 2.0). A model normally starts with one input layer per modality;
   one layer per *dataset* cannot work, because the held-out target's layer would never be
   trained. So every dataset is mapped to one common width with a map that is **fixed, not
   learned**:

   a. *Per-frame standardisation.* Every frame (one time step of one clip) is shifted and
      scaled over its own channels: ``z = (x - mean(x)) / std(x)``, the mean and standard
      deviation taken across the D channels of that frame only. No statistic of any dataset
      is estimated, so nothing is learned from the target (which would be a leak), and the
      very different numeric ranges of the extractors (a pitch in Hz next to a probability)
      no longer decide how large a frame is. A frame whose channels are all equal (for
      example an all-zero frame) becomes all zeros. The price: the absolute level of a
      frame is gone (a loud and a quiet frame with the same *pattern* look alike), and a
      feature with one or two channels carries (almost) nothing after it, which is why
      fewer than 2 channels is an error (pass ``standardise=False`` to skip this step).
   b. *Zero-padding or truncation of the channels* to the common width: a narrower dataset
      gets zero channels appended, a wider one keeps its first channels only.

   Defaults: **audio 74** (MOSEI's width, the largest of the three releases, so no audio
   channel is dropped; MOSI's 5 and SIMS's 33 channels are padded) and **vision 64**. For
   vision the largest width, 709, is not affordable: MOSEI alone would need
   22,856 clips x 500 frames x 709 channels x 4 bytes, about 32 GB, and MOSI/MOSEI frames
   would be 95-97 % zeros. The smallest width, 20, would throw away 15 of MOSEI's 35
   channels as well. 64 keeps every MOSI and MOSEI vision channel and the first 64 of SIMS's
   709 (9 %). Which OpenFace outputs those are depends on the column order of the release,
   which we have not verified; if it follows OpenFace's own CSV order (gaze, eye landmarks,
   head pose, face landmarks, shape parameters, action units) the first 64 are gaze angles
   and eye-landmark coordinates, and the action units, the most expression-related
   channels, are lost. Both widths are keyword arguments (``audio_dim``, ``vision_dim``).

   This is a teaching compromise, not a solution: the channels still *mean* different things
   in different domains (vision channel 0 is one quantity in MOSI and an unrelated one in
   SIMS), and the number of non-zero channels alone tells a model which dataset a frame came
   from. The proper fix is to extract every dataset again with one toolkit (MMSA-FET) from
   the raw videos.

3. **Sequence lengths.** The releases pad to different lengths (text 50/50/39, audio
   375/500/400, vision 500/500/55). Every modality is zero-padded or truncated in time to a
   common length and the ``*_lengths`` arrays are clipped to it, so padding frames stay zero
   and the padding masks stay right. Default (``lengths=None``, or ``None`` for one
   modality): the longest length among the inputs, so no frame of any release is cut
   ((50, 500, 500) for MOSI+MOSEI+SIMS). A shorter length saves memory and time but drops
   the ends of long clips.

4. **Label scales.** MOSI and MOSEI are annotated on [-3, 3], SIMS on [-1, 1]. Every label
   (and every unimodal label) is divided by its dataset's upper bound, so all domains share
   [-1, 1]; a model trained on the mixture then sees one scale. The metrics, however, must be
   computed on the target's *native* scale with the target's metric set (MAE on [-3, 3] is
   three times MAE on [-1, 1]; Acc-7 needs the [-3, 3] integers). So
   ``config["domain_scales"]`` records, per domain, the factor that maps back (3.0 for MOSI
   and MOSEI, 1.0 for SIMS) and ``config["domain_metric_sets"]`` the metric set ("mosi" or
   "sims"); :func:`msa_lib.data.domains.holdout` copies the target's entries into the spec
   (``score_scale``, ``metric_set``) and :func:`msa_lib.train.evaluate` multiplies by
   ``score_scale`` before scoring. The combined spec has ``label_range`` (-1, 1). Its own
   ``score_scale`` and ``metric_set`` are those of the domains when they all agree (MOSI+MOSEI
   scores natively with 3.0 and "mosi"); when they differ (MOSI+SIMS) there is no native scale,
   and the combined data scores on the common scale (1.0) with the metric set defined on
   [-1, 1], "sims" -- cut a domain out before reading those numbers.

5. **Language.** MOSI and MOSEI are English, SIMS is Chinese, and the releases' 768-d text
   features come from two different BERTs (English and Chinese). Mixing them is a problem
   twice over: the two feature spaces are unrelated (the text features alone identify the
   domain), and an English model cannot read Chinese. ``text`` chooses what to do:

   * ``"native"`` keeps each release's precomputed features (and token ids). It warns when
     the languages differ and records ``config["text_harmonised"] = False``.
   * an encoder name or folder (e.g. ``"bert-base-multilingual-cased"``, or ``"minilm"`` for
     the bundled English MiniLM) encodes every split's ``raw_text`` again with that one
     encoder, loaded with :func:`msa_lib.layers.text.load_pretrained` (a local folder,
     ``$MSA_BERT`` or the local Hugging Face cache -- never the network). The text features
     become its token-level last hidden states (zero at padding), ``text_ids`` its token ids
     and the unknown-token id its ``[UNK]``; ``config["text_harmonised"] = True``. A
     transcript longer than the text length (in the encoder's tokens, which for English
     word pieces are often more than words) is cut at the end. Encoding MOSEI's 22,856
     transcripts with a BERT-base model takes a while on a CPU; ``device`` selects a GPU.
   * ``"auto"`` (default): ``"native"`` when all datasets share a language, otherwise the
     multilingual encoder ``bert-base-multilingual-cased`` if it is on disk, otherwise a
     ValueError explaining the two ways out.

   The language of a dataset is its file's ``config["language"]`` when the file says so,
   else a small table by name (mosi, mosei -> "en"; sims, simsv2 -> "zh"), else "en" (an
   unknown name is assumed to be English); ``languages={"name": "zh"}`` overrides all three.
   Under ``"native"`` all releases must have the same text width (768 for the MMSA releases).

6. **What else must agree.** Unimodal labels (SIMS's T/A/V labels) are kept only when every
   dataset has them, otherwise they are dropped (``None``) for all: a loss that needs them
   would otherwise see them for some domains only. Token ids under ``"native"`` are kept
   only when every dataset has them with the same ``[UNK]`` id (they still come from
   different vocabularies when the languages differ). Additional per-sample arrays
   (``Split.extra``, e.g. MMSA's ``annotations``) are kept when every split of every dataset
   has the key with the same per-sample shape and the same kind of values (numbers, or
   strings); others are dropped and listed in ``config["dropped_extra"]`` with the reason.
   Sample ids stay as they were; the domain array says where each sample came from.

Every error names the dataset and what is wrong. Memory: the result is a new copy of every
array (MOSI+MOSEI+SIMS at the defaults: 27,336 clips x about 430 KB, some 12 GB of float32),
so load and combine on a machine with room for both the inputs and the result.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .batch import Split
from .mmsa import SPLITS, MMSAData
from .spec import MODALITIES, DatasetSpec

DEFAULT_AUDIO_DIM = 74
DEFAULT_VISION_DIM = 64
MULTILINGUAL_ENCODER = "bert-base-multilingual-cased"

# Language of the MMSA releases, by the short names that msa_lib.data.load accepts.
LANGUAGES = {
    "mosi": "en", "mosi_aligned": "en", "mosei": "en", "mosei_aligned": "en",
    "sims": "zh", "simsv2": "zh", "synthmsa": "en", "synth": "en",
}

_CHUNK_VALUES = 1 << 24   # values standardised at a time (bounds the float64 temporaries: 128 MB)
_EPS = 1e-6


# ------------------------------------------------------------------ the fixed feature map
def standardise_frames(x: np.ndarray, lengths: np.ndarray, width: int, length: int | None = None,
                       standardise: bool = True) -> np.ndarray:
    """The fixed width map of step 2: (N, L, D) -> (N, length, width) float32.

    Each real frame (position < its sample's length) is standardised over its own D channels
    (``standardise``), then its channels are zero-padded or truncated to ``width``; the time
    axis is zero-padded or truncated to ``length`` (default L). Padding frames are zero.
    """
    n, L, d = x.shape
    length = L if length is None else int(length)
    keep_t, keep_c = min(L, length), min(d, width)
    out = np.zeros((n, length, width), np.float32)
    real = np.arange(keep_t)[None, :] < np.asarray(lengths)[:, None]          # (N, keep_t)
    chunk = max(1, _CHUNK_VALUES // max(1, keep_t * d))
    for i in range(0, n, chunk):
        block = x[i:i + chunk, :keep_t].astype(np.float64)
        if standardise:
            block = block - block.mean(axis=2, keepdims=True)
            std = block.std(axis=2, keepdims=True)
            block = block / np.where(std > _EPS, std, 1.0)
        block *= real[i:i + chunk, :, None]
        out[i:i + chunk, :keep_t, :keep_c] = block[..., :keep_c]
    return out


def _fit_time(a: np.ndarray, length: int, fill=0) -> np.ndarray:
    """Zero-pad or truncate axis 1 of ``a`` to ``length``."""
    if a.shape[1] >= length:
        return np.ascontiguousarray(a[:, :length])
    pad = [(0, 0)] * a.ndim
    pad[1] = (0, length - a.shape[1])
    return np.pad(a, pad, constant_values=fill)


# ------------------------------------------------------------------ small helpers
def language_of(name: str, data, languages: dict | None = None) -> str:
    """The language of dataset ``name`` (step 5): ``languages`` override, the file's
    ``config["language"]``, the LANGUAGES table, else "en"."""
    if languages and name in languages:
        return str(languages[name]).lower()
    stated = (getattr(data, "config", None) or {}).get("language")
    if stated:
        return str(stated).lower()
    for key in (name, getattr(getattr(data, "spec", None), "name", "")):
        if str(key).lower() in LANGUAGES:
            return LANGUAGES[str(key).lower()]
    return "en"


def _check_inputs(datasets) -> list[str]:
    if not isinstance(datasets, dict) or not datasets:
        raise ValueError("harmonise needs a non-empty dict {name: MMSAData}, e.g. "
                         "{'mosi': load('mosi'), 'sims': load('sims')}")
    names = [str(k) for k in datasets]
    seen = {}
    for name, data in zip(names, datasets.values()):
        if not name.strip():
            raise ValueError("harmonise: a dataset has an empty name; the names become the domain names")
        if name.lower() in seen:
            raise ValueError(f"harmonise: datasets {seen[name.lower()]!r} and {name!r} have the same name "
                             "(domains are looked up by name, case-insensitively); rename one")
        seen[name.lower()] = name
        if not all(hasattr(data, a) for a in ("spec", *SPLITS)):
            raise TypeError(f"harmonise: dataset {name!r} is a {type(data).__name__}, not an MMSAData "
                            "(load it with msa_lib.data.load)")
        low, high = data.spec.label_range
        if not high > 0 or abs(low + high) > 1e-6:
            raise ValueError(f"harmonise: dataset {name!r} has label range {data.spec.label_range}; only "
                             "symmetric ranges (-h, h) can be put on the common scale [-1, 1]")
        for s in SPLITS:
            if len(data.split(s)) == 0:
                raise ValueError(f"harmonise: dataset {name!r} has an empty {s} split")
    return names


def _common_lengths(lengths, names, datasets) -> tuple[int, int, int]:
    if lengths is None:
        lengths = (None, None, None)
    lengths = tuple(lengths)
    if len(lengths) != 3:
        raise ValueError(f"lengths needs one entry per modality (text, audio, vision), got {lengths!r}")
    out = []
    for m, L in zip(MODALITIES, lengths):
        if L is None:
            L = max(datasets[n].spec.lengths[MODALITIES.index(m)] for n in names)
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
            raise ValueError(f"lengths: the {m} length must be a positive integer or None, got {L!r}")
        out.append(int(L))
    if out[0] < 2:
        raise ValueError(f"lengths: the text length must be at least 2 ([CLS] and [SEP]), got {out[0]}")
    return tuple(out)


def _check_width(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _load_encoder(encoder: str):
    """(tokenizer, model) of ``encoder`` from disk only; OSError when there is no local copy."""
    from ..layers.text import load_pretrained

    return load_pretrained(encoder)


def _resolve_text(text, names, langs):
    """-> ("native", None) or (encoder name, its (tokenizer, model) when already loaded) (step 5)."""
    if not isinstance(text, (str, Path)) or not str(text).strip():
        raise ValueError(f"text must be 'auto', 'native' or an encoder name/folder, got {text!r}")
    text = str(text)
    if text != "auto":
        return text, None
    if len(set(langs)) == 1:
        return "native", None
    from ..layers.text import BERT_ENV

    try:
        loaded = _load_encoder(MULTILINGUAL_ENCODER)
    except OSError:
        mixed = ", ".join(f"{n} ({lang})" for n, lang in zip(names, langs))
        raise ValueError(
            f"harmonise(text='auto'): the datasets are in different languages -- {mixed} -- so their "
            "precomputed text features come from different BERTs (a domain cue, and an English BERT cannot "
            f"read Chinese). text='auto' then re-encodes every transcript with the multilingual encoder "
            f"{MULTILINGUAL_ENCODER!r}, but no local copy was found (${BERT_ENV}="
            f"{os.environ.get(BERT_ENV, '(unset)')!r} and the local Hugging Face cache; nothing is "
            "downloaded). Two ways out: put that model (config.json, weights, tokenizer files) in a folder "
            f"and set ${BERT_ENV} to it (or to a folder holding {MULTILINGUAL_ENCODER}/), or place it in the "
            "Hugging Face cache; or pass text='native' to accept per-language features.") from None
    return MULTILINGUAL_ENCODER, loaded


def _encode(encoder: str, loaded, datasets, names, length: int, batch_size: int, device):
    """Run ``encoder`` on every split's raw_text.

    -> ({(name, split): (features (N, length, H), ids (N, length), lengths (N,))}, H, unk id).
    """
    import torch

    for name in names:
        for s in SPLITS:
            if not any(str(t).strip() for t in datasets[name].split(s).raw_text):
                raise ValueError(f"harmonise(text={encoder!r}): dataset {name!r}, split {s!r} has no raw_text "
                                 "(every transcript is empty), so its text cannot be encoded again; pass "
                                 "text='native' to keep its precomputed features")
    if loaded is None:
        try:
            loaded = _load_encoder(encoder)
        except OSError as err:
            raise ValueError(f"harmonise(text={encoder!r}): cannot load this text encoder. {err} "
                             "Or pass text='native' to keep each release's precomputed features.") from None
    tokenizer, model = loaded
    if tokenizer.unk_token_id is None:
        raise ValueError(f"harmonise(text={encoder!r}): its tokenizer has no unknown token, which the "
                         "missing-data protocols write into the token ids; choose a BERT-style encoder")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise ValueError(f"harmonise(text={encoder!r}): the text length {length} exceeds the {limit} positions "
                         "this encoder can read; pass a shorter lengths[0]")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    out = {}
    for name in names:
        for s in SPLITS:
            texts = [str(t) for t in datasets[name].split(s).raw_text]
            feats, ids, lens = [], [], []
            for i in range(0, len(texts), batch_size):
                tok = tokenizer(texts[i:i + batch_size], padding="max_length", truncation=True,
                                max_length=length, return_tensors="pt")
                mask = tok["attention_mask"]
                with torch.no_grad():
                    h = model(input_ids=tok["input_ids"].to(device),
                              attention_mask=mask.to(device)).last_hidden_state
                feats.append((h.float().cpu() * mask[..., None]).numpy().astype(np.float32))
                ids.append(tok["input_ids"].numpy().astype(np.int64))
                lens.append(mask.sum(1).numpy().astype(np.int64))
            out[(name, s)] = (np.concatenate(feats), np.concatenate(ids), np.clip(np.concatenate(lens), 1, length))
    return out, int(model.config.hidden_size), int(tokenizer.unk_token_id)


def _extra_keys(datasets, names) -> tuple[list[str], dict]:
    """The Split.extra keys that every split of every dataset has compatibly (step 6)."""
    keys = sorted(set().union(*(datasets[n].split(s).extra for n in names for s in SPLITS)))
    kept, dropped = [], {}
    for key in keys:
        missing = [f"{n}/{s}" for n in names for s in SPLITS if key not in datasets[n].split(s).extra]
        if missing:
            dropped[key] = f"missing in {', '.join(missing)}"
            continue
        arrays = {f"{n}/{s}": datasets[n].split(s).extra[key] for n in names for s in SPLITS}
        shapes = {w: a.shape[1:] for w, a in arrays.items()}
        kinds = {w: ("number" if a.dtype.kind in "biuf" else "string" if a.dtype.kind in "US" else a.dtype.kind)
                 for w, a in arrays.items()}
        if len(set(shapes.values())) > 1:
            dropped[key] = "per-sample shapes differ: " + ", ".join(f"{w} {v}" for w, v in shapes.items())
        elif len(set(kinds.values())) > 1 or set(kinds.values()) - {"number", "string"}:
            dropped[key] = "value kinds differ: " + ", ".join(f"{w} {v}" for w, v in kinds.items())
        else:
            kept.append(key)
    return kept, dropped


def harmonise(datasets: dict, *, audio_dim: int = DEFAULT_AUDIO_DIM, vision_dim: int = DEFAULT_VISION_DIM,
              lengths=None, text: str = "auto", standardise: bool = True, languages: dict | None = None,
              batch_size: int = 64, device=None) -> MMSAData:
    """Combine ``{name: MMSAData}`` into one MMSAData with one domain per dataset (module docstring).

    audio_dim, vision_dim: the common feature widths (defaults 74 and 64, see step 2).
    lengths: common (text, audio, vision) lengths; None (or None for one modality) = the
        longest among the inputs.
    text: "auto", "native", or a text encoder name/folder to encode every raw_text again.
    standardise: per-frame standardisation of audio and vision before the width map.
    languages: {name: "en" | "zh" | ...} to override the language table.
    batch_size, device: for re-encoding text (device default: CUDA if available, else CPU).
    """
    names = _check_inputs(datasets)
    data = {n: d for n, d in zip(names, datasets.values())}
    audio_dim = _check_width(audio_dim, "audio_dim")
    vision_dim = _check_width(vision_dim, "vision_dim")
    common = _common_lengths(lengths, names, data)
    langs = [language_of(n, data[n], languages) for n in names]
    widths = {"audio": audio_dim, "vision": vision_dim}
    if standardise:
        for n in names:
            for m in ("audio", "vision"):
                d = data[n].spec.dims[MODALITIES.index(m)]
                if d < 2:
                    raise ValueError(f"harmonise: dataset {n!r} has {d} {m} channel(s); per-frame "
                                     "standardisation over one channel leaves only zeros. Pass "
                                     "standardise=False to skip it")

    # ---- step 5: text
    mode, loaded = _resolve_text(text, names, langs)
    encoded = None
    if mode == "native":
        text_dims = {n: data[n].spec.dims[0] for n in names}
        if len(set(text_dims.values())) > 1:
            raise ValueError("harmonise(text='native'): the text features have different widths -- "
                             + ", ".join(f"{n} {d}" for n, d in text_dims.items())
                             + " -- so they cannot share one input layer; pass an encoder name (e.g. text="
                             f"{MULTILINGUAL_ENCODER!r}) to encode every transcript again with one model")
        if len(set(langs)) > 1:
            warnings.warn("harmonise(text='native'): the datasets are in different languages ("
                          + ", ".join(f"{n} {lang}" for n, lang in zip(names, langs))
                          + "); their text features come from different encoders, so the text alone tells "
                          "the domains apart and cross-language transfer through text is not meaningful. "
                          "config['text_harmonised'] is False.", UserWarning, stacklevel=2)
        text_dim = next(iter(text_dims.values()))
        unk_ids = {n: data[n].spec.unk_token_id for n in names}
        keep_ids = (all(data[n].spec.has_text_ids and data[n].split(s).text_ids is not None
                        for n in names for s in SPLITS) and len(set(unk_ids.values())) == 1)
        unk_id = next(iter(unk_ids.values()))
        vectors = {data[n].spec.unk_text_feature for n in names}
        unk_vector = vectors.pop() if len(vectors) == 1 else None
    else:
        encoded, text_dim, unk_id = _encode(mode, loaded, data, names, common[0], batch_size, device)
        keep_ids, unk_vector = True, None

    # ---- step 4: label scales; step 6: unimodal labels, extras
    scales = [float(data[n].spec.label_range[1]) for n in names]
    back = [float(data[n].spec.label_range[1] * data[n].spec.score_scale) for n in names]
    metric_sets = [data[n].spec.metric_set for n in names]
    unimodal = all(data[n].spec.unimodal_labels and data[n].split(s).label_t is not None
                   for n in names for s in SPLITS)
    extra_keys, dropped_extra = _extra_keys(data, names)

    splits = {}
    for s in SPLITS:
        parts = {k: [] for k in ("text", "audio", "vision", "text_lengths", "audio_lengths", "vision_lengths",
                                 "label", "label_t", "label_a", "label_v", "text_ids", "domain")}
        raw_text, ids = [], []
        extra = {k: [] for k in extra_keys}
        for i, n in enumerate(names):
            sp = data[n].split(s)
            # step 3 (time) and step 2 (channels)
            for m in ("audio", "vision"):
                ln = np.clip(getattr(sp, f"{m}_lengths"), 1, common[MODALITIES.index(m)]).astype(np.int64)
                parts[m].append(standardise_frames(getattr(sp, m), ln, widths[m], common[MODALITIES.index(m)],
                                                   standardise))
                parts[f"{m}_lengths"].append(ln)
            if encoded is None:
                parts["text"].append(_fit_time(sp.text.astype(np.float32, copy=False), common[0]))
                parts["text_lengths"].append(np.clip(sp.text_lengths, 1, common[0]).astype(np.int64))
                if keep_ids:
                    parts["text_ids"].append(_fit_time(sp.text_ids.astype(np.int64), common[0]))
            else:
                feats, tok_ids, tok_len = encoded[(n, s)]
                parts["text"].append(feats)
                parts["text_lengths"].append(tok_len)
                parts["text_ids"].append(tok_ids)
            parts["label"].append((sp.label / scales[i]).astype(np.float32))
            if unimodal:
                for m in "tav":
                    parts[f"label_{m}"].append((getattr(sp, f"label_{m}") / scales[i]).astype(np.float32))
            parts["domain"].append(np.full(len(sp), i, np.int64))
            raw_text += list(sp.raw_text)
            ids += list(sp.ids)
            for k in extra_keys:
                extra[k].append(sp.extra[k])
        cat = {k: (np.concatenate(v) if v else None) for k, v in parts.items()}
        splits[s] = Split(text=cat["text"], audio=cat["audio"], vision=cat["vision"],
                          text_lengths=cat["text_lengths"], audio_lengths=cat["audio_lengths"],
                          vision_lengths=cat["vision_lengths"], label=cat["label"], raw_text=raw_text, ids=ids,
                          domain=cat["domain"], text_ids=cat["text_ids"] if keep_ids else None,
                          label_t=cat["label_t"], label_a=cat["label_a"], label_v=cat["label_v"],
                          extra={k: np.concatenate(v) for k, v in extra.items()},
                          unk_token_id=unk_id if keep_ids else None)

    same_scale = len(set(back)) == 1 and len(set(metric_sets)) == 1
    spec = DatasetSpec(
        name="+".join(names), dims=(int(text_dim), audio_dim, vision_dim), lengths=common,
        label_range=(-1.0, 1.0), metric_set=metric_sets[0] if same_scale else "sims",
        unimodal_labels=unimodal, n_domains=len(names), has_text_ids=bool(keep_ids),
        unk_token_id=int(unk_id), score_scale=back[0] if same_scale else 1.0,
        unk_text_feature=unk_vector)
    config = {
        "domains": names,
        "domain_scales": back,
        "domain_metric_sets": metric_sets,
        "languages": langs,
        "text": mode,
        "text_harmonised": encoded is not None,
        "audio_dim": audio_dim, "vision_dim": vision_dim, "lengths": list(common),
        "standardise": bool(standardise),
        "source_dims": {n: list(data[n].spec.dims) for n in names},
        "source_lengths": {n: list(data[n].spec.lengths) for n in names},
        "dropped_extra": dropped_extra,
    }
    cleaned = {f"{n}:{k}": v for n in names for k, v in getattr(data[n], "cleaned", {}).items()}
    return MMSAData(spec=spec, path=None, config=config, cleaned=cleaned, **splits)


def load_domains(names, *, verify: bool = True, **kw) -> MMSAData:
    """Load each of ``names`` (short names like "mosi", or paths to MMSA pickles) with
    :func:`msa_lib.data.load` and :func:`harmonise` them; ``kw`` goes to harmonise.
    Each domain is named by its spec name: the short name ("mosi"), or for a file its
    config's name, the MMSA release it is, or the file name without ".pkl"."""
    from . import load

    if isinstance(names, str):
        names = names.split("+")
    names = [str(n).strip() for n in names]
    if not names or any(not n for n in names):
        raise ValueError(f"load_domains: empty dataset name in {names!r} (write e.g. 'mosi+mosei+sims')")
    loaded = {}
    for entry in names:
        data = load(entry, verify=verify)
        key = data.spec.name
        if key.lower() in {k.lower() for k in loaded}:
            raise ValueError(f"load_domains: {entry!r} is named {key!r} like an earlier dataset; domains need "
                             "distinct names (rename the file or load and harmonise yourself)")
        loaded[key] = data
    return harmonise(loaded, **kw)


__all__ = ["harmonise", "load_domains", "standardise_frames", "language_of", "LANGUAGES",
           "DEFAULT_AUDIO_DIM", "DEFAULT_VISION_DIM", "MULTILINGUAL_ENCODER"]
