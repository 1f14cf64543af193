"""Chapter 7's MMSLF variants over three training seeds, on the demo profile (about 35 minutes on 2 cores).

    python chapters/studies/07_mmslf_grid.py           # writes 07_mmslf_grid.csv beside it

The chapter trains one teacher and its student live (training seed 0, the describer without
perception errors, the official label leak); this study retrains them with

* hints of falling quality: the describer's perception error rate 0, 0.1, 0.3 and 0.5;
* the label leak switched off (training hints never see the label), at error 0 and 0.3;
* a teacher whose hints are all the same empty text ("w/o prompt" in summaries of the paper), and its student;
* students of the seed's error-0 teacher without attention matching, without fusion-token
  matching, without either (the same student trained alone: "w/o teacher"), and matching
  the teacher's modulated map instead of its plain one (as summaries of the paper describe it);
* early fusion and LNLN, the baselines.

Per (variant, seed) one row: the teacher's accuracy on the training clips (whose hints may
carry the label) and on the test clips, and the student's test accuracy, MAE and
correlation. Seed 0's "mmslf" row repeats the chapter's run exactly (the chapter checks it).
"""
from __future__ import annotations

import sys

import numpy as np

from msa_lib import metrics as M
from msa_lib.models import build
from msa_lib.models.mmslf import encode_prompts
from msa_lib.profiles import seed_everything
from msa_lib.train import TrainConfig, evaluate, fit

from _runner import run_study

HINTS = {                                   # variant: (perception error rate, label leak)
    "mmslf": (0.0, True),
    **{f"error {e:g}": (e, True) for e in (0.1, 0.3, 0.5)},
    "no leak": (0.0, False),
    "no leak, error 0.3": (0.3, False),
}
STUDENTS = {                                # variant: loss weights of a student of the error-0 teacher
    "w/o attention matching": {"w_attn": 0.0},
    "w/o fusion-token matching": {"w_fusion": 0.0},
    "w/o teacher": {"w_attn": 0.0, "w_fusion": 0.0},
    "conditional-map target": {"distill_target": "conditional"},
}


def two_stages(data, seed, threads, blank_hints=False, **options):
    """Build MMSLF (synth preset), write and encode the hints, train the teacher then the student
    -> (teacher state, row of numbers). The chapter runs the same steps."""
    seed_everything(seed, threads=threads)
    model = build("mmslf", data.spec, preset="synth", **options)
    if blank_hints:                          # every clip gets the same empty hint
        ids = [i for s in (data.train, data.valid, data.test) for i in s.ids]
        blank = encode_prompts([""], model.cfg.prompt_encoder, model.cfg.prompt_max_length)
        model.set_prompts(ids, blank.expand(len(ids), -1, -1))
    else:
        model.prepare(data)
    key = M.PRIMARY_KEYS[data.spec.metric_set]
    model.set_stage("teacher")
    teacher = fit(model, data, model.stage_config("teacher", seed=seed))
    teacher_state = {k: v.clone() for k, v in model.state_dict().items()}
    row = {"teacher_train": evaluate(model, data.train, data.spec)[key], "teacher_test": teacher.test[key],
           "teacher_epoch": teacher.best_epoch}
    model.set_stage("student")
    return teacher_state, {**row, **student_row(model, data, seed, key)}


def test_row(result, key) -> dict:
    """The deployed model's test numbers (the student's, or a baseline's) and its selected epoch."""
    return {"student_test": result.test[key], "student_MAE": result.test["MAE"], "student_Corr": result.test["Corr"],
            "student_epoch": result.best_epoch}


def student_row(model, data, seed, key) -> dict:
    return test_row(fit(model, data, model.stage_config("student", seed=seed)), key)


def rows_for_seed(seed: int, data, p, args=None) -> list[dict]:
    key = M.PRIMARY_KEYS[data.spec.metric_set]
    rows = []

    def add(variant, error, leak, row):
        rows.append({"variant": variant, "seed": seed, "error": error, "leak": leak,
                     **{k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in row.items()}})
        print(rows[-1], flush=True)

    base_state = None
    for variant, (error, leak) in HINTS.items():
        state, row = two_stages(data, seed, p.threads, prompt_error_rate=error, label_leak=leak)
        add(variant, error, leak, row)
        if variant == "mmslf":
            base_state, base_row = state, row
    _, row = two_stages(data, seed, p.threads, blank_hints=True)
    add("blank hints", np.nan, True, row)
    teacher_cols = {k: base_row[k] for k in ("teacher_train", "teacher_test", "teacher_epoch")}
    for variant, weights in STUDENTS.items():
        seed_everything(seed, threads=p.threads)
        model = build("mmslf", data.spec, preset="synth", **weights)
        model.prepare(data)                      # read back from the cache
        model.load_state_dict(base_state)        # the error-0 teacher, and the student as initialised
        add(variant, 0.0, True, {**teacher_cols, **student_row(model, data, seed, key)})
    for name, make in (("early fusion", lambda: build("early_fusion", data.spec, d_model=32)),
                       ("lnln", lambda: build("lnln", data.spec, preset="synth"))):
        seed_everything(seed, threads=p.threads)
        model = make()
        cfg = (model.cfg.train_config(seed=seed) if name == "lnln"
               else TrainConfig(epochs=10, batch_size=64, lr=2e-3, seed=seed))
        add(name, np.nan, False, test_row(fit(model, data, cfg), key))
    return rows


if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(run_study(__file__, __doc__, rows_for_seed, argv=argv if "--seeds" in argv else ["--seeds", "0", "1", "2", *argv],
                       recipe="the synth preset's own recipe: teacher 10 epochs, student 10 epochs"))
