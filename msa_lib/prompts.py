"""Hint texts ("prompts") about each clip for MMSLF's teacher, and their cache.

MMSLF (Zhang et al., NeurIPS 2025) shows a multimodal LLM three frames and the transcript of a
clip (and, for training clips only, its label) and asks for hints in two numbered parts: (1)
visual cues from the face, (2) language cues from the words. The official prompts are not
released and no LLM is reachable offline, so a prompt *source* is anything with
``source(clip) -> str``:

* ``Describer`` (the offline default) writes the two-part hint from what a multimodal LLM would
  perceive: on SynthMSA the clip's generating cues (the face's expression, the sentiment
  words, sarcasm), with a perception error rate; on real MMSA data the transcript and a summary
  of the facial features. Several phrasings per cue, so a model cannot key on one string.
* ``OpenAIChat`` calls any OpenAI-compatible chat endpoint (a hosted API or a local server),
  with retries, back-off and a rate limit; the API key is read from the environment only.

``generate_prompts`` fills a ``PromptCache``: a CSV in the official layout
(``video_id, clip_id, label, mode, prompt``), resumable, always rewritten atomically.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .io import atomic_path

COLUMNS = ("video_id", "clip_id", "label", "mode", "prompt")
MAX_CHARS = 4000            # longer replies are cut (the official call allows 1,000 tokens)

# The official instruction, paraphrased (preprocess/Generate_Prompt.py of LOGO-CUHKSZ/MMSLF).
INSTRUCTION = (
    "You are an expert in multimodal sentiment analysis. You receive frames of a video clip, "
    "what the speaker says, and the clip's sentiment label when it is known (training data only). "
    "Write detailed hints that help a small task-specific model find the cues of sentiment. "
    "Look at facial expressions (smiles, frowns, eye movements) and at emotionally loaded words "
    "and phrases. Answer in two numbered parts: 1. visual cues from the facial expressions; "
    "2. language cues from the text."
)


class PromptError(RuntimeError):
    """A prompt source could not produce a hint for a clip (the message says which and why)."""


@dataclass(frozen=True)
class Clip:
    """What a prompt source may see of one clip. ``label`` is None unless the source may see it;
    ``cues`` holds what a describer perceives (see ``clips_from_split``)."""

    video_id: str
    clip_id: str
    mode: str                      # "train", "valid" or "test"
    text: str
    label: float | None = None
    cues: dict = field(default_factory=dict)


def split_id(sample_id: str) -> tuple[str, str]:
    """MMSA's "<video_id>$_$<clip_id>" -> (video_id, clip_id)."""
    video, sep, clip = str(sample_id).rpartition("$_$")
    return (video, clip) if sep else (str(sample_id), "0")


def clips_from_split(split, mode: str, with_labels: bool = True) -> list[Clip]:
    """One ``Clip`` per sample of a ``Split``. Cues: ``face`` (the vision-only sentiment when the
    data has unimodal labels, as on SynthMSA), ``kind`` (SynthMSA's plain/sarcastic/deadpan), and,
    for data without unimodal labels, ``face_summary``: the three facial-feature channels that
    deviate most from the split's average in this clip."""
    n = len(split.label)
    kinds = split.extra.get("kind") if split.extra else None
    if split.label_v is None:
        frames = [split.vision[i, :max(1, int(split.vision_lengths[i]))].mean(axis=0) for i in range(n)]
        frames = np.stack(frames)
        z = (frames - frames.mean(0)) / (frames.std(0) + 1e-6)
    out = []
    for i in range(n):
        cues = {"kind": str(kinds[i])} if kinds is not None else {}
        if split.label_v is not None:
            cues["face"] = float(split.label_v[i])
        else:
            top = np.argsort(-np.abs(z[i]))[:3]
            cues["face_summary"] = [(int(k), float(z[i, k])) for k in top]
        video, clip = split_id(split.ids[i])
        out.append(Clip(video, clip, mode, str(split.raw_text[i]),
                        float(split.label[i]) if with_labels else None, cues))
    return out


def clean_reply(text) -> str:
    """A reply made safe to store: a string, control characters other than newline and tab
    removed, newlines normalised, at most MAX_CHARS characters."""
    text = "" if text is None else str(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:MAX_CHARS - 1] + "\u2026" if len(text) > MAX_CHARS else text


# ---------------------------------------------------------------------------------------------
# The offline describer
# ---------------------------------------------------------------------------------------------
FACE = {  # perceived expression -> phrasings (one is drawn per clip)
    "smile": ["The speaker smiles broadly, with raised cheeks.", "A clear smile shows on the speaker's face.",
              "The corners of the mouth turn up into a smile and the eyes look relaxed."],
    "frown": ["The speaker frowns, with lowered brows.", "A frown and tightened lips show on the face.",
              "The brows draw together and the mouth turns down."],
    "neutral": ["The face stays neutral, with little movement.", "No clear expression: the face is calm.",
                "The speaker's expression is flat and hard to read."],
}
WORD = {  # polarity -> phrasings of a language cue about one word
    "positive": ["The word \"{w}\" expresses a positive feeling.", "\"{w}\" is an approving word.",
                 "Positive wording: \"{w}\"."],
    "negative": ["The word \"{w}\" expresses a negative feeling.", "\"{w}\" is a critical word.",
                 "Negative wording: \"{w}\"."],
}
NO_WORDS = ["The words are factual and carry no clear sentiment.", "There are no emotionally loaded words.",
            "The text itself sounds neutral."]
