"""Llama (dense): GQA, rope scalings, ``attention_bias`` on q/k/v/o, no q/k norm."""

from lit_moe.errors import UserInputError
from lit_moe.hf.families.base import (
    Family,
    attention_fields,
    common_unsupported,
    dense_fields,
    hf_attention_config,
)


def _fields(hf) -> dict:
    if getattr(hf, "mlp_bias", False):
        raise UserInputError("llama with mlp_bias=true is not supported")
    bias = bool(getattr(hf, "attention_bias", False))
    return {**attention_fields(hf), **dense_fields(hf), "qkv_bias": bias, "out_bias": bias}


def _hf_config(config) -> dict:
    return {**hf_attention_config(config), "intermediate_size": config.dense_hidden, "attention_bias": config.qkv_bias,
            "mlp_bias": False}


FAMILY = Family(
    model_type="llama", architecture="LlamaForCausalLM", config_fields=_fields, hf_config=_hf_config,
    unsupported=lambda c: common_unsupported(c, qk_norm="none", dense=True, bias="all"))
