"""The book's palette and figure rules: colour-blind-safe colours, one colour per modality and per
model, and chapter figure code that uses them (no hard-coded colours, colour bars on heat maps)."""
from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from msa_lib import viz  # noqa: E402

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))

# ---------------------------------------------------------------------------------------------
# Colour science, small and self-contained: Machado, Oliveira & Fernandes (2009) simulation of
# dichromacy (severity 1) on linear sRGB, then CIELAB (D65) and the CIEDE2000 difference.
# ---------------------------------------------------------------------------------------------
MACHADO = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                     [-0.011820, 0.042940, 0.968881]],
}
VISIONS = [None, "protanopia", "deuteranopia"]
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def lab(color, vision=None) -> np.ndarray:
    c = np.asarray(to_rgb(color), float)
    rgb = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    if vision:
        rgb = np.clip(np.array(MACHADO[vision]) @ rgb, 0, 1)
    xyz = SRGB_TO_XYZ @ rgb / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def ciede2000(lab1, lab2) -> float:
    (L1, a1, b1), (L2, a2, b2) = lab1, lab2
    cbar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(cbar ** 7 / (cbar ** 7 + 25 ** 7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1)) % 360, np.degrees(np.arctan2(b2, a2)) % 360
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_hue = 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh / 2))
    lbar, cbar = (L1 + L2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        hbar = h1 + h2
    elif abs(h1 - h2) <= 180:
        hbar = (h1 + h2) / 2
    else:
        hbar = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * np.cos(np.radians(hbar - 30)) + 0.24 * np.cos(np.radians(2 * hbar))
         + 0.32 * np.cos(np.radians(3 * hbar + 6)) - 0.20 * np.cos(np.radians(4 * hbar - 63)))
    sl = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * cbar, 1 + 0.015 * cbar * t
    rt = (-np.sin(np.radians(60 * np.exp(-(((hbar - 275) / 25) ** 2))))
          * 2 * np.sqrt(cbar ** 7 / (cbar ** 7 + 25 ** 7)))
    dl, dc, dhh = (L2 - L1) / sl, (c2 - c1) / sc, d_hue / sh
    return float(np.sqrt(dl ** 2 + dc ** 2 + dhh ** 2 + rt * dc * dhh))


def distance(a, b, vision=None) -> float:
    return ciede2000(lab(a, vision), lab(b, vision))


def test_ciede2000_matches_published_test_pairs():
    """Sharma, Wu & Dalal (2005), pairs 1, 7 and 17 of their table."""
    assert ciede2000((50, 2.6772, -79.7751), (50, 0, -82.7485)) == pytest.approx(2.0425, abs=1e-4)
    assert ciede2000((50, 0, 0), (50, -1, 2)) == pytest.approx(2.3669, abs=1e-4)
    assert ciede2000((50, 2.5, 0), (73, 25, -18)) == pytest.approx(27.1492, abs=1e-4)


def test_simulation_merges_what_a_dichromat_confuses():
    """Red and green that differ a lot in normal vision come close under deuteranopia: the
    simulation is doing something, so the distance tests below can fail."""
    red, green = "#CC4444", "#669900"
    assert distance(red, green) > 40
    assert distance(red, green, "deuteranopia") < 0.5 * distance(red, green)


# ---------------------------------------------------------------------------------------------
# The palette
# ---------------------------------------------------------------------------------------------
MODALITIES = viz.MODALITY_COLORS
MODELS = viz.MODEL_COLORS


def min_distance(colors: dict, vision=None):
    pairs = itertools.combinations(colors.items(), 2)
    return min(((distance(a, b, vision), na, nb) for (na, a), (nb, b) in pairs))


@pytest.mark.parametrize("vision", VISIONS)
def test_modality_colours_stay_far_apart_for_every_reader(vision):
    d, a, b = min_distance(MODALITIES, vision)
    assert d >= 15, f"{a} and {b}: CIEDE2000 {d:.1f} under {vision or 'normal vision'}"


@pytest.mark.parametrize("vision,least", [(None, 12), ("protanopia", 4.5), ("deuteranopia", 4.5)])
def test_every_pair_of_palette_colours_stays_apart(vision, least):
    """Models and modalities together (the bound under dichromacy is lower because no set of
    sixteen colours does better; markers carry the rest, see the next test)."""
    d, a, b = min_distance({**{f"modality {k}": v for k, v in MODALITIES.items()}, **MODELS}, vision)
    assert d >= least, f"{a} and {b}: CIEDE2000 {d:.1f} under {vision or 'normal vision'}"


