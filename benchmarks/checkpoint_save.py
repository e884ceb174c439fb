"""Peak host memory while saving a checkpoint: ``AtomicCheckpointIO`` (streamed into the temporary
file) against the previous method (the whole checkpoint serialised into a ``BytesIO`` first) and
against plain ``torch.save(obj, path)`` (the floor), each in a fresh subprocess.

Each child builds a checkpoint-like dict (fp32 "weights" plus two AdamW moment buffers, float
tensors of one "layer" each), reads its resident set size (VmRSS), resets the peak counter
(``/proc/self/clear_refs``), saves, and reads the peak (VmHWM). Linux only; no psutil.

    python benchmarks/checkpoint_save.py --megabytes 600
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
METHODS = ("atomic_streamed", "bytesio_then_write", "torch_save_path")


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def checkpoint_of(megabytes: int) -> dict:
    import torch  # noqa: PLC0415 (imported in the measured child only)

    layers = 12
    numel = megabytes * 2**20 // 4 // 3 // layers  # weights + exp_avg + exp_avg_sq, fp32
    weights = {f"model.blocks.{i}.w": torch.full((numel,), 0.5 + i) for i in range(layers)}
    state = {i: {"step": torch.tensor(2.0), "exp_avg": torch.full((numel,), 1e-3 * i),
                 "exp_avg_sq": torch.full((numel,), 1e-6 * i)} for i in range(layers)}
    return {"state_dict": weights, "optimizer_states": [{"state": state, "param_groups": [{"lr": 1e-3}]}],
            "global_step": 2, "epoch": 0}


def save_with(method: str, checkpoint: dict, path: Path) -> None:
    import torch  # noqa: PLC0415 (imported in the measured child only)

    from lit_core.checkpointing import AtomicCheckpointIO  # noqa: PLC0415
    from lit_core.io import atomic_write  # noqa: PLC0415

    if method == "atomic_streamed":
        AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    elif method == "bytesio_then_write":  # AtomicCheckpointIO before streaming
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))
    else:
        torch.save(checkpoint, path)


def child(method: str, megabytes: int, folder: str) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    checkpoint = checkpoint_of(megabytes)
    path = Path(folder) / f"{method}.ckpt"
    save_with(method, checkpoint, path)  # warm-up: imports, first-touch allocations
    path.unlink()
    before = status_kib("VmRSS")
    if not reset_peak():
        return {"method": method, "error": "cannot reset VmHWM (/proc/self/clear_refs)"}
    start = time.perf_counter()
    save_with(method, checkpoint, path)
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    return {"method": method, "before_mib": before / 1024, "peak_mib": peak / 1024, "seconds": seconds,
            "file_mib": path.stat().st_size / 2**20}


def measure(method: str, megabytes: int) -> dict:
    """Run one save in a fresh interpreter; returns its RSS numbers."""
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([sys.executable, __file__, "--child", method, "--megabytes", str(megabytes),
                                 "--folder", folder], capture_output=True, text=True, timeout=600,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=600, help="checkpoint size (weights + AdamW moments)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.megabytes, args.folder)))
        return
    import torch  # noqa: PLC0415 (the parent only reads its version)

    print(f"{platform.node()} {platform.machine()} {time.strftime('%Y-%m-%d')}, python {platform.python_version()}, "
          f"torch {torch.__version__}, checkpoint {args.megabytes} MB; "
          "peak = VmHWM during the save, fresh process each")
    print("\n| method | RSS before MiB | peak MiB | peak - before MiB | peak / (1.1 x before + 64) | s |")
    print("|---|---:|---:|---:|---:|---:|")
    for method in args.methods:
        r = measure(method, args.megabytes)
        if "error" in r:
            print(f"| {method} | {r['error']} | | | | |")
            continue
        bound = 1.1 * r["before_mib"] + 64
        print(f"| {method} | {r['before_mib']:.0f} | {r['peak_mib']:.0f} | {r['peak_mib'] - r['before_mib']:.0f} | "
              f"{r['peak_mib'] / bound:.2f} | {r['seconds']:.2f} |")


if __name__ == "__main__":
    main()
