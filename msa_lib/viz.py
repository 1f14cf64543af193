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
