"""Reading and writing clips: PyAV for mp4/webm/gif/..., PIL for folders of frames and GIFs.

Frames are uint8 numpy arrays (F, H, W, 3) at this boundary; tensors elsewhere.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lit_video.errors import VideoInputError

FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def read_video(path: str | Path, start_frame: int = 0, num_frames: Optional[int] = None, frame_stride: int = 1,
               cover_size: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, float]:
    """Frames ``start_frame, start_frame + stride, …`` (``num_frames`` of them; ``None``: to the end)
    of a video file or a folder of frames (sorted by name), and the file's fps (8 for folders).

    Only the frames asked for are converted and kept: decoding starts from the key frame before
    ``start_frame`` (a seek) and stops after the last frame needed. ``cover_size`` (height, width)
    resizes each frame while decoding to the smallest size covering it with the aspect ratio kept
    (``frames_to_tensor`` then only centre-crops), so memory is ``num_frames`` small frames, never
    the whole clip at its own resolution. Fewer frames than asked are returned when the clip ends.
    """
    path = Path(path)
    if not path.exists():
        raise VideoInputError(f"reference video {path} does not exist: set data.video_path to an mp4/webm/gif "
                              "file or a folder of frames")
    if start_frame < 0 or frame_stride < 1 or (num_frames is not None and num_frames < 1):
        raise VideoInputError(f"need start_frame ≥ 0, frame_stride ≥ 1, num_frames ≥ 1; got {start_frame}, "
                              f"{frame_stride}, {num_frames}")
    wanted = range(start_frame, start_frame + num_frames * frame_stride if num_frames else 1 << 62, frame_stride)
    if path.is_dir():
        return _read_frame_folder(path, wanted, cover_size), 8.0
    import av  # noqa: PLC0415 (av, heavy and optional)

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoInputError(f"{path} contains no video stream: give data.video_path a video "
                                      "(mp4, webm, gif) or a folder of frames")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 8)
            frames = _decode_frames(container, stream, fps, wanted, cover_size)
    except VideoInputError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise VideoInputError(f"cannot decode {path} as a video ({error}): give data.video_path a readable "
                              "mp4/webm/gif file or a folder of frames") from None
    if not frames:
        raise VideoInputError(f"{path} decodes to zero frames from frame {start_frame} on: re-encode it, lower "
                              "data.start_frame or pick another clip")
    return np.stack(frames), fps


def cover_shape(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """Smallest (h, w) with the aspect ratio of ``height × width`` that covers ``target`` (h, w)."""
    scale = max(target[0] / height, target[1] / width)
    return max(target[0], round(height * scale)), max(target[1], round(width * scale))


def _frame_index(frame, stream, fps: float) -> Optional[int]:
    if frame.pts is None or stream.time_base is None:
        return None
    start = stream.start_time or 0
    return int(round(float((frame.pts - start) * stream.time_base) * fps))


def _decode_frames(container, stream, fps: float, wanted: range, cover_size: Optional[tuple[int, int]]) -> list:
    size = None
    if cover_size is not None:
        size = cover_shape(stream.codec_context.height, stream.codec_context.width, cover_size)
    seeked = False
    if wanted.start > 0 and stream.time_base is not None and fps > 0:
        target = int(wanted.start / fps / stream.time_base) + (stream.start_time or 0)
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            seeked = True
        except av_errors():  # not seekable: decode from the start
            seeked = False
    frames, first = [], True
    for counter, frame in enumerate(container.decode(stream)):
        index = _frame_index(frame, stream, fps) if seeked else counter
        if seeked and first and (index is None or index > wanted.start):
            # no timestamps, or the seek landed past the first frame wanted: decode from the start instead
            container.seek(0)
            return _decode_frames_plain(container, stream, wanted, size)
        first = False
        if index >= wanted.stop:
            break
        if index < wanted.start or (index - wanted.start) % wanted.step:
            continue
        frames.append(_to_rgb(frame, size))
        if index + wanted.step >= wanted.stop:
            break
    return frames


def av_errors() -> tuple[type[BaseException], ...]:
    import av  # noqa: PLC0415 (av, heavy and optional)

    return (av.FFmpegError, OSError, ValueError)


def _decode_frames_plain(container, stream, wanted: range, size) -> list:
    frames = []
    for index, frame in enumerate(container.decode(stream)):
        if index >= wanted.stop:
            break
        if index >= wanted.start and not (index - wanted.start) % wanted.step:
            frames.append(_to_rgb(frame, size))
    return frames


def _to_rgb(frame, size: Optional[tuple[int, int]]) -> np.ndarray:
    if size is None or size == (frame.height, frame.width):
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=size[1], height=size[0], interpolation="AREA")


def _read_frame_folder(folder: Path, wanted: range, cover_size: Optional[tuple[int, int]]) -> np.ndarray:

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise VideoInputError(f"folder {folder} has no frame images ({', '.join(sorted(FRAME_SUFFIXES))}): put "
                              "the frames there as numbered images or point data.video_path at a video file")
    picked = files[wanted.start:min(wanted.stop, len(files)):wanted.step]
    if not picked:
        raise VideoInputError(f"folder {folder} has {len(files)} frames, none from frame {wanted.start} on: lower "
                              "data.start_frame")
    frames = []
    for file in picked:
        try:
            image = Image.open(file).convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise VideoInputError(f"cannot read frame {file} ({error}): remove or replace it") from None
        if cover_size is not None:
            height, width = cover_shape(image.height, image.width, cover_size)
            if (height, width) != (image.height, image.width):
                image = image.resize((width, height), Image.BILINEAR, reducing_gap=None)
        frames.append(np.asarray(image))
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
    import av  # noqa: PLC0415 (av, heavy and optional)

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
