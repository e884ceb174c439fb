"""The table that maps every tensor of a Hugging Face checkpoint onto a slice of one of our parameters.

Shape legend: E experts, D model width, F expert hidden width.

An ``Entry`` says: HF tensor ``hf_key`` equals ``param[rows]`` of our state dict, transposed per
expert for the stacked expert weights (``w_gate_EDF[e] = gate_proj.weight.T``). Import copies each
HF tensor straight into its slice (no second copy of the model); export reads the slices back.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_moe.hf.families.base import Family
from lit_moe.model.config import MoETransformerConfig


@dataclass(frozen=True)
class Entry:
    hf_key: str
    param: str  # our state-dict name
    rows: tuple[int, int] | None = None  # dim-0 slice of ``param``; None = the whole tensor
    expert: int | None = None  # stacked expert weights: param[expert] = hf.T
    scale: float = 1.0  # exported HF tensor = ours * scale (import divides); exact powers of two only

    def hf_shape(self, param_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.expert is not None:
            rows, cols = param_shape[1:]
            return (cols, rows)
        if self.rows is not None:
            return (self.rows[1] - self.rows[0], *param_shape[1:])
        return tuple(param_shape)


def build_entries(config: MoETransformerConfig, family: Family, shared_gate_ours: bool) -> list[Entry]:
    """Every HF tensor of ``family`` for a model of ``config``.

    ``shared_gate_ours``: our shared experts carry their own sigmoid gate (else, for Qwen2-MoE, the
    exported gate is zero and the down projection is doubled: sigmoid(0) = 1/2).
    """
    entries = [Entry("model.embed_tokens.weight", "embed.weight"), Entry("model.norm.weight", "final_norm.weight")]
    if not config.tie_embeddings:
        entries.append(Entry("lm_head.weight", "lm_head.weight"))
    q_width, kv_width = config.n_heads * config.head_dim, config.kv_heads * config.head_dim
    spans = {"q": (0, q_width), "k": (q_width, q_width + kv_width), "v": (q_width + kv_width, q_width + 2 * kv_width)}
    up, gate_name, down = family.expert_names[1], family.expert_names[0], family.expert_names[2]
    for layer in range(config.n_layers):
        hf, ours = f"model.layers.{layer}.", f"blocks.{layer}."
        entries += [Entry(hf + "input_layernorm.weight", ours + "attn_norm.weight"),
                    Entry(hf + "post_attention_layernorm.weight", ours + "mlp_norm.weight"),
                    Entry(hf + "self_attn.o_proj.weight", ours + "attn.out.weight")]
        for name, span in spans.items():
            entries.append(Entry(hf + f"self_attn.{name}_proj.weight", ours + "attn.qkv.weight", rows=span))
            if config.qkv_bias:
                entries.append(Entry(hf + f"self_attn.{name}_proj.bias", ours + "attn.qkv.bias", rows=span))
        if config.out_bias:
            entries.append(Entry(hf + "self_attn.o_proj.bias", ours + "attn.out.bias"))
        if config.qk_norm != "none":
            entries += [Entry(hf + "self_attn.q_norm.weight", ours + "attn.q_norm.weight"),
                        Entry(hf + "self_attn.k_norm.weight", ours + "attn.k_norm.weight")]
        if not config.is_moe_block(layer):
            entries += [Entry(hf + f"mlp.{n}_proj.weight", ours + f"mlp.{n}.weight") for n in ("gate", "up", "down")]
            continue
        moe = hf + family.moe_prefix + "."
        entries.append(Entry(moe + "gate.weight", ours + "mlp.router.weight_ED"))
        for e in range(config.num_experts):
            entries += [Entry(moe + f"experts.{e}.{gate_name}.weight", ours + "mlp.experts.w_gate_EDF", expert=e),
                        Entry(moe + f"experts.{e}.{up}.weight", ours + "mlp.experts.w_up_EDF", expert=e),
                        Entry(moe + f"experts.{e}.{down}.weight", ours + "mlp.experts.w_down_EFD", expert=e)]
        if family.shared_expert and config.shared_hidden:
            scale = 1.0 if shared_gate_ours else 2.0
            entries += [Entry(moe + "shared_expert.gate_proj.weight", ours + "mlp.shared_experts.gate.weight"),
                        Entry(moe + "shared_expert.up_proj.weight", ours + "mlp.shared_experts.up.weight"),
                        Entry(moe + "shared_expert.down_proj.weight", ours + "mlp.shared_experts.down.weight",
                              scale=scale)]
            if shared_gate_ours:
                entries.append(Entry(moe + "shared_expert_gate.weight", ours + "mlp.shared_experts.output_gate.weight"))
    return entries


def shared_expert_fillers(config: MoETransformerConfig, family: Family, shared_gate_ours: bool) -> dict[str, tuple]:
    """HF tensors that exist in the family but not in our model, with their shapes; they are
    exported as zeros (a Qwen2-MoE shared expert of width 0, or the zero gate of an ungated one)."""
    if not family.shared_expert:
        return {}
    fillers = {}
    d = config.d_model
    for layer in range(config.n_layers):
        if not config.is_moe_block(layer):
            continue
        moe = f"model.layers.{layer}.{family.moe_prefix}."
        if not config.shared_hidden:
            fillers.update({moe + "shared_expert.gate_proj.weight": (0, d),
                            moe + "shared_expert.up_proj.weight": (0, d),
                            moe + "shared_expert.down_proj.weight": (d, 0)})
        if not shared_gate_ours:
            fillers[moe + "shared_expert_gate.weight"] = (1, d)
    return fillers
