import copy
import re

import pytest
import torch

from lit_video.components import ComponentsSpec, TinyComponentsConfig, build_components
from lit_video.lora import (
    PRESET_PATTERNS,
    inject_lora,
    load_lora_with_diffusers,
    lora_enabled,
    lora_is_enabled,
    lora_layers,
    lora_parameters,
    save_lora_safetensors,
    target_module_names,
)
from tests.lit_video.helpers import small_latents

EXPECTED_LAYERS = {  # tiny UNet3D: 5 temporal transformers (transformer_in + 4), 4 spatial ones, 8 resnets
    "temporal_attn": 5 * 8, "temporal_attn1": 5 * 4, "temporal_all": 5 * 12, "spatial_all": 4 * 12,
    "temporal_layers": 5 * 12 + 8 * 4}  # + each resnet's TemporalConvLayer: 4 Conv3d


def wrapped_names(unet):
    return sorted(name for name, module in unet.named_modules() if module in set(lora_layers(unet)))


@pytest.mark.parametrize("preset", sorted(EXPECTED_LAYERS))
def test_presets_wrap_exactly_their_layers(tiny_components, preset):
    unet = tiny_components.unet
    inject_lora(unet, preset, "adapter", rank=4)
    names = wrapped_names(unet)
    assert len(names) == EXPECTED_LAYERS[preset]
    temporal = [n for n in names if re.search(r"(^|\.)(transformer_in|temp_attentions\.\d+)\.", n)]
    convs = [n for n in names if isinstance(unet.get_submodule(n).base_layer, torch.nn.Conv3d)]
    assert len(convs) == (8 * 4 if preset == "temporal_layers" else 0)
    assert all(re.search(r"\.temp_convs\.\d+\.conv[1-4]\.\d$", n) for n in convs)
    if preset == "temporal_layers":
        assert sorted(temporal + convs) == names
    elif preset == "spatial_all":
        assert not temporal and all(".attentions." in n for n in names)
    else:
        assert temporal == names
    if preset in ("temporal_attn", "temporal_attn1"):
        assert all(re.search(r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$", n) for n in names)
        assert all(".attn2." not in n for n in names) == (preset == "temporal_attn1")
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in unet.named_parameters() if ".lora_A.adapter." in n or ".lora_B.adapter." in n}
    assert len(trainable) == 2 * len(names)


def test_animatediff_presets_target_motion_modules():
    components = build_components(ComponentsSpec(tiny=TinyComponentsConfig(unet_kind="motion")))
    names = target_module_names(components.unet, "temporal_attn")
    assert names and all(".motion_modules." in n and re.search(r"attn[12]\.", n) for n in names)
    assert not any(".motion_modules." in n for n in target_module_names(components.unet, "spatial_all"))
    # no temporal convolutions in the AnimateDiff layout: temporal_layers is temporal_all there
    layers = target_module_names(components.unet, "temporal_layers")
    assert layers == target_module_names(components.unet, "temporal_all")
    with pytest.raises(ValueError, match="unknown LoRA target preset"):
        target_module_names(components.unet, "everything")
    assert set(PRESET_PATTERNS) == set(EXPECTED_LAYERS)


def test_disabled_adapters_reproduce_the_base_model_bit_for_bit(tiny_components, text):
    base = copy.deepcopy(tiny_components.unet)
    latents, timesteps = small_latents(), torch.tensor([700])
    with torch.no_grad():
        expected = base(latents, timesteps, encoder_hidden_states=text).sample
    inject_lora(tiny_components.unet, "temporal_attn", "temporal", rank=4)
    with torch.no_grad():
        assert torch.equal(tiny_components.predict(latents, timesteps, text), expected)  # B = 0 at init
        for parameter in lora_parameters(tiny_components.unet, "temporal"):
            parameter.normal_(0, 0.2)
        assert not torch.equal(tiny_components.predict(latents, timesteps, text), expected)
        with lora_enabled(tiny_components.unet, False):
            assert not lora_is_enabled(tiny_components.unet)
            assert torch.equal(tiny_components.predict(latents, timesteps, text), expected)
    assert lora_is_enabled(tiny_components.unet)
    assert all(p.requires_grad for p in lora_parameters(tiny_components.unet, "temporal"))  # restored


@pytest.mark.parametrize(("unet_kind", "preset"), [("unet3d", "temporal_attn"), ("motion", "temporal_attn"),
                                                    ("unet3d", "temporal_layers")])
def test_saved_lora_loads_with_diffusers_loader(tmp_path, unet_kind, preset):
    components = build_components(ComponentsSpec(tiny=TinyComponentsConfig(unet_kind=unet_kind)))
    components.eval()
    plain_unet = copy.deepcopy(components.unet)
    inject_lora(components.unet, preset, "temporal", rank=4, alpha=8.0)  # scale 2 travels in metadata
    with torch.no_grad():
        for parameter in lora_parameters(components.unet, "temporal"):
            parameter.normal_(0, 0.1)
    path = save_lora_safetensors(components.unet, ["temporal"], tmp_path / "pytorch_lora_weights.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all(k.startswith("unet.") and (".lora_A.weight" in k or ".lora_B.weight" in k) for k in keys)
    text = components.encode_prompts(["a"])
    latents, timesteps = small_latents(), torch.tensor([800])
    with torch.no_grad():
        ours = components.predict(latents, timesteps, text)
    components.unet = load_lora_with_diffusers(plain_unet, path)  # diffusers' own load_lora_adapter
    with torch.no_grad():
        assert torch.equal(components.predict(latents, timesteps, text), ours)
