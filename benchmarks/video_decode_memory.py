"""Peak memory of loading a reference clip: 16 frames of a 1-minute 1080p H.264 file.

Writes a real H.264 clip with PyAV (1920×1080, 30 fps, 60 s, moving gradients, x264 ultrafast) in a
temporary folder, then in fresh child processes measures the peak resident memory above the imports
(``ru_maxrss`` after the load minus after the imports) of

- ours: ``ReferenceVideoDataModule(video_path=clip, num_frames=16, frame_stride=S, start_frame=A,
  height=320, width=576)`` (decodes only up to the frames picked, seeks to ``start_frame``,
  resizes while decoding), for a window at the start and one in the middle of the clip;
- the named peer: the previous loader, which decoded every frame of the clip at full resolution into
  one array and then picked frames (measured on the first ``--peer-seconds`` seconds and
  extrapolated linearly to the whole clip, since it does not fit this machine).

    .venv/bin/python benchmarks/video_decode_memory.py [--seconds 60] [--peer-seconds 4]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
import numpy as np, torch, av
from lit_video.data import ReferenceVideoDataModule
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
mode, clip, start_frame, stride, frames = {mode!r}, {clip!r}, {start_frame}, {stride}, {frames}
if mode == "ours":
    data = ReferenceVideoDataModule("a test clip", clip, num_frames=frames, frame_stride=stride,
                                    start_frame=start_frame, height=320, width=576)
    shape = tuple(data.video_CFHW.shape)
else:  # the previous loader: every frame at full resolution, then the pick
    with av.open(clip) as container:
        every = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])
    picked = every[start_frame:start_frame + (frames - 1) * stride + 1:stride]
    shape = (len(every),) + every.shape[1:]
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"above_imports_mib": (peak - base) / 1024, "seconds": seconds, "shape": shape}}))
"""


def write_clip(path: Path, seconds: float, fps: int = 30, width: int = 1920, height: int = 1080) -> None:
    import av

    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(int(seconds * fps)):
            phase = index * 0.05
            frame = np.stack([128 + 100 * np.sin(xx / 97 + phase), 128 + 100 * np.sin(yy / 61 - phase),
                              128 + 100 * np.sin((xx + yy) / 151 + 2 * phase)], axis=-1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def measure(mode: str, clip: Path, start_frame: int, stride: int, frames: int) -> dict:
    code = CHILD.format(repo=str(REPO), mode=mode, clip=str(clip), start_frame=start_frame, stride=stride,
                        frames=frames)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, env=env)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--peer-seconds", type=float, default=4.0)
    args = parser.parse_args()
    import av
    import torch

    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} CPUs (shared with other jobs), torch {torch.__version__}, av {av.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        clip, peer_clip = Path(folder) / "clip_1080p.mp4", Path(folder) / "clip_1080p_prefix.mp4"
        started = time.perf_counter()
        write_clip(clip, args.seconds)
        write_clip(peer_clip, args.peer_seconds)
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            print(f"clip: {stream.codec_context.name} {stream.codec_context.width}x{stream.codec_context.height} "
                  f"{stream.frames} frames @ {float(stream.average_rate):.0f} fps, "
                  f"{clip.stat().st_size / 2**20:.1f} MiB "
                  f"(written in {time.perf_counter() - started:.0f} s)")
        total_frames = int(args.seconds * 30)
        rows = [("ours, 16 frames from frame 0, stride 1", measure("ours", clip, 0, 1, 16)),
                ("ours, 16 frames from frame 900, stride 4", measure("ours", clip, 900, 4, 16))]
        peer = measure("peer", peer_clip, 0, 1, 16)
        per_frame = peer["above_imports_mib"] / int(args.peer_seconds * 30)
        estimate = per_frame * total_frames
        print("\n| loader | peak RSS above imports (MiB) | time (s) | output |")
        print("|---|---:|---:|---|")
        for name, row in rows:
            print(f"| {name} | {row['above_imports_mib']:.0f} | {row['seconds']:.2f} | {row['shape']} |")
        print(f"| peer (decode all, then pick), first {args.peer_seconds:g} s measured | "
              f"{peer['above_imports_mib']:.0f} | "
              f"{peer['seconds']:.2f} | {peer['shape']} |")
        print(f"| peer extrapolated to {total_frames} frames | {estimate:.0f} | | |")
        worst = max(row["above_imports_mib"] for _, row in rows)
        print(f"\nours / peer (extrapolated): {worst / estimate:.4f}  ({estimate / worst:.0f}x less); "
              f"target < 1024 MiB above imports: {'met' if worst < 1024 else 'NOT met'}")


if __name__ == "__main__":
    main()
