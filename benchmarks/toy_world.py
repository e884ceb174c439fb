"""The method's claims on the shipped toy model (docs/video.md, "Toy world"), with the base model as the peer.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toy_world.py [--steps 150] [--seeds 0 1 2 3 4 5]

Prints (1) the probe table on "a red square moving right" with "a blue circle moving" injected, and
its t*; (2) the windowed LoRA (preset ``temporal_layers``, as configs/video/toy.yaml) trained on that
clip vs the base model vs the LoRA on every step, sampled with "a blue circle moving": motion fidelity
to the reference and percent of the shape in blue, with the LoRA / base ratio of the motion fidelity;
(3) the same three for other new prompts (``--prompts``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: this checkout's packages win

from lit_video.toy.evaluate import TOY_MODEL_PATH, compare_transfer, run_probe, train_recipe  # noqa: E402 (after the path fix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="LoRA training steps")
    parser.add_argument("--preset", default="temporal_layers", help="LoRA target preset (lit_video.lora)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5], help="sampling seeds")
    parser.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--edit-prompt", default="a blue circle moving", help="the probe's new prompt")
    parser.add_argument("--model", default=str(TOY_MODEL_PATH), help="toy diffusers folder")
    parser.add_argument("--boundary", type=int, default=None, help="t* of the LoRA (default: the probe's)")
    parser.add_argument("--prompts", nargs="*", default=["a blue triangle moving", "a red circle moving",
                                                         "a red triangle moving", "a yellow square moving",
                                                         "a green circle moving"], help="further new prompts")
    args = parser.parse_args()
    now = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    print(f"machine: {platform.processor() or platform.machine()}, {now}")
    start = time.perf_counter()
    results, summary = run_probe(args.model, edit_prompt=args.edit_prompt, boundaries=list(range(0, 1001, 100)),
                                 seeds=args.probe_seeds)
    print(f"probe ({time.perf_counter() - start:.0f} s): t* = {summary['motion_boundary']}, "
          f"M(source re-sample) = {summary['motion_source_resample']:.3f}, "
          f"M(full edit) = {summary['motion_full_edit']:.3f}")
    print("| window | b | motion | blue % |\n|---|---:|---:|---:|")
    for r in results:
        print(f"| {r.kind} | {r.boundary} | {r.motion:.3f} ± {r.motion_std:.3f} "
              f"| {r.appearance:.1f} ± {r.appearance_std:.1f} |")
    boundary = args.boundary if args.boundary is not None else int(round(summary["motion_boundary"] or 600))
    start = time.perf_counter()
    module, reference = train_recipe(args.model, motion_boundary=boundary, max_steps=args.steps,
                                     lora_preset=args.preset)
    print(f"LoRA ({args.preset}): {args.steps} steps at t* = {boundary} in {time.perf_counter() - start:.0f} s")
    table = compare_transfer(module, reference, seeds=tuple(args.seeds))
    print("| sampling | motion fidelity to the reference | blue % |\n|---|---:|---:|")
    for mode, row in table.items():
        print(f"| {mode} | {row['motion']:.3f} ± {row['motion_std']:.3f} "
              f"| {row['colour']:.1f} ± {row['colour_std']:.1f} |")
    print(f"windowed / base motion fidelity: {table['windowed']['motion'] / max(table['off']['motion'], 1e-6):.2f}×")
    if args.prompts:
        print("| new prompt | base: motion | windowed: motion | all steps: motion | base: colour % "
              "| windowed: colour % | all steps: colour % |\n|---|---:|---:|---:|---:|---:|---:|")
    for prompt in args.prompts:
        rows = compare_transfer(module, reference, prompt=prompt, seeds=tuple(args.seeds))
        motion = " | ".join(f"{rows[m]['motion']:.3f}" for m in ("off", "windowed", "all"))
        colour = " | ".join(f"{rows[m]['colour']:.0f}" for m in ("off", "windowed", "all"))
        print(f"| {prompt} | {motion} | {colour} |", flush=True)


if __name__ == "__main__":
    main()