def test_models_that_colour_alone_may_not_separate_have_their_own_marker():
    markers = [viz.model_style(n)["marker"] for n in MODELS]
    assert len(set(markers)) == len(markers)
    assert len(set(MODELS.values())) == len(MODELS)


def test_the_chapter_2_baselines_stay_clearly_apart():
    """The seven baselines share every figure of chapter 2."""
    ch2 = {n: MODELS[n] for n in ["text_only", "audio_only", "vision_only", "early_fusion", "late_fusion", "tfn",
                                  "mult"]}
    for vision in VISIONS:
        d, a, b = min_distance(ch2, vision)
        assert d >= 8, f"{a} and {b}: {d:.1f} under {vision}"


def test_no_model_shares_or_nears_a_modality_colour():
    for (m, mc), (n, nc) in itertools.product(MODALITIES.items(), MODELS.items()):
        assert distance(mc, nc) >= 12, f"model {n} is near modality {m}"
        for vision in VISIONS[1:]:
            assert distance(mc, nc, vision) >= 4.5, f"model {n} is near modality {m} under {vision}"
    for name in ["lnln w/o DMC", "tfn + LNLN training", "w/o contrastive", "augmented baseline", "anything"]:
        assert all(distance(viz.model_color(name), c) >= 12 for c in MODALITIES.values()), name


def test_a_model_keeps_its_colour_whatever_list_it_is_in():
    names = list(MODELS) + ["lnln w/o DMC", "flat bottleneck", "augmented baseline", "mystery model"]
    alone = {n: viz.model_palette([n])[n] for n in names}
    for perm in (names, names[::-1], names[3:] + names[:3]):
        assert viz.model_palette(perm) == alone
    assert viz.model_palette(["tfn"])["tfn"] == viz.model_palette(["mult", "tfn"])["tfn"] == viz.model_color("tfn")


def test_variants_take_their_parents_colour_and_unknown_names_a_neutral_grey():
    assert viz.model_color("lnln w/o DMML") == viz.model_color("lnln")
    assert viz.model_color("tfn + LNLN training") == viz.model_color("tfn")
    assert viz.model_color("w/o temporal alignment") == viz.model_color("dashfusion")
    assert viz.model_style("lnln w/o DMC")["linestyle"] != "-"
    styles = {n: viz.model_style(n) for n, p in viz.VARIANTS.items() if p == "dashfusion"}
    assert len({(s["marker"], s["linestyle"]) for s in styles.values()}) == len(styles)
    for name in ("augmented baseline", "something new", "tfnx"):
        r, g, b = to_rgb(viz.model_color(name))
        assert r == g == b and name not in viz.MODELS, name       # a grey
        assert viz.model_color(name) == viz.model_color(name)


def test_other_categories_have_their_own_colours():
    for c in viz.OTHER_COLORS:
        assert all(distance(c, m) >= 10 for m in MODALITIES.values()), c


# ---------------------------------------------------------------------------------------------
# Figure helpers
# ---------------------------------------------------------------------------------------------

def test_heatmap_has_a_colour_bar_and_no_grid():
    viz.setup()
    fig, ax = plt.subplots()
    viz.heatmap(np.arange(12).reshape(3, 4), ax=ax, label="weight")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "weight"
    assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
    fig2, ax2 = plt.subplots()
    viz.heatmap(np.array([[0, 1], [1, 0]]), ax=ax2, categories=["off", "on"], colors=["0.8", "0.2"])
    assert [t.get_text() for t in fig2.axes[1].get_yticklabels()] == ["off", "on"]
    plt.close("all")


def test_ranking_dots_draw_dots_not_bars_best_on_top():
    fig, ax = plt.subplots()
    viz.ranking_dots({"tfn": [0.7, 0.72, 0.74], "mult": [0.8, 0.81, 0.79], "text_only": 0.6}, "acc", ax=ax)
    assert not ax.patches                                                   # no bars
    assert [t.get_text() for t in ax.get_yticklabels()][::-1] == ["mult", "tfn", "text_only"]
    assert ax.get_xlabel() == "acc" and ax.get_ylabel()
    colors = {tuple(np.round(line.get_color() if isinstance(line.get_color(), tuple) else to_rgb(line.get_color()), 3))
              for line in ax.lines}
    assert tuple(np.round(to_rgb(viz.model_color("mult")), 3)) in colors
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# Chapter code
# ---------------------------------------------------------------------------------------------
ALLOWED_COLOURS = {"k", "black", "w", "white", "none"}           # and greys written as "0.0".."1.0"
ALLOWED_COLORMAPS = {"viridis", "cividis", "Greys"}
COLOUR_KEYWORDS = {"color", "colors", "c", "fc", "ec", "facecolor", "edgecolor", "mfc", "mec",
                   "markerfacecolor", "markeredgecolor", "palette"}


