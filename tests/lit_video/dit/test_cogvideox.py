import re

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler

from lit_video.components import ComponentsSpec, build_components
from lit_video.ddim import DDIMSchedule, ddim_step
from lit_video.dit.cogvideox import CogVideoXComponents
from lit_video.dit.config import TinyDiTConfig
from lit_video.dit.module import DiTMotionCustomizationModule
from lit_video.errors import VideoInputError
from lit_video.lora import lora_enabled, lora_is_enabled, lora_layers
from lit_video.sampling import guided_denoiser, inference_schedule, initial_noise, lora_schedule, sample_latents

FRAMES, SIZE = 9, 16
SPEC = ComponentsSpec(family="cogvideox", tiny_dit=TinyDiTConfig(num_attention_heads=4, attention_head_dim=8))


def module(**kwargs):
    return DiTMotionCustomizationModule(components=SPEC, lora_rank=4, **kwargs)


def test_tiny_cogvideox_round_trips_frames_and_refuses_bad_counts():
    components = build_components(SPEC)
    assert isinstance(components, CogVideoXComponents) and not components.is_flow
    assert components.prediction_type == "v_prediction"
    video = torch.rand(1, 3, FRAMES, SIZE, SIZE) * 2 - 1
    latents = components.encode_video(video)
    assert latents.shape == (1, 4, 3, 2, 2) == components.latent_shape(1, FRAMES, SIZE, SIZE)
    assert components.decode_latents(latents).shape == video.shape
    assert components.encode_prompts(["a"]).shape == (1, 32, 32)
    with pytest.raises(VideoInputError, match="8k \\+ 1"):
        components.encode_video(video[:, :, :5])


def test_window_in_cogvideox_timesteps_and_lora_only_on_joint_self_attention():
    m = module(motion_boundary=600, motion_boundary_units="modelscope_timestep")
    alphas = m.components.scheduler.alphas_cumprod.double()
    snr_star = (lambda a: a / (1 - a))(torch.tensor(0.16097, dtype=torch.float64))  # ModelScope ᾱ_600
    t_star = m.window.motion_boundary
    snr = alphas / (1 - alphas)
    assert snr[t_star] <= snr_star * 1.01 and snr[t_star - 1] > snr_star * 0.99
    assert all(m.window.sample(64).ge(t_star))
    names = [n for n, mod in m.components.unet.named_modules() if hasattr(mod, "lora_A")]
    assert names and all(re.fullmatch(r"transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)", n) for n in names)
    batch = {"video": torch.rand(1, 3, FRAMES, SIZE, SIZE) * 2 - 1, "prompt": ["a red square"]}
    [path], _ = m.training_losses(batch)
    path.loss.backward()
    assert all(p.grad is not None for p in path.parameters)


def test_ddim_step_matches_the_cogvideox_scheduler():
    components = build_components(SPEC)
    schedule = DDIMSchedule.from_scheduler(components.scheduler, 5)
    reference = CogVideoXDDIMScheduler.from_config(components.scheduler.config)
    reference.set_timesteps(5)
    assert schedule.timesteps == reference.timesteps.tolist()
    assert torch.equal(schedule.alphas_cumprod, reference.alphas_cumprod)
    x, v = torch.randn(1, 4, 3, 2, 2, dtype=torch.float64), torch.randn(1, 4, 3, 2, 2, dtype=torch.float64)
    for t in schedule.timesteps:
        ours = ddim_step(v, t, x, schedule)
        theirs = reference.step(v, t, x, return_dict=False)[0]
        assert torch.allclose(ours, theirs, atol=1e-10)


def test_diffusers_loads_the_saved_lora_into_cogvideox_pipeline_and_reproduces_our_windowed_sample(tmp_path):
    from diffusers import CogVideoXPipeline

    m = module(motion_boundary=500, motion_boundary_units="timestep")
    with torch.no_grad():
        for layer in lora_layers(m.components.unet):
            layer.lora_B["temporal"].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    path = m.save_lora(tmp_path / "pytorch_lora_weights.safetensors")
    components, steps, guidance = m.components, 6, 3.0
    text, negative = components.encode_prompts(["a red square"]), components.encode_prompts([""])
    noise = initial_noise(components, 1, FRAMES, SIZE, SIZE, seed=0)
    schedule = inference_schedule(components, steps)
    seen = []
    window = lora_schedule("windowed", m.window.motion_boundary)

    def recording(t):
        seen.append((t, window(t)))
        return window(t)

    ours = sample_latents(guided_denoiser(components, lambda t: text, negative, guidance, recording), noise.clone(),
                          schedule)
    assert [on for _, on in seen] == [t >= 500 for t in schedule.timesteps] and 0 < sum(on for _, on in seen) < steps

    base = build_components(SPEC)
    pipe = CogVideoXPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                             transformer=base.unet, scheduler=base.scheduler)
    pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="motion")

    def step_end(pipeline, index, timestep, kwargs):
        following = pipeline.scheduler.timesteps[min(index + 1, steps - 1)]
        (pipeline.transformer.enable_lora if window(int(following)) else pipeline.transformer.disable_lora)()
        return kwargs

    theirs = pipe(prompt_embeds=text, negative_prompt_embeds=negative, latents=noise.permute(0, 2, 1, 3, 4).clone(),
                  num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
                  output_type="latent", callback_on_step_end=step_end).frames
    assert torch.allclose(ours, theirs.permute(0, 2, 1, 3, 4), atol=1e-5)
    with lora_enabled(m.components.unet, False):
        assert not lora_is_enabled(m.components.unet)

