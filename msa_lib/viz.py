"""Seaborn figures used by the chapters, with one palette per modality and per model."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MODALITY_COLORS = {"text": "#1f77b4", "audio": "#d62728", "vision": "#2ca02c"}
MODEL_ORDER = ["text_only", "audio_only", "vision_only", "early_fusion", "late_fusion", "tfn", "mult",
               "dashfusion", "lnln"]


def model_palette(names) -> dict:
    """Stable colours: the same model has the same colour in every chapter."""
    base = sns.color_palette("tab10", len(MODEL_ORDER))
    colors = dict(zip(MODEL_ORDER, base))
    extra = sns.color_palette("Set2", 8)
    return {n: colors.get(n, extra[i % len(extra)]) for i, n in enumerate(names)}


def setup(context: str = "notebook") -> None:
    """The book's plotting style."""
    sns.set_theme(context=context, style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (6.4, 3.6)})


def robustness_curve(df: pd.DataFrame, metric: str = "Has0_acc_2", x: str = "rate", hue: str = "model",
                     ax=None, title: str | None = None):
    """Metric against missing rate, one line per model; a band shows the spread over seeds."""
    ax = ax or plt.subplots()[1]
    names = list(dict.fromkeys(df[hue]))
    sns.lineplot(data=df, x=x, y=metric, hue=hue, style=hue, markers=True, dashes=False,
                 errorbar=("pi", 100) if "seed" in df and df["seed"].nunique() > 1 else None,
                 palette=model_palette(names), ax=ax)
    ax.set_xlabel("missing rate r (all modalities)" if x == "rate" else x)
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.legend(title=None, fontsize=8, ncol=2)
    return ax


def pattern_heatmap(df: pd.DataFrame, metric: str = "Has0_acc_2", ax=None):
    """Models x modality patterns, coloured by the metric."""
    ax = ax or plt.subplots(figsize=(6.4, 0.45 * df["model"].nunique() + 1.2))[1]
    table = df.pivot_table(index="model", columns="pattern", values=metric, aggfunc="mean")
    from .missing import PATTERNS
    table = table[[p for p in PATTERNS if p in table.columns]]
    sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis", cbar_kws={"label": metric}, ax=ax)
    ax.set_xlabel("modalities kept")
    ax.set_ylabel("")
    return ax


def training_curves(histories: dict[str, pd.DataFrame], column: str = "valid_loss", ax=None):
    """One line per model of a history column against the epoch."""
    ax = ax or plt.subplots()[1]
    pal = model_palette(list(histories))
    for name, h in histories.items():
        ax.plot(h["epoch"], h[column], marker="o", ms=3, label=name, color=pal[name])
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    ax.legend(fontsize=8)
    return ax


def sequence_plot(x: np.ndarray, length: int, title: str, ax=None, channels=None, color=None):
    """Frames (L, D) of one sample as lines over time (first ``channels`` dims)."""
    ax = ax or plt.subplots()[1]
    channels = channels or range(min(4, x.shape[1]))
    for c in channels:
        ax.plot(np.arange(length), x[:length, c], lw=1.2, label=f"dim {c}",
                color=color if c == 0 else None, alpha=1.0 if c == 0 else 0.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("frame")
    return ax


# ---------------------------------------------------------------------------------------------
# Interactive figures that work without a kernel
# ---------------------------------------------------------------------------------------------

_CONTROL_JS = """(function () {
  var root = document.getElementById("%(id)s");
  var states = JSON.parse(root.querySelector("script.msa-states").textContent);
  var inputs = root.querySelectorAll("[data-msa-control]");
  function key() {
    return Array.prototype.map.call(inputs, function (el) {
      return el.type === "checkbox" ? (el.checked ? "1" : "0") : el.value;
    }).join("|");
  }
  function show() {
    Array.prototype.forEach.call(inputs, function (el) {
      var label = el.parentNode.querySelector(".msa-value");
      if (label) { label.textContent = JSON.parse(el.dataset.labels)[+el.value]; }
    });
    root.querySelector(".msa-out").innerHTML = states[key()];
  }
  Array.prototype.forEach.call(inputs, function (el) { el.addEventListener("input", show); });
  show();
})();"""


def precomputed_controls(controls: list[dict], render, title: str = ""):
    """An interactive figure whose every state is computed now, so it works in the static HTML
    book (a few lines of JavaScript swap the states) as well as in Jupyter.

    controls: a list of dicts, in the order ``render`` takes its arguments:
      ``{"name": "clip", "kind": "select", "options": [(label, value), ...], "default": index}``,
      ``{"name": "text", "kind": "checkbox", "default": True}`` (values False / True), or
      ``{"name": "r", "kind": "slider", "options": [(label, value), ...], "default": index}``.
    render: ``render(*values) -> str`` (HTML of one state); called once per combination of
    values, so keep the number of combinations small.
    Returns an ``IPython.display.HTML``; the page shows the default state without JavaScript.
    """
    import hashlib
    import html
    import itertools
    import json

    from IPython.display import HTML

    choices = []
    for c in controls:
        if c["kind"] == "checkbox":
            choices.append([(str(int(v)), v) for v in (False, True)])
        elif c["kind"] in ("select", "slider"):
            choices.append([(str(i), value) for i, (_, value) in enumerate(c["options"])])
        else:
            raise ValueError(f"control {c.get('name')!r}: kind must be select, checkbox or slider, got {c['kind']!r}")
    states = {"|".join(k for k, _ in combo): render(*(v for _, v in combo)) for combo in itertools.product(*choices)}
    default = "|".join(str(int(c.get("default", True))) if c["kind"] == "checkbox" else str(c.get("default", 0))
                       for c in controls)
    blob = json.dumps(states, sort_keys=True).replace("</", "<\\/")
    uid = "msa-" + hashlib.sha1(blob.encode()).hexdigest()[:12]
    parts = [f'<div class="msa-controls" id="{uid}">']
    if title:
        parts.append(f"<div><b>{html.escape(title)}</b></div>")
    for c, keys in zip(controls, default.split("|")):
        name = html.escape(c["name"])
        if c["kind"] == "select":
            opts = "".join(f'<option value="{i}"{" selected" if str(i) == keys else ""}>{html.escape(str(label))}</option>'
                           for i, (label, _) in enumerate(c["options"]))
            parts.append(f'<label>{name} <select data-msa-control>{opts}</select></label>')
        elif c["kind"] == "checkbox":
            parts.append(f'<label><input type="checkbox" data-msa-control{" checked" if keys == "1" else ""}> '
                         f"{name}</label>")
        else:
            labels = html.escape(json.dumps([str(label) for label, _ in c["options"]]))
            parts.append(f'<label>{name} <input type="range" min="0" max="{len(c["options"]) - 1}" step="1" '
                         f'value="{keys}" data-msa-control data-labels="{labels}"> '
                         f'<span class="msa-value">{html.escape(str(c["options"][int(keys)][0]))}</span></label>')
    parts.append(f'<div class="msa-out">{states[default]}</div>')
    parts.append(f'<script type="application/json" class="msa-states">{blob}</script>')
    parts.append(f"<script>{_CONTROL_JS % {'id': uid}}</script></div>")
    return HTML("\n".join(parts))
