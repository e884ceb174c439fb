import numpy as np
import pytest
import torch
from PIL import Image

from lit_video.data import ReferenceVideoDataModule
from lit_video.errors import VideoInputError
from lit_video.video_io import moving_shapes_frames, read_video, write_video


def make_clip(tmp_path, suffix: str, frames: int = 6) -> str:
    return str(write_video(tmp_path / f"clip{suffix}", moving_shapes_frames(frames, 32, 48), fps=8))


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_video_files_load_with_stride_and_resize(tmp_path, suffix):
    data = ReferenceVideoDataModule("shapes", make_clip(tmp_path, suffix, 9), num_frames=4, frame_stride=2,
                                    start_frame=1, height=32, width=32)
    video = data.video_CFHW
    assert video.shape == (3, 4, 32, 32) and video.min() >= -1 and video.max() <= 1
    batch = next(iter(data.train_dataloader()))
    assert batch["video"].shape == (1, 3, 4, 32, 32) and batch["prompt"] == ["shapes"]
    assert data.clip_fps == pytest.approx(data.fps / 2) and data.fps == pytest.approx(8.0, rel=0.05)  # GIF: 10 ms units


def test_selective_decode_equals_decoding_everything_then_picking(tmp_path):
    path = write_video(tmp_path / "long.mp4", moving_shapes_frames(40, 32, 48), fps=8)
    everything, _ = read_video(path)
    for start, count, stride in [(0, 5, 1), (13, 6, 3), (30, 4, 3), (36, 10, 1)]:
        picked, _ = read_video(path, start, count, stride)  # seeks to start, stops after the last frame
        np.testing.assert_array_equal(picked, everything[start:start + count * stride:stride])
    small, _ = read_video(path, 2, 3, 2, cover_size=(16, 16))  # resized while decoding, aspect kept
    assert small.shape == (3, 16, 24, 3)


def test_frame_folder_picks_the_right_frames(tmp_path):
    frames = moving_shapes_frames(6, 32, 32)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{index:03d}.png")
    data = ReferenceVideoDataModule("shapes", str(tmp_path), num_frames=3, frame_stride=2, height=32, width=32)
    expected = torch.from_numpy(frames[0:6:2]).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(data.video_CFHW, expected)  # same size: no resampling, exact frames 0, 2, 4


def test_demo_clip_is_generated_once(tmp_path):
    data = ReferenceVideoDataModule("shapes", None, num_frames=4, height=32, width=32, generated_clip_dir=str(tmp_path))
    assert data.video_path.parent == tmp_path and data.video_path.is_file()
    frames, _ = read_video(data.video_path)
    assert len(frames) == 4 and np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # it moves


def _not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is text, not a video")
    return str(path)


def _audio_only(tmp_path):
    import av

    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def _empty_folder(tmp_path):
    (tmp_path / "frames").mkdir()
    return str(tmp_path / "frames")


def _broken_frame(tmp_path):
    (tmp_path / "frames").mkdir()
    Image.fromarray(moving_shapes_frames(1, 32, 32)[0]).save(tmp_path / "frames" / "000.png")
    (tmp_path / "frames" / "001.png").write_bytes(b"not a png")
    return str(tmp_path / "frames")


@pytest.mark.parametrize("make_input, kwargs, message", [
    (lambda p: str(p / "missing.mp4"), {}, "does not exist"),
    (_not_a_video, {}, "cannot decode"),
    (_audio_only, {}, "no video stream"),
    (_empty_folder, {}, "no frame images"),
    (_broken_frame, {}, "cannot read frame"),
    (lambda p: make_clip(p, ".mp4", 6), {"num_frames": 4, "frame_stride": 2}, "has fewer than 7 frames"),
    (lambda p: make_clip(p, ".mp4", 6), {"prompt": "   "}, "prompt is empty"),
    (lambda p: make_clip(p, ".mp4", 6), {"height": 30}, "multiples of 8"),
    (lambda p: make_clip(p, ".mp4", 6), {"num_frames": 1}, "num_frames ≥ 2"),
])
def test_bad_input_raises_one_clear_error(tmp_path, make_input, kwargs, message):
    arguments = {"prompt": "shapes", "num_frames": 4, "height": 32, "width": 32, **kwargs}
    with pytest.raises(VideoInputError, match=message) as error:
        ReferenceVideoDataModule(video_path=make_input(tmp_path), **arguments)
    assert ":" in str(error.value)  # says what was wrong and what to do


def test_demo_clip_writers_in_two_processes_do_not_collide(tmp_path, monkeypatch):
    """A second process writing the demo clip while the first is still writing (simulated by nesting the
    second write inside the first, with another pid): both finish and the clip is whole."""
    import lit_video.data as data

    real_write, pids = data.write_video, iter([101, 202])
    monkeypatch.setattr(data.os, "getpid", lambda: next(pids))

    def write_and_let_the_other_process_run(path, frames, fps):
        real_write(path, frames, fps=fps)
        if not nested:
            nested.append(True)
            data.generated_demo_clip(str(tmp_path), 4, 16, 16)  # the other writer, start to finish

    nested = []
    monkeypatch.setattr(data, "write_video", write_and_let_the_other_process_run)
    path = data.generated_demo_clip(str(tmp_path), 4, 16, 16)
    assert nested and path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert data.read_video(path, num_frames=4)[0].shape[0] == 4
