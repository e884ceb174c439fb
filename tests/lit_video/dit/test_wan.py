import re

import pytest
import torch

from lit_video.components import build_components
from lit_video.dit.module import window_sampler
from lit_video.dit.wan import WanComponents, tiny_wan_transformer
from lit_video.errors import VideoInputError
from lit_video.lora import lora_enabled, lora_is_enabled, lora_layers
from lit_video.sampling import guided_denoiser, inference_schedule, initial_noise, lora_schedule, sample_latents
from tests.lit_video.dit.helpers import FRAMES, SIZE, batch, wan_module, wan_spec

ATTN1 = re.compile(r"blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)")


def wrapped(model, adapter):
    return sorted(name for name, module in model.named_modules()
                  if hasattr(module, "lora_A") and adapter in module.lora_A)


def test_tiny_wan_components_shapes_and_text_masking():
    components = build_components(wan_spec())
    assert isinstance(components, WanComponents) and components.is_flow and components.scheduler.shift == 3.0
    latents = components.encode_video(batch()["video"])
    assert latents.shape == (1, 16, 2, 2, 2) == components.latent_shape(1, FRAMES, SIZE, SIZE)
    text = components.encode_prompts(["ab", "a longer prompt"])
    lengths = components.tokenizer(["ab", "a longer prompt"], return_tensors="pt", padding=True).attention_mask.sum(1)
    assert lengths[0] < lengths[1]
    assert text[0, lengths[0]:].abs().sum() == 0 and text[0, :lengths[0]].abs().sum(-1).min() > 0  # zero after the end
    assert text[1, :lengths[1]].abs().sum(-1).min() > 0 and text[1, lengths[1]:].abs().sum() == 0
    assert components.decode_latents(latents).shape == (1, 3, FRAMES, SIZE, SIZE)
    with pytest.raises(VideoInputError, match="4 \\+ 1 frames"):
        components.encode_video(torch.zeros(1, 3, 4, SIZE, SIZE))


