"""Read a study's finished runs from their TensorBoard event files and write tables and seed-band plots.

Per run: final and best (lowest) val loss / ppl, tokens until val loss first reaches the study's
``target_loss`` (first validation point at or below it x tokens per optimizer step), and per MoE layer
the mean over the run's logged points of the router-gradient fidelity and of the load-balance metrics.
Per cell: mean ± sample standard deviation of each over seeds. A run resumed after a kill logs to a
new TensorBoard version; its curve is the versions joined in time order, each later version replacing
the earlier ones' points from its first logged step on (the steps re-done after the checkpoint).
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_moe.errors import UserInputError
from lit_moe.study.runner import FINISHED, is_finished
from lit_moe.study.spec import Study

# Tag names as the LanguageModelingModule logs them; ``{layer}`` is the MoE layer's block index.
TAGS = {
    "val_loss": "val/loss",
    "val_ppl": "val/ppl",
    "fidelity": "moe/layer{layer}/grad_fidelity_cos",
    "max_load": "moe/layer{layer}/max_load",
    "cv": "moe/layer{layer}/cv",
}
LAYER_METRICS = ("fidelity", "max_load", "cv")
# Written once at step 0 of every version by TensorBoardLogger.log_hyperparams; not a training metric.
IGNORED_TAGS = ("hp_metric",)
# Metrics measured only every N steps but logged every ``log_every_n_steps``: Lightning writes the last
# measured value again at log steps without a new measurement, so an exact repeat of the previous
# point is dropped (each measurement counts once in a mean).
SPARSE_METRICS = ("fidelity",)
# Lightning logs at the 0-based index of the optimizer step just taken: a point at step s was measured
# after s + 1 optimizer steps, i.e. (s + 1) x tokens per step tokens.
STEP_OFFSET = 1

Curve = list[tuple[int, float]]  # (step, value), steps increasing


def layer_tag_regex(metric: str) -> re.Pattern:
    """``TAGS[metric]`` with ``{layer}`` as a captured integer."""
    prefix, suffix = TAGS[metric].split("{layer}")
    return re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")


def read_scalars(run_dir: Path) -> dict[str, Curve]:
    """Every scalar tag of a run, its TensorBoard versions joined (see the module docstring)."""
    accumulators = []
    for folder in sorted({p.parent for p in run_dir.glob("**/events.out.tfevents.*")}):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 1, "images": 1,
                                                              "tensors": 1, "compressedHistograms": 1})
        events.Reload()
        scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
                   if tag not in IGNORED_TAGS}
        if scalars:
            accumulators.append((events.FirstEventTimestamp(), scalars))
    merged: dict[str, Curve] = {}
    for _, scalars in sorted(accumulators, key=lambda item: item[0]):
        first_step = min(points[0][0] for points in scalars.values() if points)
        merged = {tag: [(s, v) for s, v in points if s < first_step] for tag, points in merged.items()}
        for tag, points in scalars.items():
            merged.setdefault(tag, []).extend(points)
    return {tag: sorted(points) for tag, points in merged.items() if points}


def resolved_config(run_dir: Path) -> Optional[dict]:
    """The newest ``config.yaml`` a run saved (LightningCLI writes one per launch)."""
    configs = list(run_dir.glob("**/config.yaml"))
    if not configs:
        return None
    return yaml.safe_load(max(configs, key=lambda p: p.stat().st_mtime_ns).read_text())


def tokens_per_step(config: Optional[dict]) -> Optional[int]:
    """batch_size x seq_len x accumulate_grad_batches x devices x num_nodes from a resolved config
    (None when the data module has no ``batch_size``/``seq_len`` or the device count is not explicit)."""
    if not config:
        return None
    data = (config.get("data") or {}).get("init_args") or {}
    trainer = config.get("trainer") or {}
    devices = trainer.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    elif isinstance(devices, str):
        if devices.isdigit():
            devices = int(devices)
        elif devices == "auto" and trainer.get("accelerator") == "cpu":
            devices = 1
        else:
            return None
    if not isinstance(devices, int) or devices < 1:
        return None
    batch, seq_len = data.get("batch_size"), data.get("seq_len")
    if not isinstance(batch, int) or not isinstance(seq_len, int):
        return None
    accumulate = trainer.get("accumulate_grad_batches") or 1
    return batch * seq_len * int(accumulate) * devices * int(trainer.get("num_nodes") or 1)


def first_reaching(curve: Curve, target: float) -> Optional[int]:
    """The first step whose value is at or below ``target`` (None: never)."""
    return next((step for step, value in curve if value <= target), None)


def tokens_at(step: int, tokens_per_step: Optional[int]) -> Optional[int]:
    """Tokens trained on when a point was logged at ``step`` (see STEP_OFFSET)."""
    return None if tokens_per_step is None else (step + STEP_OFFSET) * tokens_per_step


def distinct_measurements(points: Curve) -> Curve:
    """``points`` without exact repeats of the previous value (see SPARSE_METRICS)."""
    return [p for i, p in enumerate(points) if i == 0 or p[1] != points[i - 1][1]]


@dataclass
class RunResult:
    """One finished run's numbers (None where the run logged no such tag)."""

    cell: str
    seed: int
    tokens_per_step: Optional[int]
    val_loss: Curve
    val_ppl: Curve
    layers: dict[str, dict[int, float]]  # metric -> layer -> mean over the run's points
    wall_s: Optional[float]
    cpu_s: Optional[float]
    target_loss: Optional[float]

    @property
    def final_loss(self) -> Optional[float]:
        return self.val_loss[-1][1] if self.val_loss else None

    @property
    def best_loss(self) -> Optional[float]:
        return min(v for _, v in self.val_loss) if self.val_loss else None

    @property
    def final_ppl(self) -> Optional[float]:
        return self.val_ppl[-1][1] if self.val_ppl else None

    @property
    def best_ppl(self) -> Optional[float]:
        return min(v for _, v in self.val_ppl) if self.val_ppl else None

    @property
    def tokens_to_target(self) -> Optional[int]:
        if self.target_loss is None or self.tokens_per_step is None:
            return None
        step = first_reaching(self.val_loss, self.target_loss)
        return None if step is None else tokens_at(step, self.tokens_per_step)

    def layer_mean(self, metric: str) -> Optional[float]:
        values = list(self.layers.get(metric, {}).values())
        return statistics.fmean(values) if values else None