def code_cells():
    for nb in CHAPTERS:
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "code":
                yield f"{nb.stem} cell {i}", "".join(cell["source"])


def colour_problems(where: str, source: str) -> list[str]:
    """Hard-coded hex colours anywhere, named colours or colormaps in plotting keywords."""
    problems = [f"{where}: hex colour {h}" for h in re.findall(r"""["'](#[0-9A-Fa-f]{3,8})["']""", source)]
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))]
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.keyword) or node.arg is None:
            continue
        values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
        for v in values:
            if not (isinstance(v, ast.Constant) and isinstance(v.value, str)):
                continue
            s = v.value
            if node.arg in ("cmap", "colormap") and s not in ALLOWED_COLORMAPS:
                problems.append(f"{where}: colormap {s!r} (use viz.SEQUENTIAL or viz.heatmap)")
            elif node.arg in COLOUR_KEYWORDS and s not in ALLOWED_COLOURS and not re.fullmatch(r"0?\.\d+|[01](\.0)?", s):
                problems.append(f"{where}: colour {s!r} in {node.arg}= (use the viz registry)")
    return problems


def test_the_colour_check_catches_hard_coded_colours():
    for bad in ('ax.plot(x, y, color="#e377c2")', 'df.plot.barh(colormap="Set2")', 'ax.bar(x, y, color=["tab:blue", "0.5"])',
                'ax.imshow(a, cmap="PiYG")', 'sns.lineplot(palette="tab10")', 'box(ax, 0, 0, 1, 1, "x", "#fde0c5")'):
        assert colour_problems("x", bad), bad
    assert colour_problems("x", 'ax.axhline(0, color="0.5")\nax.plot(x, y, color=viz.model_color("tfn"))') == []


def test_chapters_take_colours_from_the_registry():
    problems = [p for where, src in code_cells() for p in colour_problems(where, src)]
    assert not problems, "\n".join(problems)


def test_chapter_heatmaps_have_colour_bars():
    """Chapters draw images through viz.heatmap / viz.pattern_heatmap (colour bar, no grid) or
    add a colour bar themselves."""
    problems = []
    for where, src in code_cells():
        raw = re.findall(r"(?<!viz)\.(imshow|heatmap|pcolormesh|matshow)\(", src) + re.findall(r"\bsns\.heatmap\(", src)
        if raw and "colorbar" not in src:
            problems.append(f"{where}: {raw[0]} without a colour bar (use viz.heatmap)")
        if re.search(r"(?<![\w.])c=.*cmap=", src) and "colorbar" not in src:
            problems.append(f"{where}: a scatter coloured by a value without a colour bar")
    assert not problems, "\n".join(problems)


def test_the_heatmap_check_can_fail():
    assert re.findall(r"(?<!viz)\.(imshow|heatmap|pcolormesh|matshow)\(", "ax.imshow(w)")
    assert not re.findall(r"(?<!viz)\.(imshow|heatmap|pcolormesh|matshow)\(", "viz.heatmap(w, ax=ax)")


CUT_AXIS = re.compile(r"set_[xy]lim\((?!\s*(0|0\.0|left=0|bottom=0)\s*[,)])")


def test_no_bar_chart_has_a_cut_axis():
    """A bar's length is read as its value: a cell that draws bars sets no axis limit that does
    not start at 0 (rankings are dot plots, viz.ranking_dots)."""
    problems = [where for where, src in code_cells() if re.search(r"\.barh?\(", src) and CUT_AXIS.search(src)]
    assert not problems, f"bar charts with a cut axis: {problems}"


def test_the_cut_axis_check_can_fail():
    assert CUT_AXIS.search("ax.set_xlim(0.6, 0.9)") and CUT_AXIS.search("ax.set_ylim(lo - 0.1, 1)")
    assert not CUT_AXIS.search("ax.set_xlim(0, 1)") and not CUT_AXIS.search("ax.set_ylim(bottom=0)")
