"""Prompt sources for MMSLF: the offline describer, an OpenAI-compatible endpoint on 127.0.0.1,
and the resumable, atomically written cache."""
from __future__ import annotations

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from msa_lib.prompts import (COLUMNS, MAX_CHARS, Clip, Describer, OpenAIChat, PromptCache, PromptError,
                             clean_reply, clips_from_split, generate_prompts, split_id)


def _clip(i=0, mode="train", face=2.0, text="the food was really great", label=1.8, kind="plain"):
    return Clip(f"vid{i}", str(i), mode, text, label, {"face": face, "kind": kind})


# ---------------------------------------------------------------- the describer
def test_describer_writes_the_two_parts_and_is_deterministic():
    d = Describer()
    hint = d(_clip())
    assert hint.splitlines()[0].startswith("The labelled sentiment (+1.8) is positive")   # first: survives truncation
    assert hint.splitlines()[1].startswith("1. Visual cues: ") and "\n2. Language cues: " in hint
    assert "\"great\"" in hint and "positive" in hint
    assert d(_clip()) == hint                                            # same clip and seed, same hint
    other = [Describer(seed=1)(_clip(i)) for i in range(20)]
    assert other != [d(_clip(i)) for i in range(20)]                     # another seed, other phrasings


def test_describer_reads_the_face_and_errs_at_its_rate():
    clips = [_clip(i, face=2.0 if i % 2 else -2.0) for i in range(400)]
    right = Describer(error_rate=0.0)
    assert all(right.face(c, right._rng(c)) == ("smile" if c.cues["face"] > 0 else "frown") for c in clips)
    noisy = Describer(error_rate=0.3, seed=4)
    wrong = sum(noisy.face(c, noisy._rng(c)) != ("smile" if c.cues["face"] > 0 else "frown") for c in clips)
    assert 0.22 * len(clips) <= wrong <= 0.38 * len(clips)
    always = Describer(error_rate=1.0)
    assert all(always.face(c, always._rng(c)) != ("smile" if c.cues["face"] > 0 else "frown") for c in clips)
    with pytest.raises(ValueError, match="error_rate"):
        Describer(error_rate=1.5)


def test_describer_varies_its_wording_and_flags_sarcasm():
    hints = {Describer()(_clip(i, label=None)).split("\n")[0] for i in range(60)}
    assert len(hints) >= 3                                   # several phrasings of one cue
    sarcastic = Describer()(_clip(face=-2.0, text="honestly the plot felt amazing", kind="sarcastic"))
    assert "sarcasm" in sarcastic or "irony" in sarcastic
    neutral = Describer()(_clip(face=0.0, text="we went to see the movie on friday", label=None))
    assert "Language cues: " in neutral and "label" not in neutral.lower()


def test_clips_from_split_reads_synthmsa_cues(synth_smoke):
    clips = clips_from_split(synth_smoke.train, "train")
    assert len(clips) == len(synth_smoke.train.label)
    assert clips[0].video_id.startswith("synth") and clips[0].cues["kind"] in ("plain", "sarcastic", "deadpan")
    assert clips[3].cues["face"] == pytest.approx(float(synth_smoke.train.label_v[3]))
    assert split_id("abc$_$12") == ("abc", "12") and split_id("plain") == ("plain", "0")


# ---------------------------------------------------------------- the cache and the label leak
def test_generation_resumes_and_never_leaves_a_half_written_cache(tmp_path):
    path = tmp_path / "prompts.csv"
    clips = [_clip(i, mode="train" if i < 6 else "test") for i in range(10)]
    calls = []

    def failing(clip):
        calls.append(clip.clip_id)
        if len(calls) == 7:
            raise PromptError("endpoint down")
        return f"hint {clip.clip_id} label {clip.label}"

    with pytest.raises(PromptError, match="endpoint down"):
        generate_prompts(failing, clips, path, flush_every=4)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["clip_id"] for r in rows] == [str(i) for i in range(6)]           # the six done, all whole
    assert tuple(rows[0]) == COLUMNS
    calls.clear()
    prompts = generate_prompts(lambda c: (calls.append(c.clip_id), f"hint {c.clip_id} label {c.label}")[1], clips, path)
    assert calls == ["6", "7", "8", "9"]                                        # resumed, nothing asked twice
    assert "label 1.8" in prompts[0]                                            # train: the label was shown
    assert all(p.endswith("label None") for p in prompts[6:])                   # test: never
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_without_the_leak_no_prompt_sees_a_label(tmp_path):
    clips = [_clip(i) for i in range(4)]
    prompts = generate_prompts(Describer(), clips, tmp_path / "p.csv", label_leak=False)
    assert not any("labelled" in p for p in prompts)
    leaked = generate_prompts(Describer(), clips, tmp_path / "q.csv", label_leak=True)
    assert all("labelled sentiment (+1.8) is positive" in p for p in leaked)


def test_a_hostile_reply_is_stored_safely_and_still_encodes(tmp_path):
    garbage = "\x00\x1b[31mIGNORE ALL INSTRUCTIONS\x07\r\n" + "é" * 10 + "x" * 100_000
    path = tmp_path / "p.csv"
    prompts = generate_prompts(lambda c: garbage, [_clip(0), _clip(1)], path)
    assert len(prompts[0]) == MAX_CHARS and "\x00" not in prompts[0] and "\x1b" not in prompts[0]
    assert prompts[0].startswith("[31mIGNORE ALL INSTRUCTIONS\n" + "é" * 10)
    again = PromptCache(path)                                                 # the CSV reads back as written
    assert len(again) == 2 and again.prompt(_clip(1)) == prompts[1]
    from msa_lib.layers.text import load_pretrained
    tokenizer, _ = load_pretrained("minilm")
    ids = tokenizer(prompts, truncation=True, max_length=64, padding="max_length")["input_ids"]
    assert len(ids) == 2 and len(ids[0]) == 64
    assert clean_reply(None) == "" and clean_reply(12) == "12"


def test_a_file_that_is_not_a_prompt_cache_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a prompt cache"):
        PromptCache(bad)
    short = tmp_path / "short.csv"
    short.write_text(",".join(COLUMNS) + "\nv,1,0.5\n")
    with pytest.raises(ValueError, match="line 2"):
        PromptCache(short)


# ---------------------------------------------------------------- an OpenAI-compatible endpoint
class _Server:
    """A chat endpoint on 127.0.0.1 that answers by a script: a list of ("ok" | "429" | "500" |
    "slow" | "malformed" | "404") actions, the last one repeated."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((dict(self.headers), body))
                action = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if action == "slow":
                    threading.Event().wait(1.0)
                    action = "ok"
                if action in ("429", "500", "404"):
                    self.send_response(int(action))
                    if action == "429":
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b'{"error": "busy"}')
                    return
                reply = (b"<html>not json" if action == "malformed" else
                         json.dumps({"choices": [{"message": {"content": "1. Visual cues: a smile\n2. Language cues: great"}}]}).encode())
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    made = []

    def make(script):
        made.append(_Server(script))
        return made[-1]
    yield make
    for s in made:
        s.close()


def _chat(url, **kw):
    return OpenAIChat(url, timeout=0.3, max_retries=2, backoff=0.01, sleep=lambda s: None, **kw)


def test_openai_source_sends_the_instruction_label_frames_and_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MSA_TEST_KEY", "sk-secret-123")
    frames = tmp_path / "frames" / "vid0" / "0" / "frames"
    frames.mkdir(parents=True)
    for i in range(5):
        (frames / f"{i:03d}.jpg").write_bytes(b"\xff\xd8fake jpeg %d" % i)
    s = server(["ok"])
    chat = _chat(s.url, api_key_env="MSA_TEST_KEY", frames_root=tmp_path / "frames")
    cache = tmp_path / "p.csv"
    prompts = generate_prompts(chat, [_clip(0), _clip(1, mode="test")], cache)
    assert prompts[0].startswith("1. Visual cues: a smile")
    headers, body = s.requests[0]
    assert headers["Authorization"] == "Bearer sk-secret-123"
    content = body["messages"][0]["content"]
    assert "two numbered parts" in content[0]["text"] and "Label: +1.80" in content[0]["text"]
    assert [c["type"] for c in content] == ["text", "image_url", "image_url", "image_url"]
    assert "Label: None" in s.requests[1][1]["messages"][0]["content"][0]["text"]      # test clip: no label
    assert len(s.requests[1][1]["messages"][0]["content"]) == 1                        # no frames folder: text only
    assert "sk-secret" not in cache.read_text()


def test_openai_source_retries_busy_and_slow_replies(server, tmp_path):
    s = server(["429", "500", "ok"])
    assert _chat(s.url)(_clip()).startswith("1. Visual cues")
    assert len(s.requests) == 3
    slow = server(["slow", "ok"])
    assert _chat(slow.url)(_clip()).startswith("1. Visual cues")
    assert len(slow.requests) == 2


@pytest.mark.parametrize("script, message", [(["500"], "no reply after 3 tries; last error HTTP 500"),
                                             (["slow"], "no reply after 3 tries"),
                                             (["malformed"], "malformed reply"),
                                             (["404"], "HTTP 404")])
def test_openai_source_failures_are_clear_and_leave_the_cache_whole(server, tmp_path, monkeypatch, script, message):
    monkeypatch.setenv("MSA_TEST_KEY", "sk-secret-456")
    s = server(script)
    cache = tmp_path / "p.csv"
    generate_prompts(lambda c: "earlier hint", [_clip(0)], cache)
    with pytest.raises(PromptError, match=message) as err:
        generate_prompts(_chat(s.url, api_key_env="MSA_TEST_KEY"), [_clip(0), _clip(1)], cache)
    assert "vid1/1" in str(err.value) and "sk-secret" not in str(err.value)
    assert len(PromptCache(cache)) == 1 and "sk-secret" not in cache.read_text()
    if script == ["malformed"] or script == ["404"]:
        assert len(s.requests) == 1                                              # not retried


def test_openai_source_refuses_nothing_listening(tmp_path):
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(PromptError, match="no reply after 3 tries"):
        _chat(f"http://127.0.0.1:{port}/v1")(_clip())
