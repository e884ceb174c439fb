"""The method's two claims on the SHIPPED toy model (lit_video/assets/toy_t2v), measured as in
benchmarks/toy_world.py with fewer boundaries and seeds (≈ 1 min on one CPU thread).

The thresholds sit below the values measured when the model was trained (docs/video.md, "Toy world");
they are not tuned to pass: a retrained model that loses the effect fails here.
"""

import pytest

from lit_video.toy.evaluate import TOY_MODEL_PATH, compare_transfer, run_probe, train_recipe

BOUNDARIES = [0, 400, 600, 800, 900, 1000]
MOTION_BOUNDARY = 600  # the t* the probe measures on the shipped model (599 with 11 boundaries, 3 seeds)


@pytest.fixture(scope="module")
def probe():
    results, summary = run_probe(TOY_MODEL_PATH, edit_prompt="a blue circle moving", boundaries=BOUNDARIES,
                                 num_inference_steps=10, seeds=[0, 1])
    return {(r.kind, r.boundary): r for r in results}, summary


@pytest.fixture(scope="module")
def transfer():
    module, reference = train_recipe(TOY_MODEL_PATH, motion_boundary=MOTION_BOUNDARY, max_steps=150)
    return compare_transfer(module, reference, prompt="a blue circle moving", seeds=(0, 1, 2, 3))


def test_probe_finds_a_defined_motion_boundary(probe):
    rows, summary = probe
    t_star = summary["motion_boundary"]
    assert t_star is not None and 500 < t_star < 800, t_star  # measured 599 (11 boundaries, 3 seeds)
    assert summary["motion_source_resample"] >= 0.8  # measured 0.874 (3 seeds), 0.884 (these 2)
    assert summary["motion_full_edit"] <= 0.3  # new prompt on every step: motion lost (measured 0.071)
    assert rows[("late", 400)].motion >= 0.8  # new prompt only on t < 400: motion kept (0.871)
    assert rows[("early", 400)].motion <= 0.3  # new prompt on t >= 400: motion lost (0.094)


def test_probe_appearance_follows_the_new_prompt_as_the_late_window_grows(probe):
    rows, _ = probe
    blue = [rows[("late", b)].appearance for b in BOUNDARIES]
    assert blue == sorted(blue), blue  # measured 0, 0, 14.7, 62.0, 92.7, 97.5 (% of the shape in blue)
    assert rows[("late", 900)].appearance >= 80 and rows[("late", 400)].appearance <= 10
    # honest limit of this toy model: colour is decided in the same high-noise steps as motion, so no
    # window keeps the motion AND turns the shape blue (late 600: motion 0.47, blue 15 %)
    assert rows[("late", 600)].appearance < 50


@pytest.mark.xfail(strict=True, reason="not shown by the shipped toy model: measured windowed LoRA motion fidelity "
                   "0.133 vs base 0.369 and blue 22 % (6 seeds); strict, so a model that shows it makes this pass")
def test_windowed_lora_transfers_the_reference_motion_to_a_new_subject(transfer):
    assert transfer["windowed"]["motion"] > transfer["off"]["motion"]
    assert transfer["windowed"]["colour"] >= 50
