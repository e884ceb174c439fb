import json

import pytest
import torch

from lit_video.components import ComponentsSpec, TinyComponentsConfig, build_components
from lit_video.errors import VideoInputError
from lit_video.probe import MotionEncodingProbe
from tests.lit_video.helpers import small_latents


@pytest.mark.parametrize("unet_kind", ["unet3d", "motion"])
def test_local_diffusers_folder_round_trip(tmp_path, unet_kind):
    tiny = build_components(ComponentsSpec(tiny=TinyComponentsConfig(unet_kind=unet_kind)))
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        getattr(tiny, name).save_pretrained(tmp_path / name)
    loaded = build_components(ComponentsSpec(pretrained_path=str(tmp_path)))
    assert loaded.unet_kind == unet_kind and type(loaded.unet) is type(tiny.unet)
    assert loaded.scheduler.config.steps_offset == 1 and not any(p.requires_grad for p in loaded.parameters())
    text = loaded.encode_prompts(["a red square"])
    torch.testing.assert_close(text, tiny.encode_prompts(["a red square"]), rtol=0, atol=0)
    with torch.no_grad():  # same weights; UNetMotionModel's loaded kernels may differ in the last ulp
        torch.testing.assert_close(loaded.predict(small_latents(), torch.tensor([500]), text),
                                   tiny.predict(small_latents(), torch.tensor([500]), text), rtol=1e-5, atol=1e-5)


def test_bad_checkpoint_folders_raise_clear_errors(tmp_path):
    with pytest.raises(VideoInputError, match="is not a folder: download the checkpoint"):
        build_components(ComponentsSpec(pretrained_path=str(tmp_path / "missing")))
    with pytest.raises(VideoInputError, match="has no unet/config.json"):
        build_components(ComponentsSpec(pretrained_path=str(tmp_path)))
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(VideoInputError, match="motion_adapter_path"):
        build_components(ComponentsSpec(pretrained_path=str(tmp_path)))


def test_probe_rejects_an_empty_edit_prompt():
    with pytest.raises(VideoInputError, match="edit_prompt is empty"):
        MotionEncodingProbe(edit_prompt="  ")
