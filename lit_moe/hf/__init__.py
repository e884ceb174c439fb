"""Hugging Face checkpoints in and out: ``load_hf(folder) -> MoETransformer``, ``save_hf(model, folder)``,
``export_checkpoint(lightning_ckpt, folder)``, ``upcycle_hf(dense_folder, UpcycleSpec(...))``.

Families: Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE and the dense Llama and Qwen3 (``lit_moe/hf/families``).
"""

from lit_moe.hf.checkpoint import export_checkpoint, model_from_checkpoint
from lit_moe.hf.load import config_from_folder, load_hf, load_weights_into
from lit_moe.hf.save import save_hf, save_state_dict_hf
from lit_moe.hf.upcycle import UpcycleSpec, upcycle_hf

__all__ = ["UpcycleSpec", "config_from_folder", "export_checkpoint", "load_hf", "load_weights_into",
           "model_from_checkpoint", "save_hf", "save_state_dict_hf", "upcycle_hf"]