def load_run(study: Study, cell: str, seed: int) -> RunResult:
    """Read one run's event files, resolved config and finished marker."""
    run_dir = study.root / cell / f"seed{seed}"
    scalars = read_scalars(run_dir)
    layers: dict[str, dict[int, float]] = {}
    for metric in LAYER_METRICS:
        pattern = layer_tag_regex(metric)
        for tag, points in scalars.items():
            match = pattern.match(tag)
            if match:
                kept = distinct_measurements(points) if metric in SPARSE_METRICS else points
                layers.setdefault(metric, {})[int(match.group(1))] = statistics.fmean(v for _, v in kept)
        layers[metric] = dict(sorted(layers.get(metric, {}).items()))
    marker = run_dir / FINISHED
    finished = json.loads(marker.read_text()) if marker.is_file() else {}
    return RunResult(cell=cell, seed=seed, tokens_per_step=tokens_per_step(resolved_config(run_dir)),
                     val_loss=scalars.get(TAGS["val_loss"], []), val_ppl=scalars.get(TAGS["val_ppl"], []),
                     layers=layers, wall_s=finished.get("wall_s"), cpu_s=finished.get("cpu_s"),
                     target_loss=study.target_loss)


@dataclass
class Stat:
    """Mean and sample standard deviation over the seeds that have a value (std None below 2 values)."""

    values: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> Optional[float]:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def text(self, digits: int = 3, scale: float = 1.0) -> str:
        if self.mean is None:
            return "–"
        mean = f"{self.mean / scale:.{digits}f}"
        return mean if self.std is None else f"{mean} ± {self.std / scale:.{digits}f}"


def stat(values: Sequence[Optional[float]]) -> Stat:
    return Stat([float(v) for v in values if v is not None and math.isfinite(v)])


