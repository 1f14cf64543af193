"""What each chapter claims, per profile: ranges and relations its recorded numbers must satisfy.

A chapter records its headline numbers with ``msa_lib.profiles.Claims``; the tests read
them back here. ``demo`` checks are the chapter's prose (the committed outputs);
``smoke`` checks only that the run produced sane numbers (one epoch on 240 samples
learns little).
"""
from __future__ import annotations

import math

CHECKS = {
    "01_data_and_metrics": {
        "demo": [
            ("text probe is good", lambda c: 0.65 <= c["probe_text_acc2"] <= 0.9),
            ("audio alone weaker than text", lambda c: c["probe_audio_acc2"] < c["probe_text_acc2"]),
            ("vision alone weaker than text", lambda c: c["probe_vision_acc2"] < c["probe_text_acc2"]),
            ("all three beat text", lambda c: c["probe_all_acc2"] >= c["probe_text_acc2"] + 0.03),
            ("text fails on sarcasm", lambda c: c["probe_text_sarcastic_acc2"] < 0.3),
            ("audio/vision rescue sarcasm",
             lambda c: c["probe_all_sarcastic_acc2"] >= c["probe_text_sarcastic_acc2"] + 0.15),
            ("held-out domain is harder", lambda c: c["probe_shift_mae_gap"] > 0.1),
            ("every held-out domain is harder", lambda c: c["probe_shift_min_mae_gap"] > 0.0),
            ("voice and face of sarcastic clips read negative",
             lambda c: all(c[f"{m}_valence_sarcastic"] < 0 and
                           c[f"{m}_valence_sarcastic"] < c[f"{m}_valence_plain_positive"] - 0.1 for m in ("audio", "vision"))),
            ("words of sarcastic clips are positive", lambda c: c["sarcastic_text_label"] > 1.0),
        ],
        "smoke": [
            ("text probe learns", lambda c: c["probe_text_acc2"] > 0.6),
            ("held-out domain is harder", lambda c: c["probe_shift_mae_gap"] > 0.0),
        ],
    },
    "02_fusion_baselines": {
        "demo": [
            ("text only is good", lambda c: 0.72 <= c["text_only_acc2"] <= 0.9),
            ("audio alone weaker", lambda c: c["audio_only_acc2"] < c["text_only_acc2"] - 0.03),
            ("vision alone weaker", lambda c: c["vision_only_acc2"] < c["text_only_acc2"] - 0.03),
            ("fusion beats text", lambda c: c["best_fusion_gain_over_text"] >= 0.02),
            ("gain is on sarcasm", lambda c: c["best_fusion_sarcastic_gain"] >= 0.2),
            ("best clean model loses more than text at r=0.9",
             lambda c: c["best_fusion_drop_at_0.9"] > c["text_only_drop_at_0.9"]),
            ("early fusion and TFN need audio/vision: keeping only text costs > 0.1",
             lambda c: all(c[f"pattern_tav_{m}"] - c[f"pattern_t_{m}"] > 0.1 for m in ("early_fusion", "tfn"))),
            ("late fusion with text only is as good as text only",
             lambda c: c["pattern_t_late_fusion"] >= c["text_only_acc2"] - 0.02),
            ("late fusion misses the sarcastic clips", lambda c: c["late_fusion_sarcastic_acc2"] <= 0.1),
            ("late fusion is best without text",
             lambda c: c["pattern_av_late_fusion"] >= max(c[f"pattern_av_{m}"] for m in ("early_fusion", "tfn", "mult"))),
        ],
        "smoke": [
            ("numbers are accuracies", lambda c: all(0.0 <= v <= 1.0 for k, v in c.items() if k.endswith("acc2"))),
        ],
    },
    # Chapter 3 -- DashFusion (owned by the DashFusion work; edit only this block)
    "03_dashfusion": {
        "demo": [],
        "smoke": [],
    },
    # Chapter 4 -- LNLN (owned by the LNLN work; edit only this block)
    "04_lnln": {
        "demo": [],
        "smoke": [],
    },
}


def check(chapter: str, profile: str, claims: dict) -> list[str]:
    """Names of the checks that fail (a missing or NaN number fails its check)."""
    failed = []
    for name, rule in CHECKS.get(chapter, {}).get(profile, []):
        try:
            ok = bool(rule(claims))
        except KeyError as exc:
            ok, name = False, f"{name} (claim {exc} not recorded)"
        if not ok or any(isinstance(v, float) and math.isnan(v) for v in claims.values()):
            failed.append(name)
    return failed
