"""Accumulate MoE Lens results over batches and domains; write them as JSON and CSV tables.

Shape legend: E experts, R = 2 gate variants (plain, renormalised), M = K early-decoding depths.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import torch

from lit_moe.analysis.lens import VARIANTS, LensPass, coverage_count, perplexity


class _DomainTotals:
    def __init__(self, layer_indices: list[int], num_experts: int, top_k: int) -> None:
        self.tokens = 0
        self.counts = {i: torch.zeros(num_experts, dtype=torch.float64) for i in layer_indices}
        self.cos_sum = {i: torch.zeros(2, top_k, dtype=torch.float64) for i in layer_indices}
        self.agree_full = {i: torch.zeros(2, top_k, dtype=torch.float64) for i in layer_indices}
        self.agree_layer = {i: torch.zeros(2, top_k, dtype=torch.float64) for i in layer_indices}
        self.nll_sum = torch.zeros(2, top_k, dtype=torch.float64)
        self.nll_tokens = 0


class LensAccumulator:
    """Sums of routing counts, cosines, logit-lens agreements and NLLs per domain and MoE layer."""

    def __init__(self, layer_indices: list[int], num_experts: int, top_k: int) -> None:
        self.layer_indices = list(layer_indices)
        self.num_experts = num_experts
        self.top_k = top_k
        self.domains: dict[str, _DomainTotals] = {}

    def _domain(self, name: str) -> _DomainTotals:
        if name not in self.domains:
            self.domains[name] = _DomainTotals(self.layer_indices, self.num_experts, self.top_k)
        return self.domains[name]

    def add_pass(self, domain: str, lens: LensPass) -> None:
        totals = self._domain(domain)
        full_top1_T = lens.logits_BSV.argmax(-1).reshape(-1)
        totals.tokens += full_top1_T.numel()
        for index, record in lens.layers.items():
            totals.counts[index] += torch.bincount(record.expert_idx_TK.reshape(-1).cpu(),
                                                   minlength=self.num_experts).double()
            totals.cos_sum[index] += record.cos_RMT.double().sum(-1).cpu()
            totals.agree_full[index] += (record.top1_RMT == full_top1_T).double().sum(-1).cpu()
            same_layer_T = record.top1_RMT[0, -1]
            totals.agree_layer[index] += (record.top1_RMT == same_layer_T).double().sum(-1).cpu()

    def add_nll(self, domain: str, m: int, renormalise: bool, nll_sum: float, num_tokens: int) -> None:
        totals = self._domain(domain)
        totals.nll_sum[int(renormalise), m - 1] += nll_sum
        if m == 1 and not renormalise:
            totals.nll_tokens += num_tokens

    def report(self) -> dict:
        """Everything as plain Python (the JSON written next to the tables)."""
        out = {"num_experts": self.num_experts, "top_k": self.top_k, "moe_layers": self.layer_indices,
               "uniform_share": 1.0 / self.num_experts, "uniform_token_fraction": self.top_k / self.num_experts,
               "uniform_coverage_50": coverage_count(torch.ones(self.num_experts)), "domains": {}}
        for name, totals in self.domains.items():
            tokens = max(totals.tokens, 1)
            ppl = {variant: [perplexity(float(totals.nll_sum[r, m]), totals.nll_tokens) for m in range(self.top_k)]
                   for r, variant in enumerate(VARIANTS)}
            layers = {}
            for index in self.layer_indices:
                counts_E = totals.counts[index]
                shares_E = counts_E / max(float(counts_E.sum()), 1.0)
                layers[str(index)] = {
                    "shares": shares_E.tolist(),
                    "token_fraction": (counts_E / tokens).tolist(),
                    "coverage_50": coverage_count(shares_E),
                    "cos_to_topK": {v: (totals.cos_sum[index][r] / tokens).tolist() for r, v in enumerate(VARIANTS)},
                    "agree_full": {v: (totals.agree_full[index][r] / tokens).tolist() for r, v in enumerate(VARIANTS)},
                    "agree_layer_topK": {v: (totals.agree_layer[index][r] / tokens).tolist()
                                         for r, v in enumerate(VARIANTS)},
                }
            out["domains"][name] = {"tokens": totals.tokens, "perplexity": ppl, "layers": layers}
        return out


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_tables(report: dict, folder: str | Path) -> list[Path]:
    """lens.json and four tidy CSV tables (one row per measured value)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lens.json").write_text(json.dumps(report, indent=1))
    rows = defaultdict(list)
    uniform = report["uniform_share"]
    for domain, result in report["domains"].items():
        ppl = result["perplexity"]
        for variant in VARIANTS:
            for m, value in enumerate(ppl[variant], start=1):
                rows["perplexity"].append([domain, m, variant, value, value / ppl["plain"][-1] - 1.0])
        for layer, values in result["layers"].items():
            for expert, (share, fraction) in enumerate(zip(values["shares"], values["token_fraction"])):
                rows["routing_shares"].append([domain, layer, expert, share, fraction, share / uniform])
            rows["coverage"].append([domain, layer, values["coverage_50"], report["num_experts"],
                                     report["uniform_coverage_50"]])
            for variant in VARIANTS:
                for m in range(report["top_k"]):
                    rows["early_decoding"].append([domain, layer, m + 1, variant, values["cos_to_topK"][variant][m],
                                                   values["agree_full"][variant][m],
                                                   values["agree_layer_topK"][variant][m]])
    headers = {
        "perplexity": ["domain", "m", "gates", "perplexity", "increase_vs_topK"],
        "routing_shares": ["domain", "layer", "expert", "share", "token_fraction", "share_over_uniform"],
        "coverage": ["domain", "layer", "experts_for_50pct", "num_experts", "uniform_experts_for_50pct"],
        "early_decoding": ["domain", "layer", "m", "gates", "cos_to_topK", "top1_agree_full_model",
                           "top1_agree_layer_topK"],
    }
    paths = [folder / "lens.json"]
    for name, header in headers.items():
        _write_csv(folder / f"{name}.csv", header, rows[name])
        paths.append(folder / f"{name}.csv")
    return paths
