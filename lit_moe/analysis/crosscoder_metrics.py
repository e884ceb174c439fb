"""Evaluation of a crosscoder: FVE per model, L0, density and dead latents, relative decoder norms,
feature classes, top-activating token contexts.

Shape legend: B batch, M models, D width, L latents, F sampled features, n contexts per feature.
"""

from __future__ import annotations

import numpy as np
import torch

from lit_moe.analysis.crosscoder import SparseCodes

SHARED_DESIGNATED = "shared (designated)"
SHARED_LEARNED = "shared (learned)"
OTHER = "mixed"


def fve(error_sq_M: torch.Tensor, sum_MD: torch.Tensor, sum_sq_M: torch.Tensor, count: int) -> torch.Tensor:
    """1 - sum ||a - â||² / sum ||a - mean(a)||², per model, from running sums."""
    spread_M = sum_sq_M - sum_MD.pow(2).sum(-1) / max(count, 1)
    return 1.0 - error_sq_M / spread_M.clamp_min(1e-20)


def feature_classes(relative_norm_L: torch.Tensor, num_shared: int, model_names: list[str],
                    exclusive: float = 0.1, shared_band: float = 0.1) -> list[str]:
    """Class per latent: designated shared; r < ``exclusive`` -> A-only; r > 1 - ``exclusive`` -> B-only;
    |r - 0.5| <= ``shared_band`` -> learned shared; otherwise mixed (two models)."""
    first, last = model_names[0], model_names[-1]
    classes = []
    for index, r in enumerate(relative_norm_L.tolist()):
        if index < num_shared:
            classes.append(SHARED_DESIGNATED)
        elif r < exclusive:
            classes.append(f"{first}-only")
        elif r > 1 - exclusive:
            classes.append(f"{last}-only")
        elif abs(r - 0.5) <= shared_band:
            classes.append(SHARED_LEARNED)
        else:
            classes.append(OTHER)
    return classes


class CrosscoderEvaluation:
    """Running sums over an evaluation pass; ``results()`` gives the metrics."""

    def __init__(self, num_models: int, d_in: int, dict_size: int, tracked_features: torch.Tensor,
                 contexts_per_feature: int) -> None:
        self.count = 0
        self.error_sq_M = torch.zeros(num_models, dtype=torch.float64)
        self.sum_MD = torch.zeros(num_models, d_in, dtype=torch.float64)
        self.sum_sq_M = torch.zeros(num_models, dtype=torch.float64)
        self.active_L = torch.zeros(dict_size, dtype=torch.float64)
        self.tracked_F = tracked_features.long()
        self.slot_of_L = torch.full((dict_size,), -1, dtype=torch.long)
        self.slot_of_L[self.tracked_F] = torch.arange(self.tracked_F.numel())
        self.top_values_Fn = torch.full((self.tracked_F.numel(), contexts_per_feature), -1.0)
        self.top_rows_Fn = torch.full((self.tracked_F.numel(), contexts_per_feature), -1, dtype=torch.long)

    @torch.no_grad()
    def update(self, a_BMD: torch.Tensor, recon_BMD: torch.Tensor, codes: SparseCodes, rows_B: torch.Tensor) -> None:
        a_BMD, recon_BMD = a_BMD.double().cpu(), recon_BMD.double().cpu()
        self.count += a_BMD.shape[0]
        self.error_sq_M += (a_BMD - recon_BMD).pow(2).sum((0, 2))
        self.sum_MD += a_BMD.sum(0)
        self.sum_sq_M += a_BMD.pow(2).sum((0, 2))
        cols_N, values_N = codes.cols_N.cpu(), codes.values_N.detach().float().cpu()
        self.active_L += torch.bincount(cols_N[values_N > 0], minlength=self.active_L.numel()).double()
        if self.tracked_F.numel():
            slot_N = self.slot_of_L[cols_N]
            keep_N = slot_N >= 0
            dense_BF = torch.zeros(codes.batch, self.tracked_F.numel())
            dense_BF[codes.rows_N.cpu()[keep_N], slot_N[keep_N]] = values_N[keep_N]
            values_Fx = torch.cat([self.top_values_Fn, dense_BF.t()], dim=1)
            rows_Fx = torch.cat([self.top_rows_Fn, rows_B.cpu().expand(self.tracked_F.numel(), -1)], dim=1)
            top = values_Fx.topk(self.top_values_Fn.shape[1], dim=1)
            self.top_values_Fn, self.top_rows_Fn = top.values, rows_Fx.gather(1, top.indices)

    def results(self) -> dict[str, torch.Tensor]:
        density_L = self.active_L / max(self.count, 1)
        return {"fve_M": fve(self.error_sq_M, self.sum_MD, self.sum_sq_M, self.count),
                "l0": density_L.sum(), "density_L": density_L, "dead_fraction": (self.active_L == 0).double().mean()}


def log10_density_by_class(density_L: torch.Tensor, classes: list[str]) -> dict[str, np.ndarray]:
    """log10 P(f_i > 0) of every latent that fired, grouped by class (dead latents left out)."""
    out: dict[str, list[float]] = {}
    for density, name in zip(density_L.tolist(), classes):
        out.setdefault(name, [])
        if density > 0:
            out[name].append(float(np.log10(density)))
    return {name: np.asarray(values) for name, values in out.items()}


def sample_features(classes: list[str], per_class: int, alive_L: torch.Tensor | None = None) -> torch.Tensor:
    """``per_class`` latents of every class (deterministic): the first ones that are alive (fired
    recently in training), then the first dead ones if a class has too few alive latents."""
    chosen: dict[str, list[int]] = {}
    alive = alive_L.tolist() if alive_L is not None else [True] * len(classes)
    for wanted in (True, False):
        for index, name in enumerate(classes):
            if alive[index] == wanted and len(chosen.setdefault(name, [])) < per_class:
                chosen[name].append(index)
    return torch.tensor(sorted(i for values in chosen.values() for i in values), dtype=torch.long)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "⏎").replace("`", "'")


def contexts_markdown(evaluation: CrosscoderEvaluation, classes: list[str], relative_norm_L: torch.Tensor,
                      density_L: torch.Tensor, cache, tokenizer, context_tokens: int) -> str:
    """Markdown tables of the top-activating contexts of the tracked features (activating token in «»)."""
    lines = []
    for slot, feature in enumerate(evaluation.tracked_F.tolist()):
        lines.append(f"#### feature {feature}: {classes[feature]}, r = {float(relative_norm_L[feature]):.3f}, "
                     f"density = {float(density_L[feature]):.2e}")
        lines.append("| activation | domain | context |")
        lines.append("|---:|---|---|")
        shown = 0
        for value, row in zip(evaluation.top_values_Fn[slot].tolist(), evaluation.top_rows_Fn[slot].tolist()):
            if row < 0 or value <= 0:
                continue
            tokens, domain = cache.context(row, context_tokens)
            before = tokenizer.decode(tokens[:-1].tolist())
            token = tokenizer.decode(tokens[-1:].tolist())
            lines.append(f"| {value:.3f} | {cache.meta.domains[domain]} | {_escape(before)}«{_escape(token)}» |")
            shown += 1
        if shown == 0:
            lines.append("| - | - | (never active on the evaluation tokens) |")
        lines.append("")
    return "\n".join(lines)
