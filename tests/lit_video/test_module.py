import pytest
import torch
from lightning.pytorch import Trainer

from lit_video.callbacks import ExportLoRA
from lit_video.components import ComponentsSpec
from lit_video.data import ReferenceVideoDataModule
from lit_video.lora import lora_is_enabled
from lit_video.module import MotionCustomizationModule, appearance_debiased_mse


def tiny_module(**kwargs) -> MotionCustomizationModule:
    defaults = dict(components=ComponentsSpec(), lora_rank=4)
    return MotionCustomizationModule(**{**defaults, **kwargs})


def tiny_data(tmp_path, **kwargs) -> ReferenceVideoDataModule:
    defaults = dict(prompt="a red square moving", num_frames=4, height=32, width=32, steps_per_epoch=2,
                    generated_clip_dir=str(tmp_path))
    return ReferenceVideoDataModule(**{**defaults, **kwargs})


@pytest.mark.parametrize("preset", ["temporal_attn", "motion_director"])
def test_only_preset_lora_trains_and_changes_after_a_step(tmp_path, preset):
    module = tiny_module(lora_preset=preset, spatial_path_skip_probability=0.0)
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    temporal = {n for n in names if ".lora_A.temporal." in n or ".lora_B.temporal." in n}
    spatial = {n for n in names if ".lora_A.spatial." in n or ".lora_B.spatial." in n}
    assert temporal and all(("temp_attentions" in n or "transformer_in" in n) for n in temporal)
    assert names == temporal | spatial and bool(spatial) == (preset == "motion_director")
    assert all(".attentions." in n for n in spatial)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
                      callbacks=[ExportLoRA(str(tmp_path / "lora.safetensors"))])
    trainer.fit(module, datamodule=tiny_data(tmp_path))
    changed = {n for n, p in module.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == names  # every LoRA tensor moved, nothing else did
    assert (tmp_path / "lora.safetensors").is_file()


def test_recipe_parameter_budget_and_window_defaults():
    windowed, baseline = tiny_module(), tiny_module(lora_preset="motion_director")
    count = lambda m: sum(p.numel() for p in m.trainable_parameters())  # noqa: E731
    assert count(windowed) < 0.5 * count(baseline)
    assert windowed.window.restrict_to_window and not baseline.window.restrict_to_window
    assert windowed.lora_in_window_only and not baseline.lora_in_window_only
    assert not tiny_module(train_in_motion_window=False).window.restrict_to_window


def test_motion_director_paths_update_only_their_adapter(tmp_path):
    module = tiny_module(lora_preset="motion_director", spatial_path_skip_probability=0.0)
    with torch.no_grad():  # make the LoRA branches non-zero so gradients can reach both A and B
        for parameter in module.trainable_parameters():
            parameter.normal_(0, 0.05)
    data = tiny_data(tmp_path)
    batch = {"video": data.video_CFHW[None], "prompt": [data.prompt]}
    losses, timesteps = module.training_losses(batch)
    assert [p.name for p in losses] == ["loss_spatial", "loss_temporal"]
    spatial, temporal = module.trainable_parameters("spatial"), module.trainable_parameters("temporal")
    # the spatial path runs with the temporal LoRA off: no gradient reaches it at all
    assert all(g is None for g in torch.autograd.grad(losses[0].loss, temporal, allow_unused=True, retain_graph=True))
    assert all(g is not None for g in torch.autograd.grad(losses[0].loss, spatial, allow_unused=True))
    assert losses[0].parameters == spatial and losses[1].parameters == temporal
    assert lora_is_enabled(module.components.unet, "temporal")  # switched back on after the spatial path


def test_appearance_debiased_loss_formula():
    prediction, target = torch.randn(1, 4, 5, 2, 2), torch.randn(1, 4, 5, 2, 2)
    anchor = 3
    expected = ((2 ** 0.5 * prediction - prediction[:, :, anchor:anchor + 1])
                - (2 ** 0.5 * target - target[:, :, anchor:anchor + 1])).pow(2).mean()
    torch.testing.assert_close(appearance_debiased_mse(prediction, target, anchor), expected)
    assert appearance_debiased_mse(target, target, anchor) == 0


@pytest.mark.parametrize("preset", ["temporal_attn", "motion_director"])
def test_lora_active_exactly_on_motion_steps_during_sampling(preset):
    module = tiny_module(lora_preset=preset, motion_boundary=600)
    seen: list[tuple[int, bool]] = []
    hook = module.components.unet.register_forward_pre_hook(
        lambda unet, args: seen.append((int(args[1][0]), lora_is_enabled(unet))))
    videos = module.sample(["a blue disc"], num_frames=2, height=16, width=16, num_inference_steps=10,
                           guidance_scale=3.0)
    hook.remove()
    assert videos.shape == (1, 3, 2, 16, 16) and videos.abs().max() <= 1
    assert [t for t, _ in seen] == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]  # one CFG-batched call each
    expected = [t >= 600 if preset == "temporal_attn" else True for t, _ in seen]
    assert [active for _, active in seen] == expected
    assert lora_is_enabled(module.components.unet)  # left enabled for training
