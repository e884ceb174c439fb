"""Import speed and peak host memory of ``lit_moe.hf.load_hf`` vs transformers' ``from_pretrained``.

Generates a random ~1B-parameter Qwen3-MoE-shaped bf16 checkpoint (per-expert keys as on the Hub,
several safetensors shards), then loads it in fresh subprocesses, alternating the two loaders:
wall time of the load call, peak resident memory of the process (``ru_maxrss``) and its increase
over the process's RSS just before the load; finally compares the logits of the first 8 tokens.

    python benchmarks/hf_import.py [--folder /tmp/hf_import_bench] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # this checkout's lit_moe, also in the child processes (PYTHONPATH)
SHAPE = dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=10, num_attention_heads=16,
             num_key_value_heads=4, head_dim=64, intermediate_size=2816, moe_intermediate_size=512,
             num_experts=64, num_experts_per_tok=8, norm_topk_prob=True, max_position_embeddings=4096,
             tie_word_embeddings=False)


def generate_checkpoint(folder: Path, shard_bytes: int = 450 * 10**6) -> int:
    """Write the random checkpoint shard by shard (never the whole model in memory); returns #params."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3MoeConfig

    from lit_moe.hf.families import family_for
    from lit_moe.hf.keymap import build_entries
    from lit_moe.model import MoETransformer, MoETransformerConfig

    folder.mkdir(parents=True, exist_ok=True)
    hf_config = Qwen3MoeConfig(**SHAPE)
    hf_config.architectures = ["Qwen3MoeForCausalLM"]
    hf_config.dtype = torch.bfloat16
    family = family_for("qwen3_moe")
    config = MoETransformerConfig(**family.config_fields(hf_config))
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in MoETransformer(config).named_parameters()}
    generator = torch.Generator().manual_seed(0)
    shards, shard, size, total = [], {}, 0, 0
    weight_map = {}

    def flush():
        nonlocal shard, size
        name = f"model-{len(shards) + 1:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        shards.append((name, list(shard)))
        shard, size = {}, 0

    for entry in build_entries(config, family, shared_gate_ours=False):
        shape = entry.hf_shape(shapes[entry.param])
        if entry.hf_key.endswith("norm.weight"):
            tensor = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            tensor = 0.02 * torch.randn(shape, generator=generator)
        tensor = tensor.to(torch.bfloat16)
        if shard and size + tensor.numel() * 2 > shard_bytes:
            flush()
        shard[entry.hf_key] = tensor
        size += tensor.numel() * 2
        total += tensor.numel()
    flush()
    final = []
    for index, (name, keys) in enumerate(shards):
        new_name = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        (folder / name).replace(folder / new_name)
        final.append(new_name)
        weight_map.update({k: new_name for k in keys})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total * 2}, "weight_map": weight_map}))
    hf_config.save_pretrained(folder)
    return total


CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
kind, folder, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3], getattr(torch, sys.argv[5])
if kind == "ours":
    from lit_moe.hf import load_hf
    import transformers  # imported by load_hf for the config parser: count it in the baseline
else:
    from transformers import AutoModelForCausalLM
def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
before = rss_kb()
start = time.perf_counter()
if kind == "ours":
    model = load_hf(folder, dtype=dtype).eval()
else:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    tokens = torch.arange(8).reshape(1, 8) * 997 % 32000
    out_logits = model(tokens)
    logits = (out_logits.logits_BSV if kind == "ours" else out_logits.logits).float()
torch.save(logits, out + ".pt")
json.dump({"seconds": seconds, "peak_kb": peak, "before_kb": before}, open(out + ".json", "w"))
"""


def run_child(kind: str, folder: Path, out: Path, threads: int, dtype: str = "bfloat16") -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-c", CHILD, kind, str(folder), str(out), str(threads), dtype], check=True,
                   env=env, cwd=REPO_ROOT, timeout=1800)
    return json.loads(Path(f"{out}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default="/tmp/hf_import_bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each loader (1: on a shared machine 2 OpenMP threads stall on copies)")
    args = parser.parse_args()
    folder = Path(args.folder)
    if not (folder / "model.safetensors.index.json").is_file():
        start = time.perf_counter()
        params = generate_checkpoint(folder)
        print(f"generated {params / 1e9:.3f} B parameters in {time.perf_counter() - start:.0f} s -> {folder}")
    shards = sorted(folder.glob("*.safetensors"))
    size = sum(s.stat().st_size for s in shards)
    print(f"checkpoint: {len(shards)} shards, {size / 2**30:.2f} GiB bf16; {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    results = {"ours": [], "transformers": []}
    for repeat in range(args.repeats):
        for kind in ("ours", "transformers") if repeat % 2 == 0 else ("transformers", "ours"):
            result = run_child(kind, folder, folder.parent / f"hf_import_{kind}", args.threads)
            results[kind].append(result)
            print(f"  {kind:12s} load {result['seconds']:6.2f} s  peak RSS {result['peak_kb'] / 2**20:5.2f} GiB"
                  f"  (+{(result['peak_kb'] - result['before_kb']) / 2**20:5.2f} GiB over the process before load)")
    import torch

    summary = {}
    for kind, runs in results.items():
        summary[kind] = dict(seconds=statistics.median(r["seconds"] for r in runs),
                             peak=statistics.median(r["peak_kb"] for r in runs) / 2**20,
                             growth=statistics.median(r["peak_kb"] - r["before_kb"] for r in runs) / 2**20)
    ours, theirs = summary["ours"], summary["transformers"]
    print("\n| loader | load time (median) | peak RSS | RSS growth during load |\n|---|---:|---:|---:|")
    for kind in ("ours", "transformers"):
        s = summary[kind]
        print(f"| {kind} | {s['seconds']:.2f} s | {s['peak']:.2f} GiB | {s['growth']:.2f} GiB |")
    print(f"| ratio ours / transformers | **{ours['seconds'] / theirs['seconds']:.2f}x** | "
          f"**{ours['peak'] / theirs['peak']:.2f}x** | {ours['growth'] / theirs['growth']:.2f}x |")
    print()
    for dtype in ("bfloat16", "float32"):
        if dtype == "float32":  # the same checkpoint loaded in fp32 by both (not timed): the exact comparison
            for kind in ("ours", "transformers"):
                run_child(kind, folder, folder.parent / f"hf_import_{kind}", args.threads, dtype)
        a = torch.load(folder.parent / "hf_import_ours.pt")
        b = torch.load(folder.parent / "hf_import_transformers.pt")
        print(f"logits of the first 8 tokens ({dtype} models): max |diff| {float((a - b).abs().max()):.3g}, "
              f"max |logit| {float(b.abs().max()):.3g}, argmax equal at {int((a.argmax(-1) == b.argmax(-1)).sum())}/8"
              f", bitwise equal: {bool(torch.equal(a, b))}")


if __name__ == "__main__":
    main()