MARKERS = {"not": "The negation \"not\" reverses the word that follows it.",
           "but": "\"but\" marks a contrast: the second part usually carries the speaker's view.",
           "although": "\"although\" marks a contrast between the two parts."}
MISMATCH = ["Kind words with a frown may signal sarcasm.", "The face contradicts the words, which suggests irony."]


def _sentiment_words(text: str) -> list[tuple[str, str]]:
    """(word, "positive" | "negative") for the words of SynthMSA's lexicon in a transcript."""
    from .data.synthetic import ADJECTIVES
    words = re.findall(r"[a-z']+", text.lower())
    return [(w, "positive" if ADJECTIVES[w] > 0 else "negative") for w in words
            if w in ADJECTIVES and abs(ADJECTIVES[w]) >= 0.8]


class Describer:
    """The two-part hint a multimodal LLM would write from what it perceives of a clip.

    error_rate: the probability that each perceived cue is wrong (the expression replaced by
    another one, a word read with the opposite polarity). The drawing is deterministic for
    (seed, clip). When the clip's label is given, the hint says which way it points, as a model
    that is shown the label tends to."""

    name = "describer"
    version = 2                    # bump when the wording changes: cached prompts are then written anew

    def __init__(self, error_rate: float = 0.0, seed: int = 0, face_threshold: float = 0.5):
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
        self.error_rate, self.seed, self.face_threshold = error_rate, seed, face_threshold

    @property
    def tag(self) -> str:
        """Names the settings (for cache file names)."""
        return f"describer-v{self.version}-e{self.error_rate:g}-s{self.seed}"

    def _rng(self, clip: Clip) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(f"{clip.video_id}/{clip.clip_id}".encode())])

    def face(self, clip: Clip, rng) -> str | None:
        """The perceived expression ("smile", "frown", "neutral"), or None without face cues."""
        if "face" not in clip.cues:
            return None
        v = clip.cues["face"]
        true = "smile" if v > self.face_threshold else "frown" if v < -self.face_threshold else "neutral"
        if rng.random() < self.error_rate:
            return str(rng.choice([f for f in FACE if f != true]))
        return true

    def __call__(self, clip: Clip) -> str:
        rng = self._rng(clip)
        face = self.face(clip, rng)
        if face is not None:
            visual = str(rng.choice(FACE[face]))
        elif "face_summary" in clip.cues:
            visual = "Facial features that stand out: " + ", ".join(
                f"channel {k} {'higher' if z > 0 else 'lower'} than usual" for k, z in clip.cues["face_summary"]) + "."
        else:
            visual = "The face is not visible."
        found, words = _sentiment_words(clip.text), []
        for w, polarity in found:
            if rng.random() < self.error_rate:
                polarity = "negative" if polarity == "positive" else "positive"
            words.append(str(rng.choice(WORD[polarity])).format(w=w))
        tokens = set(re.findall(r"[a-z]+", clip.text.lower()))
        words += [MARKERS[m] for m in MARKERS if m in tokens]
        language = " ".join(words) if words else str(rng.choice(NO_WORDS))
        if face == "frown" and any(p == "positive" for _, p in found):
            language += " " + str(rng.choice(MISMATCH))
        hint = f"1. Visual cues: {visual}\n2. Language cues: {language}"
        if clip.label is not None:           # first, so that a short token limit keeps it
            way = "positive" if clip.label > 0 else "negative" if clip.label < 0 else "neutral"
            hint = f"The labelled sentiment ({clip.label:+.1f}) is {way}, so these cues should be read as {way}.\n" + hint
        return hint


