"""Reading and writing clips: PyAV for mp4/webm/gif/..., PIL for folders of frames and GIFs.

Frames are uint8 numpy arrays (F, H, W, 3) at this boundary; tensors elsewhere.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from lit_video.errors import VideoInputError

FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """All frames of a video file or a folder of frames (sorted by name) and its fps (8 for folders)."""
    path = Path(path)
    if not path.exists():
        raise VideoInputError(f"reference video {path} does not exist: set data.video_path to an mp4/webm/gif "
                              "file or a folder of frames")
    if path.is_dir():
        return _read_frame_folder(path), 8.0
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoInputError(f"{path} contains no video stream: give data.video_path a video "
                                      "(mp4, webm, gif) or a folder of frames")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 8)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except VideoInputError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise VideoInputError(f"cannot decode {path} as a video ({error}): give data.video_path a readable "
                              "mp4/webm/gif file or a folder of frames") from None
    if not frames:
        raise VideoInputError(f"{path} decodes to zero frames: re-encode it or pick another clip")
    return np.stack(frames), fps


def _read_frame_folder(folder: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise VideoInputError(f"folder {folder} has no frame images ({', '.join(sorted(FRAME_SUFFIXES))}): put "
                              "the frames there as numbered images or point data.video_path at a video file")
    frames = []
    for file in files:
        try:
            frames.append(np.asarray(Image.open(file).convert("RGB")))
        except (UnidentifiedImageError, OSError) as error:
            raise VideoInputError(f"cannot read frame {file} ({error}): remove or replace it") from None
    if len({f.shape for f in frames}) != 1:
        raise VideoInputError(f"frames in {folder} differ in size: resize them to one resolution")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Writes uint8 frames (F, H, W, 3) as .gif (PIL) or .mp4/.webm (PyAV, H.264/VP9)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        path.write_bytes(encode_gif(frames, fps))
        return path
    import av

    codec = {".webm": "libvpx-vp9"}.get(path.suffix.lower(), "libx264")
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames[:, :height, :width]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def encode_gif(frames: np.ndarray, fps: float = 8.0) -> bytes:
    """An animated, looping GIF of uint8 frames (F, H, W, 3)."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
                   loop=0)
    return buffer.getvalue()


def to_uint8_frames(video_CFHW: torch.Tensor) -> np.ndarray:
    """Pixels in [-1, 1] (3, F, H, W) → uint8 (F, H, W, 3)."""
    pixels = ((video_CFHW.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).cpu().numpy()


def frames_to_tensor(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 (F, H, W, 3) → pixels in [-1, 1] (3, F, height, width): resize to cover, centre crop."""
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1  # (F, 3, H, W)
    scale = max(height / video.shape[2], width / video.shape[3])
    resized_h, resized_w = max(height, round(video.shape[2] * scale)), max(width, round(video.shape[3] * scale))
    if (resized_h, resized_w) != tuple(video.shape[2:]):
        video = torch.nn.functional.interpolate(video, size=(resized_h, resized_w), mode="bilinear",
                                                align_corners=False, antialias=True)
    top, left = (resized_h - height) // 2, (resized_w - width) // 2
    video = video[:, :, top:top + height, left:left + width].clamp(-1, 1)
    return video.permute(1, 0, 2, 3).contiguous()


def moving_shapes_frames(num_frames: int = 24, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """A synthetic clip: a red square moving right and a blue disc moving down on a textured background."""
    generator = np.random.default_rng(seed)
    background = (generator.random((height // 8 + 1, width // 8 + 1, 3)) * 60 + 100).astype(np.uint8)
    background = np.kron(background, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    yy, xx = np.mgrid[:height, :width]
    side, radius = max(4, height // 5), max(3, height // 8)
    frames = []
    for index in range(num_frames):
        frame = background.copy()
        x0 = int(2 + index * (width - side - 4) / max(1, num_frames - 1))
        frame[height // 4:height // 4 + side, x0:x0 + side] = (220, 40, 40)
        cy = int(radius + 2 + index * (height - 2 * radius - 4) / max(1, num_frames - 1))
        disc = (yy - cy) ** 2 + (xx - 2 * width // 3) ** 2 <= radius ** 2
        frame[disc] = (40, 60, 220)
        frames.append(frame)
    return np.stack(frames)