# Per-run quantities aggregated per cell: column name -> how to read it from a RunResult.
RUN_FIELDS = {
    "final_val_loss": lambda r: r.final_loss,
    "best_val_loss": lambda r: r.best_loss,
    "final_val_ppl": lambda r: r.final_ppl,
    "best_val_ppl": lambda r: r.best_ppl,
    "tokens_to_target": lambda r: r.tokens_to_target,
    "fidelity": lambda r: r.layer_mean("fidelity"),
    "max_load": lambda r: r.layer_mean("max_load"),
    "cv": lambda r: r.layer_mean("cv"),
    "wall_s": lambda r: r.wall_s,
    "cpu_s": lambda r: r.cpu_s,
}


# Paired by seed against a baseline cell: column -> per-seed comparison (None when either side lacks it).
PAIRED_FIELDS = {
    "d_final_val_loss": lambda r, b: _minus(r.final_loss, b.final_loss),
    "d_best_val_loss": lambda r, b: _minus(r.best_loss, b.best_loss),
    "d_final_val_ppl": lambda r, b: _minus(r.final_ppl, b.final_ppl),
    "tokens_ratio": lambda r, b: (r.tokens_to_target / b.tokens_to_target
                                  if r.tokens_to_target is not None and b.tokens_to_target else None),
    "d_fidelity": lambda r, b: _minus(r.layer_mean("fidelity"), b.layer_mean("fidelity")),
}