# ---------------------------------------------------------------------------------------------
# An OpenAI-compatible chat endpoint
# ---------------------------------------------------------------------------------------------
class OpenAIChat:
    """``POST {base_url}/chat/completions`` with the instruction, the transcript, the label (when
    the clip carries one) and, when ``frames_root/<video_id>/<clip_id>/frames`` exists, three
    frames sampled uniformly as base64 JPEG images.

    The API key comes from the environment variable ``api_key_env`` only and is never stored.
    HTTP 429, 5xx, timeouts and refused connections are retried ``max_retries`` times with
    exponential back-off (``Retry-After`` is honoured); other errors and malformed replies raise
    ``PromptError`` at once. ``min_interval`` seconds separate two calls (a rate limit)."""

    name = "openai"

    def __init__(self, base_url: str, model: str = "gpt-4o-mini", api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 2.0, min_interval: float = 0.0,
                 max_tokens: int = 1000, frames_root=None, sleep=time.sleep):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env, self.timeout = model, api_key_env, timeout
        self.max_retries, self.backoff, self.min_interval, self.max_tokens = max_retries, backoff, min_interval, max_tokens
        self.frames_root = Path(frames_root) if frames_root else None
        self.sleep, self._last_call = sleep, 0.0

    @property
    def tag(self) -> str:
        return f"openai-{re.sub(r'[^A-Za-z0-9.-]+', '_', self.model)}"

    def frames(self, clip: Clip) -> list[Path]:
        """Three frames sampled uniformly from the clip's frames folder ([] when there is none)."""
        if self.frames_root is None:
            return []
        folder = self.frames_root / clip.video_id / clip.clip_id / "frames"
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if folder.is_dir() else []
        if not files:
            return []
        picks = sorted(set(np.linspace(0, len(files) - 1, 3).round().astype(int)))
        return [files[i] for i in picks]

    def request(self, clip: Clip) -> dict:
        """The JSON body of the chat request for ``clip``."""
        label = "None" if clip.label is None else f"{clip.label:+.2f}"
        content = [{"type": "text", "text": f"{INSTRUCTION}\n\nText: {clip.text}\nLabel: {label}"}]
        for f in self.frames(clip):
            kind = "png" if f.suffix.lower() == ".png" else "jpeg"
            data = base64.b64encode(f.read_bytes()).decode("ascii")
            content.append({"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{data}"}})
        return {"model": self.model, "max_tokens": self.max_tokens, "messages": [{"role": "user", "content": content}]}

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:      # noqa: S310 -- the user's endpoint
            return resp.read()

    def __call__(self, clip: Clip) -> str:
        body = json.dumps(self.request(clip)).encode("utf-8")
        where = f"clip {clip.video_id}/{clip.clip_id} at {self.url}"
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.min_interval - (time.monotonic() - self._last_call)
            if wait > 0:
                self.sleep(wait)
            self._last_call = time.monotonic()
            retry_after = None
            try:
                raw = self._post(body)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                if exc.code != 429 and exc.code < 500:
                    raise PromptError(f"{where}: HTTP {exc.code}: {detail}") from None
                last, retry_after = f"HTTP {exc.code}: {detail}", exc.headers.get("Retry-After") if exc.headers else None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                return self._content(raw, where)
            if attempt < self.max_retries:
                try:
                    delay = float(retry_after) if retry_after is not None else self.backoff * 2 ** attempt
                except ValueError:
                    delay = self.backoff * 2 ** attempt
                self.sleep(delay)
        raise PromptError(f"{where}: no reply after {self.max_retries + 1} tries; last error {last}")

    @staticmethod
    def _content(raw: bytes, where: str) -> str:
        try:
            reply = json.loads(raw.decode("utf-8"))
            content = reply["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PromptError(f"{where}: malformed reply (expected choices[0].message.content): "
                              f"{raw[:200].decode('utf-8', 'replace')!r}") from None
        if not isinstance(content, str):
            raise PromptError(f"{where}: malformed reply: message content is {type(content).__name__}, not text")
        return content


# ---------------------------------------------------------------------------------------------
# The cache and the generation loop
# ---------------------------------------------------------------------------------------------
class PromptCache:
    """Prompts keyed by (video_id, clip_id), stored as a CSV with the official columns. Every
    ``flush`` rewrites the whole file atomically, so it is never half-written."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows: dict[tuple[str, str], dict] = {}
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if tuple(reader.fieldnames or ()) != COLUMNS:
                    raise ValueError(f"{self.path}: not a prompt cache: columns {reader.fieldnames}, expected {list(COLUMNS)}")
                for line, row in enumerate(reader, start=2):
                    if None in row or any(row[c] is None for c in COLUMNS):
                        raise ValueError(f"{self.path}, line {line}: a row with the wrong number of fields")
                    self.rows[(row["video_id"], row["clip_id"])] = row
        self._dirty = False

    def __contains__(self, clip: Clip) -> bool:
        return (clip.video_id, clip.clip_id) in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def prompt(self, clip: Clip) -> str:
        return self.rows[(clip.video_id, clip.clip_id)]["prompt"]

    def put(self, clip: Clip, label, prompt: str) -> None:
        self.rows[(clip.video_id, clip.clip_id)] = {"video_id": clip.video_id, "clip_id": clip.clip_id,
                                                    "label": "" if label is None else f"{float(label):g}",
                                                    "mode": clip.mode, "prompt": clean_reply(prompt)}
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(buf.getvalue(), encoding="utf-8")
        self._dirty = False


def generate_prompts(source, clips: list[Clip], cache_path, label_leak: bool = True, flush_every: int = 25) -> list[str]:
    """The prompt of every clip, from the cache where it has one and from ``source`` otherwise.

    label_leak: the official protocol, where training clips' prompts are written with their
    label in view (validation and test clips never). False hides every label from the source.
    The cache is flushed every ``flush_every`` new prompts and when the loop ends or fails, so a
    second run resumes where the first stopped."""
    cache = PromptCache(cache_path)
    new = 0
    try:
        for clip in clips:
            if clip in cache:
                continue
            shown = clip if (label_leak and clip.mode == "train") else replace(clip, label=None)
            cache.put(clip, clip.label, source(shown))
            new += 1
            if new % flush_every == 0:
                cache.flush()
    finally:
        cache.flush()
    return [cache.prompt(c) for c in clips]
