"""Training-step time of the tiny config under each router (topk / default / expert_group / dense).

Shape legend: B batch, S sequence, V vocabulary.

One step = forward of the MoE transformer, cross-entropy + auxiliary losses, backward, gradient
clipping (1.0), AdamW step, and the per-step router-state update (Default-MoE EMA) - the work of a
Lightning training step without the Trainer's bookkeeping. The model is configs/moe/tiny.yaml's
(d=128, 4 blocks, 8 experts top-2, d_expert=256, 8 x 256 = 2,048 tokens a step; raw-byte vocabulary
of 256) under each backend given. Steps of the routers are interleaved (round robin) so that drift
of the shared machine hits them alike (the order rotates every round); the medians, the overhead
over TopK of the same backend from the medians, and the median of the per-round ratios to the same
round's TopK step (paired: robust to drift) are printed.

Usage: python benchmarks/train_step.py [--backends grouped_mm fused] [--steps 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lit_moe.model.config import MoETransformerConfig  # noqa: E402
from lit_moe.model.moe_layer import sum_stats  # noqa: E402
from lit_moe.model.transformer import MoETransformer  # noqa: E402

ROUTERS = ["topk", "default", "expert_group", "dense"]


def tiny_config(**overrides) -> tuple[MoETransformerConfig, int, int]:
    with open(os.path.join(ROOT, "configs", "moe", "tiny.yaml")) as handle:
        spec = yaml.safe_load(handle)
    fields = dict(spec["model"]["init_args"]["config"])
    fields.update(vocab_size=256, **overrides)
    data = spec["data"]["init_args"]
    return MoETransformerConfig(**fields), data["batch_size"], data["seq_len"]


class Stepper:
    def __init__(self, router: str, backend: str, device: str) -> None:
        config, self.batch, self.seq = tiny_config(router=router, backend=backend)
        torch.manual_seed(0)
        self.model = MoETransformer(config).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=2e-3, weight_decay=0.1)
        self.tokens_BS = torch.randint(0, 256, (self.batch, self.seq + 1), device=device)

    def step(self) -> None:
        out = self.model(self.tokens_BS[:, :-1])
        loss = F.cross_entropy(out.logits_BSV.flatten(0, 1), self.tokens_BS[:, 1:].flatten())
        (loss + out.auxiliary_loss()).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.update_router_state({i: sum_stats([s]) for i, s in out.moe_stats.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["grouped_mm", "fused"])
    parser.add_argument("--routers", nargs="+", default=ROUTERS)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# Train step benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"device={args.device}, threads={torch.get_num_threads()}, torch {torch.__version__}")
    config, batch, seq = tiny_config()
    print(f"tiny config: d={config.d_model}, layers={config.n_layers}, E={config.num_experts}, K={config.top_k}, "
          f"F={config.d_expert}, {batch}x{seq} tokens/step; medians of {args.steps} interleaved steps after "
          f"{args.warmup} warm-ups")
    print("| backend | router | ms/step | vs topk (medians) | vs topk (paired) |")
    print("|---|---|---:|---:|---:|")
    for backend in args.backends:
        steppers = {router: Stepper(router, backend, args.device) for router in args.routers}
        times: dict[str, list[float]] = {router: [] for router in args.routers}
        order = list(args.routers)
        for index in range(args.warmup + args.steps):
            order = order[1:] + order[:1]  # rotate: no router always runs right after another one
            for router in order:
                start = time.perf_counter()
                steppers[router].step()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if index >= args.warmup:
                    times[router].append(time.perf_counter() - start)
        medians = {router: statistics.median(values) for router, values in times.items()}
        for router, seconds in medians.items():
            ratio = paired = "-"
            if "topk" in medians:
                ratio = f"{seconds / medians['topk'] - 1:+.1%}"
                # the same round's TopK step as the baseline: drift of the shared machine cancels
                paired = f"{statistics.median(t / b for t, b in zip(times[router], times['topk'])) - 1:+.1%}"
            print(f"| {backend} | {router} | {seconds * 1e3:.1f} | {ratio} | {paired} |")

if __name__ == "__main__":
    main()