def _minus(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def paired_stats(cells: dict[str, list[RunResult]], baselines: dict[str, str]) -> dict[str, tuple[str, int, dict]]:
    """cell -> (baseline, seeds both finished, PAIRED_FIELDS column -> Stat over those seeds)."""
    paired = {}
    for cell, baseline in baselines.items():
        if cell not in cells or baseline not in cells:
            continue
        base = {r.seed: r for r in cells[baseline]}
        pairs = [(r, base[r.seed]) for r in cells[cell] if r.seed in base]
        paired[cell] = (baseline, len(pairs), {name: stat([f(r, b) for r, b in pairs])
                                               for name, f in PAIRED_FIELDS.items()})
    return paired


def collect(study: Study) -> tuple[list[RunResult], list[str]]:
    """The finished runs' results (cells in study order, seeds inner) and the keys of runs not finished."""
    results, pending = [], []
    for run in study.runs():
        if is_finished(study, run):
            results.append(load_run(study, run.cell.name, run.seed))
        else:
            pending.append(run.key)
    return results, pending


def by_cell(results: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    cells: dict[str, list[RunResult]] = {}
    for result in results:
        cells.setdefault(result.cell, []).append(result)
    return cells


def cell_stats(runs: Sequence[RunResult]) -> dict[str, Stat]:
    """Every RUN_FIELDS column and every per-layer metric (``fidelity_L0``...) over one cell's seeds."""
    stats = {name: stat([read(r) for r in runs]) for name, read in RUN_FIELDS.items()}
    for metric in LAYER_METRICS:
        for layer in sorted({layer for r in runs for layer in r.layers.get(metric, {})}):
            stats[f"{metric}_L{layer}"] = stat([r.layers.get(metric, {}).get(layer) for r in runs])
    return stats


def write_report(study: Study, out_dir: Optional[Path] = None) -> dict[str, Path]:
    """Write ``report.md``, ``cells.csv``, ``runs.csv``, ``curves.csv`` and the plots to ``out_dir``
    (default ``<root>/report``); returns the written paths by name."""
    try:
        from lit_moe.study.plots import cell_panels_figure, seed_band_figure  # noqa: PLC0415 (import cycle, matplotlib)
    except ImportError as error:
        raise UserInputError(f"the report's plots need matplotlib ({error}); install it: pip install matplotlib "
                             f"(it is in the project's [dev] and [video] extras)") from None

    out_dir = Path(out_dir) if out_dir is not None else study.root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    results, pending = collect(study)
    cells = by_cell(results)
    paths = {"markdown": out_dir / "report.md", "cells_csv": out_dir / "cells.csv",
             "runs_csv": out_dir / "runs.csv", "curves_csv": out_dir / "curves.csv"}
    summaries = {cell: cell_stats(runs) for cell, runs in cells.items()}
    _write_cells_csv(paths["cells_csv"], cells, summaries)
    _write_runs_csv(paths["runs_csv"], results)
    _write_curves_csv(paths["curves_csv"], results)
    paired = paired_stats(cells, study.baselines)
    if paired:
        paths["paired_csv"] = out_dir / "paired.csv"
        _write_paired_csv(paths["paired_csv"], paired)
    for metric, label in (("val_loss", "val/loss"), ("val_ppl", "val/ppl")):
        curves = {cell: [getattr(r, metric) for r in runs] for cell, runs in cells.items()}
        tokens = {cell: runs[0].tokens_per_step for cell, runs in cells.items()}
        if any(any(seed_curves) for seed_curves in curves.values()):
            paths[metric] = out_dir / f"{metric}.png"
            seed_band_figure(curves, tokens, label).savefig(paths[metric], dpi=110)
            paths[f"{metric}_cells"] = out_dir / f"{metric}_cells.png"
            cell_panels_figure(curves, tokens, label).savefig(paths[f"{metric}_cells"], dpi=90)
    paths["markdown"].write_text(_markdown(study, cells, summaries, pending, paths, out_dir)
                                 + _paired_markdown(paired, study.target_loss))
    return paths


def _write_cells_csv(path: Path, cells: dict[str, list[RunResult]], summaries: dict[str, dict[str, Stat]]) -> None:
    columns = sorted({name for stats in summaries.values() for name in stats}, key=_column_order)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["cell", "seeds", *[f"{c}_{part}" for c in columns for part in ("mean", "std", "n")]])
        for cell, stats in summaries.items():
            row: list[object] = [cell, len(cells[cell])]
            for column in columns:
                s = stats.get(column, Stat())
                row += [_csv(s.mean), _csv(s.std), s.n]
            writer.writerow(row)


def _write_paired_csv(path: Path, paired: dict[str, tuple[str, int, dict]]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["cell", "baseline", "paired_seeds", *[f"{c}_{part}" for c in PAIRED_FIELDS
                                                                for part in ("mean", "std", "n")]])
        for cell, (baseline, n, stats) in paired.items():
            writer.writerow([cell, baseline, n, *[v for c in PAIRED_FIELDS
                                                   for v in (_csv(stats[c].mean), _csv(stats[c].std), stats[c].n)]])


def _paired_markdown(paired: dict[str, tuple[str, int, dict]], target: Optional[float]) -> str:
    if not paired:
        return ""
    lines = ["", "## Paired by seed against a baseline", "",
             "Per seed: this cell minus its baseline at the same seed (same data order and, where parameter "
             "shapes agree, the same initialisation); mean ± "
             "sample std over the seeds both finished. Negative Δ loss: better than the baseline. Token ratio: tokens "
             f"to val/loss ≤ {target} of the cell over the baseline's (< 1: fewer tokens).", "",
             "| cell | baseline | seeds | Δ final val/loss | Δ best val/loss | Δ final val/ppl | token ratio "
             "| Δ fidelity |", "|---|---|---|---|---|---|---|---|"]
    for cell, (baseline, n, stats) in paired.items():
        lines.append(f"| `{cell}` | `{baseline}` | {n} | {stats['d_final_val_loss'].text(4)} | "
                     f"{stats['d_best_val_loss'].text(4)} | {stats['d_final_val_ppl'].text(3)} | "
                     f"{stats['tokens_ratio'].text(3)} | {stats['d_fidelity'].text(3)} |")
    return "\n".join(lines) + "\n"


def _write_runs_csv(path: Path, results: Sequence[RunResult]) -> None:
    layer_columns = sorted({f"{m}_L{layer}" for r in results for m in LAYER_METRICS for layer in r.layers.get(m, {})},
                           key=_column_order)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["cell", "seed", "tokens_per_step", *RUN_FIELDS, *layer_columns])
        for r in results:
            layer_values = []
            for column in layer_columns:
                metric, layer = column.rsplit("_L", 1)
                layer_values.append(_csv(r.layers.get(metric, {}).get(int(layer))))
            writer.writerow([r.cell, r.seed, _csv(r.tokens_per_step), *[_csv(read(r)) for read in RUN_FIELDS.values()],
                             *layer_values])


def _write_curves_csv(path: Path, results: Sequence[RunResult]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["cell", "seed", "step", "tokens", "val_loss", "val_ppl"])
        for r in results:
            ppl = dict(r.val_ppl)
            for step, loss in r.val_loss:
                writer.writerow([r.cell, r.seed, step, _csv(tokens_at(step, r.tokens_per_step)), _csv(loss),
                                 _csv(ppl.get(step))])


