"""Training-step benchmark: the windowed temporal-attention LoRA recipe vs the MotionDirector baseline.

Both recipes are built on the same frozen UNet and timed in the same process, interleaved step by
step (so machine load drifts hit both), as the median of repeats after warm-up. A step is what
``MotionCustomizationModule.training_step`` does: the recipe's forward pass(es), one backward per
path restricted to that path's adapter, gradient clipping, AdamW step.

Peak memory per step: on CPU, the allocator-level high-water mark above the step's starting point,
from the torch profiler's per-op allocation records (``profile_memory=True``: every allocation and
free is attributed to exactly one op; we replay them in time order); on CUDA,
``torch.cuda.max_memory_allocated`` above the starting allocation. Optimizer state is created in
warm-up, so it is not counted.

    .venv/bin/python benchmarks/video_step.py                      # tiny model, CPU
    python benchmarks/video_step.py --preset zeroscope --device cuda --dtype bfloat16 \\
        --frames 24 --height 320 --width 576 --total-steps 150     # ZeroScope UNet3D, random weights
    .venv/bin/python benchmarks/video_step.py --preset wan_tiny    # DiTs: wan_tiny, cogvideox_tiny, latte_tiny
    python benchmarks/video_step.py --preset wan2.1_1.3b --device cuda --dtype bfloat16 --height 480 --width 832 \\
        --total-steps 150 --skip-baseline --gradient-checkpointing   # Wan 2.1 1.3B architecture, random weights

DiT presets compare the windowed DiT recipe (Wan / CogVideoX: ``self_attn``, LoRA on the full 3-D
self-attention, σ ≥ 0.7 resp. t ≥ t*; Latte: ``latte_temporal``) with the adapted MotionDirector
baseline (spatial adapter on cross-attention + feed-forward trained on one frame, temporal adapter on
self-attention / Latte's temporal blocks, full timestep range).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_video.components import ComponentsSpec, TinyComponentsConfig  # noqa: E402
from lit_video.dit.config import TinyDiTConfig  # noqa: E402
from lit_video.dit.module import DiTMotionCustomizationModule  # noqa: E402
from lit_video.module import MotionCustomizationModule  # noqa: E402

PRESETS = {
    "tiny": TinyComponentsConfig(),
    # cerspense/zeroscope_v2_576w's UNet3DConditionModel architecture (random weights); SD VAE layout
    "zeroscope": TinyComponentsConfig(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                      norm_num_groups=32, attention_head_dim=64, text_width=1024, text_layers=2,
                                      max_prompt_tokens=77, vae_block_out_channels=(128, 256, 512, 512)),
}


# DiT presets: (family, sizes, windowed recipe, default frames: Wan 4k + 1, CogVideoX 8k + 1, tiny Latte its
# video_length; the tiny Latte builds a 4-frame temporal embedding, so it only runs 4 frames)
DIT_PRESETS = {
    "wan_tiny": ("wan", TinyDiTConfig(), "self_attn", 9),
    "cogvideox_tiny": ("cogvideox", TinyDiTConfig(num_attention_heads=4, attention_head_dim=8), "self_attn", 9),
    "latte_tiny": ("latte", TinyDiTConfig(num_attention_heads=3, attention_head_dim=8), "latte_temporal", 4),
    # Wan-AI/Wan2.1-T2V-1.3B's transformer and VAE architecture (random weights); a 2-layer UMT5 of the real width
    # stands in for UMT5-XXL (text encoding is frozen and outside the LoRA's backward)
    "wan2.1_1.3b": ("wan", TinyDiTConfig(num_layers=30, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                                         text_width=4096, text_layers=2, max_prompt_tokens=512, vae_base_dim=96,
                                         vae_dim_mult=(1, 2, 4, 4), vae_res_blocks=2, rope_max_seq_len=1024),
                    "self_attn", 33),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()} | {cpu} | {os.cpu_count()} cores, torch threads {torch.get_num_threads()} | "
            f"torch {torch.__version__}")


class Recipe:
    """A module, its optimizer and one batch: ``step()`` runs one full training step."""

    def __init__(self, name: str, preset: str, args: argparse.Namespace, device: torch.device) -> None:
        torch.manual_seed(0)
        self.name = name
        if args.preset in DIT_PRESETS:
            family, sizes, _, _ = DIT_PRESETS[args.preset]
            module = DiTMotionCustomizationModule(
                components=ComponentsSpec(family=family, tiny_dit=sizes), lora_preset=preset, lora_rank=args.rank,
                motion_boundary=600, motion_boundary_units="modelscope_timestep",
                gradient_checkpointing=args.gradient_checkpointing)
        else:
            module = MotionCustomizationModule(
                components=ComponentsSpec(tiny=PRESETS[args.preset]), lora_preset=preset, lora_rank=args.rank,
                gradient_checkpointing=args.gradient_checkpointing)
        self.module = module.to(device=device, dtype=args.torch_dtype)
        self.parameters = self.module.trainable_parameters()
        self.optimizer = torch.optim.AdamW(self.parameters, lr=5e-4, weight_decay=1e-2)
        video = torch.rand(1, 3, args.frames, args.height, args.width, generator=torch.Generator().manual_seed(0))
        self.batch = {"video": (video * 2 - 1).to(device=device, dtype=args.torch_dtype), "prompt": ["a car driving"]}

    def step(self) -> None:
        losses, _ = self.module.training_losses(self.batch)
        for path in losses:
            path.loss.backward(inputs=path.parameters)
        torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.parameters)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(recipe: Recipe, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    recipe.step()
    synchronize(device)
    return time.perf_counter() - start


def peak_step_memory(recipe: Recipe, device: torch.device, steps: int) -> int:
    """Largest allocator high-water mark above the starting point over ``steps`` steps (bytes)."""
    if device.type == "cuda":
        synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(steps):
            recipe.step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profile:
        for _ in range(steps):
            recipe.step()
    events = sorted((e for e in profile.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS) + sorted(DIT_PRESETS), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--frames", type=int, default=None, help="default: 8 (UNets), the DiT preset's own")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--memory-steps", type=int, default=3, help="steps profiled for peak memory")
    parser.add_argument("--total-steps", type=int, default=0,
                        help="also time this many consecutive steps of the windowed recipe (e.g. 150)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true", help="only the windowed recipe (GPU target run)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); 1 is steadier when other jobs share the cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.torch_dtype = getattr(torch, args.dtype)
    if args.frames is None:
        args.frames = DIT_PRESETS[args.preset][3] if args.preset in DIT_PRESETS else 8
    device = torch.device(args.device)

    print(f"date     {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"machine  {machine()}")
    if device.type == "cuda":
        print(f"device   {torch.cuda.get_device_name(device)}")
    print(f"workload preset={args.preset} {args.frames} frames {args.height}×{args.width} px, batch 1, "
          f"rank {args.rank}, {args.dtype}, device {device}")
    windowed = DIT_PRESETS[args.preset][2] if args.preset in DIT_PRESETS else "temporal_attn"
    recipes = [Recipe(f"windowed {windowed}", windowed, args, device)]
    if not args.skip_baseline:
        recipes.append(Recipe("motion_director baseline", "motion_director", args, device))
    print(f"model    {sum(p.numel() for p in recipes[0].module.components.unet.parameters() if not p.requires_grad):,} "
          "frozen parameters")

    for _ in range(args.warmup):
        for recipe in recipes:
            recipe.step()
    times = {recipe.name: [] for recipe in recipes}
    for repeat in range(args.repeats):
        for recipe in recipes:  # interleaved: both see the same machine state
            times[recipe.name].append(timed_step(recipe, device))
        print(f"  repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{t[-1] * 1e3:.0f} ms" for t in times.values()),
              flush=True)
    memory = {recipe.name: peak_step_memory(recipe, device, args.memory_steps) for recipe in recipes}

    print(f"\n{'recipe':<26} {'median step':>12} {'min':>8} {'trainable':>12} {'peak step memory':>17}")
    for recipe in recipes:
        print(f"{recipe.name:<26} {statistics.median(times[recipe.name]) * 1e3:>10.1f}ms "
              f"{min(times[recipe.name]) * 1e3:>6.1f}ms {recipe.trainable:>12,} "
              f"{memory[recipe.name] / 2**20:>14.1f}MiB")
    if len(recipes) == 2:
        ours, base = recipes
        speedup = statistics.median(times[base.name]) / statistics.median(times[ours.name])
        print(f"\nspeed-up (baseline median / windowed median)     {speedup:.2f}×   (target ≥ 1.15×)")
        print(f"trainable parameters (windowed / baseline)       {ours.trainable / base.trainable:.1%}  (target < 50%)")
        print(f"peak step memory (windowed / baseline)           {memory[ours.name] / memory[base.name]:.1%}  "
              "(target < 100%)")
        print(f"baseline: spatial path skipped with p = {base.module.hparams.spatial_path_skip_probability}")
    if args.total_steps:
        recipe = recipes[0]
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.total_steps):
            recipe.step()
        synchronize(device)
        print(f"\n{args.total_steps} consecutive steps of the windowed recipe: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
