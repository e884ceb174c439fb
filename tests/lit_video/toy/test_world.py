"""The toy world's clips, prompts, tokenizer and colour score."""

import numpy as np
import pytest

from lit_video.toy.colour import colour_agreement, dominant_colour
from lit_video.toy.tokenizer import toy_tokenizer
from lit_video.toy.world import COLOURS, DIRECTIONS, SHAPES, ClipSpec, ToyWorld, centred_spec, parse_prompt, render_clip


def centroid(frame_HW3: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero((frame_HW3 != 128).any(-1))
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_the_shape_moves_the_way_the_prompt_says_and_stays_in_frame(direction):
    for seed in range(8):
        frames, prompt, spec = ToyWorld(seed, drop_prompt_probability=0, drop_direction_probability=0).sample()
        path = np.array([centroid(f) for f in frames])
        step = np.diff(path, axis=0).mean(0)
        assert np.sign(np.round(step)).tolist() == list(DIRECTIONS[spec.direction]), (prompt, step)
        assert prompt == f"a {spec.colour} {spec.shape} moving {spec.direction}"
    clip = render_clip(centred_spec("red", "circle", direction))
    area = (clip != 128).any(-1).sum((1, 2))
    assert area.min() >= 0.95 * area.max() > 50  # never clipped by the border (sub-pixel rounding only)


def test_stream_is_deterministic_and_covers_the_world():
    a = [ToyWorld(3).sample() for _ in range(1)]
    b = [ToyWorld(3).sample() for _ in range(1)]
    assert np.array_equal(a[0][0], b[0][0]) and a[0][1] == b[0][1]
    world = ToyWorld(0)
    specs = [world.sample()[2] for _ in range(400)]
    assert {s.colour for s in specs} == set(COLOURS) and {s.shape for s in specs} == set(SHAPES)
    assert {s.direction for s in specs} == set(DIRECTIONS)


def test_parse_prompt_and_tokenizer_one_id_per_word():
    assert parse_prompt("a blue circle moving") == ("blue", "circle", None)
    tokenizer = toy_tokenizer(8)
    ids = tokenizer(["a red square moving right"], padding="max_length", max_length=8).input_ids[0]
    assert len(ids) == 8 and ids[0] == tokenizer.bos_token_id and ids[6] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[:7] and len(set(ids[1:6])) == 5


def test_colour_score_reads_the_rendered_colour_not_the_background():
    clip = render_clip(ClipSpec("yellow", "triangle", "up", 16, 20))
    assert dominant_colour(clip) == "yellow"
    assert colour_agreement(clip, "a yellow triangle") > 99 and colour_agreement(clip, "a red circle") < 1
    grey = np.full_like(clip, 128)
    assert dominant_colour(grey) is None and colour_agreement(grey, "a red square") == 0.0


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_shape_direction_reads_the_rendered_path(direction):
    from lit_video.toy.evaluate import shape_direction

    assert shape_direction(render_clip(centred_spec("green", "square", direction))) == direction
    assert shape_direction(np.repeat(render_clip(centred_spec("green", "square", direction))[:1], 8, 0)) is None
