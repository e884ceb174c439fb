import re

import pytest
import torch

from lit_video.components import ComponentsSpec, build_components
from lit_video.dit.config import TinyDiTConfig
from lit_video.dit.latte import LatteComponents
from lit_video.dit.module import DiTMotionCustomizationModule
from lit_video.errors import VideoInputError
from lit_video.lora import load_lora_with_diffusers, lora_enabled, lora_layers
from lit_video.sampling import guided_denoiser, inference_schedule, initial_noise, lora_schedule, sample_latents

FRAMES, SIZE = 4, 16
SPEC = ComponentsSpec(family="latte", tiny_dit=TinyDiTConfig(num_attention_heads=3, attention_head_dim=8))


def module(**kwargs):
    return DiTMotionCustomizationModule(components=SPEC, lora_preset="latte_temporal", lora_rank=4,
                                        motion_boundary_units="timestep", **kwargs)


def test_latte_temporal_preset_trains_only_the_temporal_blocks_and_disabled_is_the_base_bit_for_bit():
    m = module(motion_boundary=600)
    unet = m.components.unet
    names = [n for n, mod in unet.named_modules() if hasattr(mod, "lora_A")]
    assert names and all(re.fullmatch(r"temporal_transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)", n)
                         for n in names)
    base = build_components(SPEC)
    assert isinstance(base, LatteComponents)
    latents, t = torch.randn(1, 4, FRAMES, 8, 8), torch.tensor([700])
    text = base.encode_prompts(["a red square"])
    expected = base.predict(latents, t, text)
    assert expected.shape == latents.shape  # the learned-variance half is dropped
    optimizer = torch.optim.AdamW(m.trainable_parameters(), lr=1e-2)
    batch = {"video": torch.rand(1, 3, FRAMES, SIZE, SIZE) * 2 - 1, "prompt": ["a red square"]}
    for _ in range(3):
        [path], timesteps = m.training_losses(batch)
        assert timesteps.min() >= 600
        path.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        assert not torch.equal(m.components.predict(latents, t, text), expected)
        with lora_enabled(unet, False):
            assert torch.equal(m.components.predict(latents, t, text), expected)
    with pytest.raises(VideoInputError, match="exactly 4 frames"):
        base.predict(latents[:, :, :2], t, text)
    assert base.predict(latents[:, :, :1], t, text).shape == (1, 4, 1, 8, 8)  # image mode: the baseline's spatial path


def test_diffusers_loads_the_saved_lora_into_a_latte_transformer_and_lattepipeline_reproduces_our_windowed_sample(
        tmp_path):
    from diffusers import LattePipeline

    m = module(motion_boundary=500)
    with torch.no_grad():
        for layer in lora_layers(m.components.unet):
            layer.lora_B["temporal"].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    path = m.save_lora(tmp_path / "pytorch_lora_weights.safetensors")
    components, steps, guidance = m.components, 5, 3.0
    text, negative = components.encode_prompts(["a red square"]), components.encode_prompts([""])
    noise = initial_noise(components, 1, FRAMES, SIZE, SIZE, seed=0)
    window = lora_schedule("windowed", m.window.motion_boundary)
    ours = sample_latents(guided_denoiser(components, lambda t: text, negative, guidance, window), noise.clone(),
                          inference_schedule(components, steps))

    base = build_components(SPEC)
    transformer = load_lora_with_diffusers(base.unet, path, adapter_name="motion", prefix="transformer")
    pipe = LattePipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                         transformer=transformer, scheduler=base.scheduler)

    def step_end(pipeline, index, timestep, kwargs):
        following = pipeline.scheduler.timesteps[min(index + 1, steps - 1)]
        (pipeline.transformer.enable_lora if window(int(following)) else pipeline.transformer.disable_lora)()
        return kwargs

    theirs = pipe(prompt_embeds=text, negative_prompt=None, negative_prompt_embeds=negative, latents=noise.clone(),
                  video_length=FRAMES,
                  height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance, output_type="latents",
                  callback_on_step_end=step_end, mask_feature=False).frames
    assert torch.allclose(ours, theirs, atol=1e-5)
    pipe.transformer.disable_lora()
    plain = pipe(prompt_embeds=text, negative_prompt=None, negative_prompt_embeds=negative, latents=noise.clone(),
                 video_length=FRAMES, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
                 output_type="latents", mask_feature=False).frames
    assert not torch.allclose(plain, theirs, atol=1e-4)
