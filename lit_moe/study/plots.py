"""Seed-band plots of validation curves: mean over seeds as a line, ± one sample std shaded.

Built as ``matplotlib.figure.Figure`` objects (no pyplot, no global figure state); callers save them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Optional

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lit_moe.study.report import STEP_OFFSET, Curve


def seed_band(curves: Sequence[Curve]) -> tuple[list[int], list[float], list[Optional[float]]]:
    """Steps logged by every seed, the mean over seeds there and the sample std (None with one seed)."""
    curves = [c for c in curves if c]
    if not curves:
        return [], [], []
    values = [dict(c) for c in curves]
    steps = sorted(set.intersection(*(set(v) for v in values)))
    means = [statistics.fmean(v[s] for v in values) for s in steps]
    stds = [statistics.stdev(v[s] for v in values) if len(values) >= 2 else None for s in steps]
    return steps, means, stds


def _draw(ax: Axes, curves: Sequence[Curve], tokens_per_step: Optional[int], label: str, color: object,
          seeds_too: bool) -> None:
    steps, means, stds = seed_band(curves)
    if not steps:
        return
    def x_of(step: int) -> float:  # tokens (millions) when known, else the optimizer steps taken
        return (step + STEP_OFFSET) * (tokens_per_step / 1e6 if tokens_per_step else 1)

    x = [x_of(s) for s in steps]
    n = len([c for c in curves if c])
    ax.plot(x, means, color=color, label=f"{label} (n={n})", linewidth=1.6, marker="o", markersize=2.5)
    if stds[0] is not None:
        ax.fill_between(x, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=color, alpha=0.25, linewidth=0)
    if seeds_too:
        for curve in curves:
            ax.plot([x_of(s) for s, _ in curve], [v for _, v in curve], color=color, alpha=0.45, linewidth=0.7)


def _x_label(tokens: dict[str, Optional[int]]) -> str:
    return "tokens (M)" if tokens and all(tokens.values()) else "step"


def seed_band_figure(curves: dict[str, Sequence[Curve]], tokens_per_step: dict[str, Optional[int]],
                     ylabel: str) -> Figure:
    """All cells on one axes: per cell the seed mean and its ± std band.

    Args:
        curves: cell -> one curve per seed.
        tokens_per_step: cell -> tokens per optimizer step (x axis in tokens when every cell has it).
        ylabel: The metric, e.g. ``val/loss``.
    """
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    ax = figure.subplots()
    in_tokens = _x_label(tokens_per_step) != "step"
    colors = _colors(len(curves))
    for (cell, seeds), color in zip(curves.items(), colors):
        _draw(ax, seeds, tokens_per_step.get(cell) if in_tokens else None, cell, color, seeds_too=False)
    ax.set_xlabel(_x_label(tokens_per_step))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel}: mean over seeds ± 1 std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    _zoom(ax, curves)
    return figure


def cell_panels_figure(curves: dict[str, Sequence[Curve]], tokens_per_step: dict[str, Optional[int]],
                       ylabel: str, columns: int = 3) -> Figure:
    """One panel per cell with its seeds (thin) and their mean ± std band, on shared axes."""
    columns = max(1, min(columns, len(curves)))
    rows = max(1, math.ceil(len(curves) / columns))
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    in_tokens = _x_label(tokens_per_step) != "step"
    for ax, (cell, seeds), color in zip(axes, curves.items(), _colors(len(curves))):
        _draw(ax, seeds, tokens_per_step.get(cell) if in_tokens else None, cell, color, seeds_too=True)
        ax.set_title(cell, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    _zoom(axes[0], curves)
    figure.supxlabel(_x_label(tokens_per_step))
    figure.supylabel(ylabel)
    return figure


def _colors(n: int) -> list[object]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _zoom(ax: Axes, curves: dict[str, Sequence[Curve]]) -> None:
    """Clip the y range to the last 80% of the curves, where cells differ (the first points dwarf them)."""
    tails = [v for seeds in curves.values() for c in seeds for _, v in c[len(c) // 5:]]
    if len(tails) >= 2 and max(tails) > min(tails):
        pad = 0.08 * (max(tails) - min(tails))
        ax.set_ylim(min(tails) - pad, max(tails) + pad)
