"""Figures used by the chapters, and the book's one palette.

The palette. Every modality and every model keeps one colour in every chapter:

* modalities (text, audio, vision) take three colours of Okabe & Ito's palette (blue, vermillion,
  bluish green; Okabe & Ito 2008, *Color Universal Design*), the three that stay furthest apart
  under a simulated protanopia or deuteranopia (CIEDE2000 distance >= 18);
* models take thirteen other colours of Paul Tol's colour-blind-safe schemes (bright, muted,
  high-contrast, dark; https://personal.sron.nl/~pault/) and Okabe & Ito's, assigned by a search
  that keeps every pair, modalities included, apart in normal vision (CIEDE2000 >= 12) and under
  simulated protanopia and deuteranopia (>= 4.5; Machado et al. 2009). No model shares a
  modality's colour;
* sixteen colours cannot all stay far apart for a reader with a colour-vision deficiency (no
  palette can), so every model also has its own marker, and figures that rank models name them
  on an axis instead of in a legend;
* a variant of a model (an ablation, a re-training) keeps its parent's colour and gets a dashed
  line and a hollow marker: name it "<parent> <what changed>" (for instance "lnln w/o DMC") or
  list it in ``VARIANTS``; any other name gets a neutral grey, the same one every time;
* other categories (domains, kinds of clip, loss terms) take Tol's pale "light" scheme, the
  default colour cycle after ``setup()``; heat maps use viridis (perceptually uniform, readable
  in grey and with every common colour-vision deficiency).

``tests/test_viz.py`` checks these distances with its own colour-blindness simulation.
"""
from __future__ import annotations

import zlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import BoundaryNorm, ListedColormap, to_hex, to_rgb

MODALITY_COLORS = {"text": "#0072B2", "audio": "#D55E00", "vision": "#009E73"}
# name: (colour, marker); the order is the order of the book's chapters
MODELS = {
    "text_only": ("#AA4499", "o"), "audio_only": ("#999933", "s"), "vision_only": ("#004488", "^"),
    "early_fusion": ("#EE6677", "D"), "late_fusion": ("#225555", "v"), "tfn": ("#228833", "P"),
    "mult": ("#88CCEE", "X"), "dashfusion": ("#225522", "p"), "lnln": ("#E69F00", "h"),
    "hme": ("#CC79A7", "<"), "cyin": ("#CC3311", ">"), "mmslf": ("#666633", "*"), "midg": ("#882255", "d"),
}
MODEL_ORDER = list(MODELS)
MODEL_COLORS = {name: color for name, (color, _) in MODELS.items()}
# the book's variants, so that each gets its own marker and dashes (other "<parent> ..." names
# are recognised by their prefix and hashed onto a marker)
VARIANTS = {"w/o temporal alignment": "dashfusion", "w/o contrastive": "dashfusion", "flat bottleneck": "dashfusion",
            "paper's alignment (no time codes)": "dashfusion", "with a text layer": "dashfusion",
            "dashfusion, no companions": "dashfusion", "lnln w/o DMC": "lnln", "lnln w/o DMML": "lnln",
            "lnln, official GRL placement": "lnln"}
NEUTRALS = ["#555555", "#777777", "#999999", "#444444", "#888888"]   # unknown names (greys)
OTHER_COLORS = ["#77AADD", "#EE8866", "#BBCC33", "#FFAABB", "#99DDFF", "#AAAA00", "#EEDD88", "#DDDDDD"]   # Tol "light"
SEQUENTIAL = "viridis"
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "p", "h", "<", ">", "*", "d"]
_DASHES = [(4, 2), (1, 1.5), (6, 1.5, 1, 1.5)]


def _hash(name: str) -> int:
    return zlib.crc32(name.encode())            # stable across runs (unlike hash())


def parent(name: str) -> str | None:
    """The registered model that ``name`` is, or is a variant of (None for an unknown name)."""
    if name in MODELS:
        return name
    if name in VARIANTS:
        return VARIANTS[name]
    starts = [m for m in MODELS if name.startswith(m) and name[len(m)] in " ,+(:"]
    return max(starts, key=len) if starts else None


def model_style(name: str) -> dict:
    """Colour, marker, line style and marker fill of a model, the same in every figure."""
    base = parent(name)
    if base == name:
        color, marker = MODELS[name]
        return {"color": color, "marker": marker, "linestyle": "-", "mfc": color}
    k = _hash(name)
    if base is None:
        return {"color": NEUTRALS[k % len(NEUTRALS)], "marker": _MARKERS[k % len(_MARKERS)],
                "linestyle": (0, (1, 1.5)), "mfc": "white"}
    known = [v for v, p in VARIANTS.items() if p == base]
    i = known.index(name) if name in known else k
    return {"color": MODELS[base][0], "marker": ["s", "^", "D", "v"][i % 4], "linestyle": (0, _DASHES[i % 3]),
            "mfc": "white"}


def model_color(name: str) -> str:
    """One model's colour (its parent's for a variant, a neutral grey for an unknown name)."""
    return model_style(name)["color"]


def model_palette(names) -> dict:
    """``{name: colour}``; a model's colour does not depend on the other names in the list."""
    return {n: model_color(n) for n in names}


def tint(color, amount: float = 0.6) -> str:
    """``color`` mixed with white (``amount`` 1 = white): box fills that keep black text legible."""
    return to_hex(np.asarray(to_rgb(color)) * (1 - amount) + amount)


def setup(context: str = "notebook") -> None:
    """The book's plotting style: default colours from ``OTHER_COLORS``, none of a model's or modality's."""
    sns.set_theme(context=context, style="whitegrid", font_scale=0.9, palette=OTHER_COLORS)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (6.4, 3.6)})


def model_line(ax, x, y, name: str, **kw):
    """``ax.plot`` of one model in its colour, marker and line style (keywords override them)."""
    s = model_style(name)
    style = {"color": s["color"], "marker": s["marker"], "ls": s["linestyle"], "mfc": s["mfc"], "ms": 4, "lw": 1.5,
             "label": name, **kw}
    return ax.plot(x, y, **style)


def robustness_curve(df: pd.DataFrame, metric: str = "Has0_acc_2", x: str = "rate", hue: str = "model",
                     ax=None, title: str | None = None):
    """Metric against missing rate, one line per model (the mean over seeds); a band shows the
    range over seeds where there are several."""
    ax = ax or plt.subplots()[1]
    for name in dict.fromkeys(df[hue]):
        g = df[df[hue] == name].groupby(x)[metric]
        model_line(ax, g.mean().index, g.mean().values, name)
        if "seed" in df and df.loc[df[hue] == name, "seed"].nunique() > 1:
            ax.fill_between(g.min().index, g.min().values, g.max().values, color=model_color(name), alpha=0.15, lw=0)
    ax.set_xlabel("missing rate r (all modalities)" if x == "rate" else x)
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.legend(title=None, fontsize=8, ncol=2)
    return ax


def ranking_dots(values, xlabel: str, ax=None, order=None, spread: str = "sd"):
    """A ranking as a dot plot: one row per model, a small dot per seed, and the mean with an
    error bar (``spread`` "sd" or "range" over seeds) where there are several seeds.

    values: ``{name: number or list of numbers}`` or a Series indexed by name. Rows are sorted by
    mean, best on top, unless ``order`` is given (top row first). A dot plot needs no zero on its
    axis, unlike a bar chart, whose length would be read as the value.
    """
    ax = ax or plt.subplots(figsize=(7, 0.35 * len(values) + 1.2))[1]
    vals = {n: np.atleast_1d(np.asarray(v, float)) for n, v in dict(values).items()}
    order = list(order) if order is not None else sorted(vals, key=lambda n: -vals[n].mean())
    for y, name in enumerate(order[::-1]):
        v, s = vals[name], model_style(name)
        color = s["color"]
        if len(v) > 1:
            lo, hi = (v.mean() - v.std(ddof=1), v.mean() + v.std(ddof=1)) if spread == "sd" else (v.min(), v.max())
            ax.plot([lo, hi], [y, y], color=color, lw=2, solid_capstyle="butt")
            ax.scatter(v, [y] * len(v), color=color, s=12, alpha=0.6, zorder=3, lw=0)
        ax.plot(v.mean(), y, marker=s["marker"], ms=8, color=color, mfc=s["mfc"], ls="none", zorder=4)
    ax.set_yticks(range(len(order)), order[::-1])
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("model")
    return ax


def heatmap(values, ax=None, label: str = "", cmap=SEQUENTIAL, categories=None, colors=None, **kw):
    """``imshow`` with a colour bar and no grid lines. ``categories`` (labels of the values 0, 1, ...)
    with ``colors`` draws a categorical map whose colour bar names the categories."""
    ax = ax or plt.subplots()[1]
    if categories is not None:
        n = len(categories)
        kw.update(cmap=ListedColormap(colors), norm=BoundaryNorm(np.arange(n + 1) - 0.5, n))
    else:
        kw.setdefault("cmap", cmap)
    kw.setdefault("aspect", "auto")
    kw.setdefault("interpolation", "nearest")
    image = ax.imshow(np.asarray(values, dtype=float), **kw)
    bar = ax.figure.colorbar(image, ax=ax, label=label, fraction=0.05, pad=0.02)
    if categories is not None:
        bar.set_ticks(range(len(categories)), labels=categories)
    ax.grid(False)
    return ax


def pattern_heatmap(df: pd.DataFrame, metric: str = "Has0_acc_2", ax=None):
    """Models x modality patterns, coloured by the metric."""
    ax = ax or plt.subplots(figsize=(6.4, 0.45 * df["model"].nunique() + 1.2))[1]
    table = df.pivot_table(index="model", columns="pattern", values=metric, aggfunc="mean")
    from .missing import PATTERNS
    table = table[[p for p in PATTERNS if p in table.columns]]
    sns.heatmap(table, annot=True, fmt=".2f", cmap=SEQUENTIAL, cbar_kws={"label": metric}, ax=ax)
    ax.grid(False)
    ax.set_xlabel("modalities kept")
    ax.set_ylabel("model")
    return ax


def training_curves(histories: dict[str, pd.DataFrame], column: str = "valid_loss", ax=None):
    """One line per model of a history column against the epoch."""
    ax = ax or plt.subplots()[1]
    for name, h in histories.items():
        model_line(ax, h["epoch"], h[column], name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    ax.legend(fontsize=8)
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
