"""Matplotlib figures of the analyses, built as ``Figure`` objects (no pyplot global state), and
their conversion to images for TensorBoard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lit_moe.analysis.lens import VARIANTS


def figure_to_array(figure: Figure) -> np.ndarray:
    """RGB uint8 [H, W, 3] rendering of ``figure``."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(figure: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return Path(path)


def routing_heatmap(report: dict, domain: str) -> Figure:
    """Layers x experts: share of the domain's tokens routed to each expert (uniform: K/N)."""
    layers = report["domains"][domain]["layers"]
    names = list(layers)
    fractions_LE = np.array([layers[name]["token_fraction"] for name in names])
    figure = Figure(figsize=(max(4.0, 0.35 * fractions_LE.shape[1] + 2.5), 0.45 * len(names) + 1.8))
    axes = figure.add_subplot()
    image = axes.imshow(fractions_LE, aspect="auto", cmap="viridis", vmin=0.0)
    figure.colorbar(image, ax=axes, label="fraction of tokens")
    axes.set_xlabel("expert")
    axes.set_yticks(range(len(names)), [f"layer {n} (50%: {layers[n]['coverage_50']})" for n in names])
    axes.set_title(f"{domain}: routing share (uniform {report['uniform_token_fraction']:.3f})", fontsize=9)
    figure.tight_layout()
    return figure


def early_decoding_figure(report: dict) -> Figure:
    """Per layer: cos(H_1, H_K) and the logit-lens top-1 agreement of H_1 and H_K with the model."""
    figure = Figure(figsize=(9.0, 3.4))
    cos_axes, agree_axes = figure.subplots(1, 2)
    for domain, result in report["domains"].items():
        layers = list(result["layers"])
        xs = [int(name) for name in layers]
        for variant, style in zip(VARIANTS, ("-", "--")):
            cos = [result["layers"][n]["cos_to_topK"][variant][0] for n in layers]
            cos_axes.plot(xs, cos, style, marker="o", label=f"{domain} ({variant})")
            agree = [result["layers"][n]["agree_full"][variant][0] for n in layers]
            agree_axes.plot(xs, agree, style, marker="o", label=f"{domain} top-1 ({variant})")
        full = [result["layers"][n]["agree_full"]["plain"][-1] for n in layers]
        agree_axes.plot(xs, full, ":", marker="s", label=f"{domain} top-K")
    cos_axes.set(xlabel="layer", ylabel="cos(H_1, H_K)", title="top-1 vs all-K hidden state")
    ticks = report["moe_layers"]
    cos_axes.set_xticks(ticks)
    agree_axes.set_xticks(ticks)
    agree_axes.set(xlabel="layer", ylabel="agreement", title="logit lens top-1 token = model's", ylim=(0, 1.02))
    for axes in (cos_axes, agree_axes):
        axes.legend(fontsize=6)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def perplexity_figure(report: dict) -> Figure:
    """Perplexity per domain with every MoE layer restricted to its top-m experts."""
    figure = Figure(figsize=(4.8, 3.4))
    axes = figure.add_subplot()
    for domain, result in report["domains"].items():
        for variant, style in zip(VARIANTS, ("-", "--")):
            values = result["perplexity"][variant]
            axes.plot(range(1, len(values) + 1), values, style, marker="o", label=f"{domain} ({variant})")
    axes.set(xlabel="experts kept per token (m)", ylabel="perplexity", title="top-m perplexity")
    axes.set_xticks(range(1, report["top_k"] + 1))
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def histogram_figure(series: dict[str, np.ndarray], xlabel: str, title: str, bins: int = 30,
                     value_range: tuple[float, float] | None = None) -> Figure:
    """Overlaid histograms of named value sets (e.g. log10 feature density per feature class)."""
    figure = Figure(figsize=(5.0, 3.4))
    axes = figure.add_subplot()
    finite = [v[np.isfinite(v)] for v in series.values()]
    if value_range is None:
        everything = np.concatenate([v for v in finite if v.size] or [np.zeros(1)])
        value_range = (float(everything.min()), float(everything.max()) + 1e-6)
    for (name, _), values in zip(series.items(), finite):
        if values.size:
            axes.hist(values, bins=bins, range=value_range, alpha=0.55, label=f"{name} ({values.size})")
    axes.set(xlabel=xlabel, ylabel="features", title=title)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure
