"""Forward+backward time and peak memory of our MoE layer vs transformers' MixtralSparseMoeBlock.

Shape legend: T tokens, D model width, E experts, K experts per token, F expert hidden width.

For each shape, every (backend, router) of our ``MoELayer`` and every experts implementation of
``MixtralSparseMoeBlock`` that fits (``eager`` loop, ``grouped_mm``) is timed on the same input,
in the same process, with weights copied so that the outputs match (asserted before timing;
our layer uses ``normalize_topk: true`` like Mixtral). Reported per row: median fwd+bwd time over
the timed repeats, achieved GFLOP/s (3 x T*K x 3*D*F x 2 flops: the routed SwiGLU work; the dense
router does N/K times more but is charged the same, so its rate reads as the cost of exactness),
the ratio to a dense matmul of the same flops (one near-cubic product, timed as a peer in the same
rounds: ``torch.matmul``, and on CPU in fp32 also the same product through oneDNN, which is about
twice as fast on AMD CPUs with AVX-512 - see ``kernels/cpu_gemm.py``), the speed ratio to the best
transformers implementation, and peak memory above the inputs and weights.

Timing: every implementation of a shape (and the dense matmul) is built first, warmed up, then timed
round robin - one fwd+bwd of each per round, the order rotating every round - so that drift of a
shared machine hits all of them alike; medians over the rounds.

Peak memory: CUDA -> torch.cuda.max_memory_allocated over one fwd+bwd after reset. CPU -> the
autograd profiler's allocation events (profile_memory=True): every allocation and free of the
fwd+bwd in time order, running sum, maximum. Both sides are measured the same way.

Usage:
    python benchmarks/moe_layer.py                       # CPU, 2 threads, fp32, both shapes
    python benchmarks/moe_layer.py --device cuda --dtype bf16 --shapes fine --tokens 16384
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kernels.cpu_gemm import CpuGemm, onednn_matmul_usable  # noqa: E402
from lit_moe.model.config import MoETransformerConfig  # noqa: E402
from lit_moe.model.moe_layer import MoELayer  # noqa: E402

SHAPES = {"coarse": dict(E=8, K=2, D=256, F=1024), "fine": dict(E=64, K=8, D=256, F=256)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Row:
    name: str
    seconds: float
    peak_bytes: int


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(runs: dict, device: str, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, timed round robin (rotating order) after ``warmup`` calls each."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for _ in range(repeats):
        order = order[1:] + order[:1]
        for name in order:
            start = time.perf_counter()
            runs[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def same_flops_matmuls(flops: int, device: str, dtype: torch.dtype):
    """A near-cubic dense product of ~``flops`` (sides multiples of 64): ({name: callable}, its exact flops,
    its shape). ``torch.matmul`` always; on CPU in fp32 also the same product through oneDNN where this
    torch build has it (``kernels.cpu_gemm``: torch's fp32 matmul uses MKL, which runs AVX2 code on AMD
    CPUs, while oneDNN uses AVX-512 where the core has it), so that ratios are also taken against the
    fastest dense product torch can run here."""
    side = max(64, round((flops / 2) ** (1 / 3) / 64) * 64)
    inner = max(64, round(flops / (2 * side * side) / 64) * 64)
    a = torch.randn(side, inner, device=device, dtype=dtype)
    b = torch.randn(inner, side, device=device, dtype=dtype)
    runs = {"torch.matmul": lambda: a @ b}
    if onednn_matmul_usable(a, b):
        onednn = CpuGemm(onednn=True)
        torch.testing.assert_close(onednn.mm(a, b), a @ b, rtol=1e-4, atol=1e-2)
        runs["oneDNN matmul"] = lambda: onednn.mm(a, b)
    return runs, 2 * side * inner * side, f"{side}x{inner}x{side}"


def peak_memory(fn, device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def mixtral_block(layer: MoELayer, shape: dict, implementation: str, device: str, dtype: torch.dtype):
    from transformers import MixtralConfig  # noqa: PLC0415
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock  # noqa: PLC0415

    config = MixtralConfig(hidden_size=shape["D"], intermediate_size=shape["F"], num_local_experts=shape["E"],
                           num_experts_per_tok=shape["K"], router_jitter_noise=0.0)
    config._experts_implementation = implementation
    block = MixtralSparseMoeBlock(config)
    with torch.no_grad():
        block.gate.weight.copy_(layer.router.weight_ED)
        experts = layer.experts
        # transformers stores [gate; up] as [E, 2F, D] and down as [E, D, F] (nn.Linear layout)
        block.experts.gate_up_proj.copy_(torch.cat([experts.w_gate_EDF, experts.w_up_EDF], dim=2).transpose(1, 2))
        block.experts.down_proj.copy_(experts.w_down_EFD.transpose(1, 2))
    return block.to(device=device, dtype=dtype)


def fwd_bwd(module, x_BSD, grad_BSD, ours: bool):
    def run():
        x_BSD.grad = None
        for p in module.parameters():
            p.grad = None
        out = module(x_BSD)
        y_BSD = out[0] if ours else out
        y_BSD.backward(grad_BSD)
    return run


def bench_shape(name: str, shape: dict, args, device: str, dtype: torch.dtype) -> None:
    tokens = args.tokens
    flops = 3 * tokens * shape["K"] * 3 * shape["D"] * shape["F"] * 2
    torch.manual_seed(0)
    x_BSD = torch.randn(1, tokens, shape["D"], device=device, dtype=dtype, requires_grad=True)
    grad_BSD = torch.randn_like(x_BSD)
    tol = 1e-4 if dtype == torch.float32 else 3e-2

    def our_layer(backend: str, router: str) -> MoELayer:
        config = MoETransformerConfig(d_model=shape["D"], n_heads=4, num_experts=shape["E"], top_k=shape["K"],
                                      d_expert=shape["F"], router=router, backend=backend, normalize_topk=True)
        torch.manual_seed(1)
        layer = MoELayer(config).to(device=device, dtype=dtype)
        layer.default_vectors_ED = layer.default_vectors_ED.float()
        return layer.train()

    reference = our_layer("loop", "topk")
    with torch.no_grad():
        expected, _ = reference(x_BSD)
    runs = {}
    for implementation in args.hf_impls:
        block = mixtral_block(reference, shape, implementation, device, dtype).train()
        with torch.no_grad():
            torch.testing.assert_close(block(x_BSD), expected, rtol=tol, atol=tol)
        runs[f"transformers {implementation}"] = fwd_bwd(block, x_BSD, grad_BSD, ours=False)
    for backend in args.backends:
        for router in args.routers:
            layer = our_layer(backend, router)
            if router == "topk":
                with torch.no_grad():
                    torch.testing.assert_close(layer(x_BSD)[0], expected, rtol=tol, atol=tol)
            runs[f"ours {backend}/{router}"] = fwd_bwd(layer, x_BSD, grad_BSD, ours=True)
    dense_runs, dense_flops, dense_shape = same_flops_matmuls(flops, device, dtype)
    runs.update({f"dense {label}": run for label, run in dense_runs.items()})
    seconds = time_interleaved(runs, device, args.warmup, args.repeats)
    dense_rates = {label: dense_flops / seconds.pop(f"dense {label}") for label in dense_runs}
    rows = [Row(label, seconds[label], peak_memory(runs[label], device)) for label in seconds]

    hf = [r for r in rows if r.name.startswith("transformers")]
    best_hf = min(hf, key=lambda r: r.seconds) if hf else None
    rates = ", ".join(f"{label} {rate / 1e9:.1f} GFLOP/s" for label, rate in dense_rates.items())
    print(f"\n### {name}: E={shape['E']} K={shape['K']} D={shape['D']} F={shape['F']} T={tokens} "
          f"({flops / 1e9:.1f} GFLOP fwd+bwd); dense {dense_shape} product of the same flops in the same rounds: "
          f"{rates}")
    print("| implementation | ms | GFLOP/s | " + " | ".join(f"vs dense {label}" for label in dense_rates)
          + " | vs best transformers | peak MiB |")
    print("|---|---:|---:|" + "---:|" * len(dense_rates) + "---:|---:|")
    for row in rows:
        rate = flops / row.seconds
        vs_hf = f"{best_hf.seconds / row.seconds:.2f}x" if best_hf else "-"
        vs_dense = " | ".join(f"{rate / dense_rate:.0%}" for dense_rate in dense_rates.values())
        print(f"| {row.name} | {row.seconds * 1e3:.1f} | {rate / 1e9:.1f} | {vs_dense} | {vs_hf} | "
              f"{row.peak_bytes / 2**20:.1f} |")
    if best_hf:
        print(f"best transformers implementation: {best_hf.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--backends", nargs="+", default=["loop", "grouped_mm", "fused"])
    parser.add_argument("--routers", nargs="+", default=["topk", "default", "expert_group", "dense"])
    parser.add_argument("--hf-impls", nargs="+", default=["eager", "grouped_mm"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = args.device, DTYPES[args.dtype]
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    import transformers  # noqa: PLC0415

    machine = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()}"
    print(f"# MoE layer benchmark, {datetime.date.today()}, {machine}, device={device}, dtype={args.dtype}, "
          f"threads={torch.get_num_threads()}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"medians of {args.repeats} interleaved rounds (one fwd+bwd of each implementation a round, rotating "
          f"order) after {args.warmup} warm-ups each")
    for name in args.shapes:
        bench_shape(name, SHAPES[name], args, device, dtype)

if __name__ == "__main__":
    main()