def _tokens_text(tokens: Stat) -> str:
    """Token counts in M or k, whichever reads best for the mean."""
    if tokens.mean is None:
        return "–"
    scale, unit = (1e6, "M") if tokens.mean >= 1e6 else (1e3, "k") if tokens.mean >= 1e3 else (1.0, "")
    return tokens.text(2 if unit else 0, scale) + unit


def results_of(cells: dict[str, list[RunResult]]) -> list[RunResult]:
    return [r for runs in cells.values() for r in runs]


def _hours(seconds: Sequence[Optional[float]]) -> str:
    known = [s for s in seconds if s is not None]
    return f"{sum(known) / 3600:.2f} h" if known else "–"


def _column_order(name: str) -> tuple:
    base, _, layer = name.partition("_L")
    order = list(RUN_FIELDS) + list(LAYER_METRICS)
    return (order.index(base) if base in order else len(order), int(layer) if layer.isdigit() else -1, name)


def _csv(value: object) -> object:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def _markdown(study: Study, cells: dict[str, list[RunResult]], summaries: dict[str, dict[str, Stat]],
              pending: list[str], paths: dict[str, Path], out_dir: Path) -> str:
    total = len(study.runs())
    target = "–" if study.target_loss is None else f"{study.target_loss:g}"
    plural = "s" if len(study.seeds) != 1 else ""
    lines = [f"# Study `{study.name}`", "",
             f"{total - len(pending)} of {total} runs finished ({len(study.cells)} cells x {len(study.seeds)} "
             f"seed{plural} "
             f"{list(study.seeds)}, {study.steps} steps each); report written {time.strftime('%Y-%m-%d %H:%M %Z')} "
             f"from `{study.root}`. Summed over the finished runs: {_hours([r.wall_s for r in results_of(cells)])} "
             f"wall, {_hours([r.cpu_s for r in results_of(cells)])} CPU (user + system).", "",
             "Mean ± sample std over the finished seeds (`n` of them). Fidelity: mean over logged steps of "
             "`moe/layer{i}/grad_fidelity_cos` (each measurement once), per layer, then over layers; load: the same "
             "for `max_load` and `cv`. "
             f"Tokens to target: tokens until val/loss first ≤ {target} (validation points only; `k/n` seeds "
             "reached it).", "",
             "| cell | n | final val/loss | best val/loss | final val/ppl | best val/ppl | tokens to target "
             "| fidelity per layer | fidelity | max_load | cv | wall s/run | CPU s/run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell, stats in summaries.items():
        n = len(cells[cell])
        layers = sorted(k for k in stats if k.startswith("fidelity_L"))
        per_layer = " / ".join(f"{stats[k].mean:.3f}" for k in layers if stats[k].mean is not None) or "–"
        reached = stats["tokens_to_target"]
        tokens = f"{_tokens_text(reached)} ({reached.n}/{n})" if study.target_loss is not None else "–"
        lines.append(f"| `{cell}` | {n} | {stats['final_val_loss'].text(4)} | {stats['best_val_loss'].text(4)} | "
                     f"{stats['final_val_ppl'].text(3)} | {stats['best_val_ppl'].text(3)} | {tokens} | {per_layer} | "
                     f"{stats['fidelity'].text(3)} | {stats['max_load'].text(3)} | {stats['cv'].text(3)} | "
                     f"{stats['wall_s'].text(0)} | {stats['cpu_s'].text(0)} |")
    if not summaries:
        lines.append("| (no finished runs yet) | | | | | | | | | | | | |")
    lines.append("")
    for name in ("val_loss", "val_ppl", "val_loss_cells", "val_ppl_cells"):
        if name in paths:
            lines.append(f"![{name}]({paths[name].relative_to(out_dir)})")
    if pending:
        lines += ["", f"Not finished ({len(pending)}): " + ", ".join(f"`{key}`" for key in pending)]
    lines += ["", f"Tables: `{paths['cells_csv'].name}` (per cell, every column incl. per-layer mean/std/n), "
              f"`{paths['runs_csv'].name}` (per run), `{paths['curves_csv'].name}` (val curves). "
              f"TensorBoard: `tensorboard --logdir {study.root}`.", ""]
    return "\n".join(lines)