@pytest.mark.parametrize("preset, expected", [
    ("self_attn", ATTN1),
    ("self_attn_qk", re.compile(r"blocks\.\d+\.attn1\.(to_q|to_k)")),
])
def test_lora_only_on_the_preset_trains_and_disabled_reproduces_the_base_bit_for_bit(preset, expected):
    module = wan_module(preset)
    unet = module.components.unet
    names = wrapped(unet, "temporal")
    assert names and all(expected.fullmatch(n) for n in names)
    base = build_components(wan_spec())  # the same seed rebuilds the base model
    linears = [n for n, m in base.unet.named_modules() if isinstance(m, torch.nn.Linear)]
    assert names == sorted(n for n in linears if expected.fullmatch(n))
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)

    latents, t = torch.randn(1, 16, 2, 2, 2), torch.tensor([800.0])
    text = base.encode_prompts(["a red square moving right"])
    expected_output = base.predict(latents, t, text)
    optimizer = torch.optim.AdamW(module.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(4):
        [path], _ = module.training_losses(batch())
        path.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(path.loss.item())
    with torch.no_grad():
        assert not torch.equal(module.components.predict(latents, t, text), expected_output)  # trained
        with lora_enabled(unet, False):
            assert torch.equal(module.components.predict(latents, t, text), expected_output)
    assert all(layer.lora_B["temporal"].weight.abs().sum() > 0 for layer in lora_layers(unet))


def test_motion_director_baseline_adapters_are_disjoint_and_each_trains_its_own():
    module = wan_module("motion_director", spatial_path_skip_probability=0.0)
    unet = module.components.unet
    spatial, temporal = wrapped(unet, "spatial"), wrapped(unet, "temporal")
    assert not set(spatial) & set(temporal)
    assert all(re.fullmatch(r"blocks\.\d+\.attn1\..+", n) for n in temporal)
    assert all(re.fullmatch(r"blocks\.\d+\.(attn2|ffn)\..+", n) for n in spatial)
    assert not module.window.restrict_to_window
    losses, _ = module.training_losses(batch())
    assert [p.name for p in losses] == ["loss_spatial", "loss_temporal"]
    for path in losses:
        grads = torch.autograd.grad(path.loss, path.parameters, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    recipe = sum(p.numel() for p in wan_module("self_attn").trainable_parameters())
    assert recipe < 0.5 * sum(p.numel() for p in module.trainable_parameters())


def test_training_noise_levels_stay_in_the_window():
    module = wan_module(motion_boundary=600, motion_boundary_units="modelscope_timestep")
    assert module.window.boundary_sigma == pytest.approx(0.70, abs=0.01)
    for seed in range(5):
        torch.manual_seed(seed)
        _, timesteps = module.training_losses(batch())
        assert timesteps.min() >= module.window.motion_boundary - 1e-3


def test_sampling_enables_lora_exactly_on_the_window_steps():
    module = wan_module(motion_boundary=0.7)
    components = module.components
    seen = []
    predict = components.predict

    def recording(latents, timesteps, text):
        seen.append((float(timesteps[0]), lora_is_enabled(components.unet)))
        return predict(latents, timesteps, text)

    components.predict = recording
    module.sample(["a red square"], FRAMES, SIZE, SIZE, num_inference_steps=8, guidance_scale=3.0)
    schedule = inference_schedule(components, 8)
    assert [t for t, _ in seen] == pytest.approx(schedule.timesteps)
    assert [on for _, on in seen] == [t >= 700.0 for t in schedule.timesteps]
    assert 0 < sum(on for _, on in seen) < len(seen)
    assert lora_is_enabled(components.unet)  # state restored after sampling


def test_diffusers_loads_the_saved_lora_into_wan_pipeline_and_reproduces_our_windowed_sample(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    module = wan_module(rank=4, motion_boundary=0.7)
    with torch.no_grad():
        for layer in lora_layers(module.components.unet):  # a non-trivial LoRA without a training loop
            layer.lora_B["temporal"].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    path = module.save_lora(tmp_path / "pytorch_lora_weights.safetensors")
    components, steps, guidance = module.components, 6, 3.0
    text = components.encode_prompts(["a red square moving right"])
    negative = components.encode_prompts([""])
    noise = initial_noise(components, 1, FRAMES, SIZE, SIZE, seed=0)
    schedule = inference_schedule(components, steps)
    denoise = guided_denoiser(components, lambda t: text, negative, guidance,
                              lora_schedule("windowed", module.window.motion_boundary))
    ours = sample_latents(denoise, noise.clone(), schedule)

    base = build_components(wan_spec())
    pipe = WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                       transformer=base.unet, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="motion")
    boundary = module.window.motion_boundary

    def window(pipeline, index, timestep, kwargs):  # the LoRA for the NEXT step
        following = pipeline.scheduler.timesteps[min(index + 1, steps - 1)]
        (pipeline.transformer.enable_lora if float(following) >= boundary else pipeline.transformer.disable_lora)()
        return kwargs

    theirs = pipe(prompt_embeds=text, negative_prompt_embeds=negative, latents=noise.clone(), num_frames=FRAMES,
                  height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
                  callback_on_step_end=window).frames
    assert torch.allclose(ours, theirs, atol=1e-5)
    pipe.transformer.disable_lora()  # and without the LoRA the pipeline gives something else
    plain = pipe(prompt_embeds=text, negative_prompt_embeds=negative, latents=noise.clone(), num_frames=FRAMES,
                 height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
                 output_type="latent").frames
    assert not torch.allclose(plain, theirs, atol=1e-4)


def test_loads_a_saved_wan_pipeline_folder(tmp_path):
    from diffusers import UniPCMultistepScheduler, WanPipeline

    tiny = build_components(wan_spec())
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    WanPipeline(tokenizer=tiny.tokenizer, text_encoder=tiny.text_encoder, vae=tiny.vae, transformer=tiny.unet,
                scheduler=scheduler).save_pretrained(tmp_path)
    loaded = build_components(type(wan_spec())(pretrained_path=str(tmp_path)))
    assert isinstance(loaded, WanComponents) and loaded.scheduler.shift == 5.0
    text = tiny.encode_prompts(["a red square"])
    assert torch.equal(loaded.encode_prompts(["a red square"])[:, :text.shape[1]], text)
    latents, t = torch.randn(1, 16, 2, 2, 2), torch.tensor([500.0])
    assert torch.allclose(loaded.predict(latents, t, text), tiny.predict(latents, t, text), atol=1e-6)


def test_wan22_experts_split_by_boundary_ratio_and_the_window_must_lie_in_the_high_noise_expert():
    from lit_video.dit.config import TinyDiTConfig

    tiny = build_components(wan_spec())
    torch.manual_seed(1)
    low_noise = tiny_wan_transformer(TinyDiTConfig())
    components = WanComponents(tiny.unet, tiny.text_encoder, tiny.vae, tiny.tokenizer, tiny.scheduler, 32,
                               transformer_2=low_noise, boundary_ratio=0.875)
    latents, text = torch.randn(1, 16, 2, 2, 2), tiny.encode_prompts(["a"])
    with torch.no_grad():
        high = components.predict(latents, torch.tensor([900.0]), text)
        assert torch.equal(high, tiny.unet(latents, torch.tensor([900.0]), text, return_dict=False)[0])
        low = components.predict(latents, torch.tensor([800.0]), text)
        assert torch.equal(low, low_noise(latents, torch.tensor([800.0]), text, return_dict=False)[0])
    with pytest.raises(VideoInputError, match="high-noise expert"):
        window_sampler(components, 0.7, "sigma", True)
    assert window_sampler(components, 0.9, "sigma", True).motion_boundary == pytest.approx(900.0)
