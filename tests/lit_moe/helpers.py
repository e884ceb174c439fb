"""Small builders shared by the lit_moe tests."""

from __future__ import annotations

import torch

from lit_moe.model import MoELayer, MoETransformerConfig
from lit_moe.model.backends import Loop, expert_sums, scatter_weighted


def make_layer(router: str = "topk", num_experts: int = 6, top_k: int = 2, d_model: int = 16, d_expert: int = 24,
               seed: int = 0, **overrides) -> MoELayer:
    torch.manual_seed(seed)
    overrides.setdefault("aux_loss_coef", 0.0)
    config = MoETransformerConfig(vocab_size=32, d_model=d_model, n_heads=2, num_experts=num_experts, top_k=top_k,
                                  d_expert=d_expert, router=router, **overrides)
    layer = MoELayer(config)
    with torch.no_grad():  # larger router weights: non-trivial, well-separated routing
        layer.router.weight_ED.normal_(std=1.0)
        for weight in (layer.experts.w_gate_EDF, layer.experts.w_up_EDF, layer.experts.w_down_EFD):
            weight.normal_(std=0.3)
    return layer


def copy_weights(source: MoELayer, target: MoELayer) -> None:
    target.load_state_dict(source.state_dict())


class ConstantExperts(torch.nn.Module):
    """Test double for SwiGLUExperts whose outputs do not depend on the token: E_i(x) = c_i."""

    def __init__(self, constants_ED: torch.Tensor) -> None:
        super().__init__()
        self.constants_ED = torch.nn.Parameter(constants_ED.clone())

    backend = Loop()  # what the expert-group rule asks about the backend

    @property
    def num_experts(self) -> int:
        return self.constants_ED.shape[0]

    def outputs(self, x_SD, dispatch):
        return self.constants_ED[dispatch.expert_of_slot_S] + 0 * x_SD

    def raw(self, x_TD, dispatch):
        return self.outputs(x_TD[dispatch.token_of_slot_S], dispatch)

    def combine(self, x_TD, dispatch, weight_S, want_sums=False):
        raw_SD = self.raw(x_TD, dispatch)
        sums_ED = expert_sums(raw_SD, dispatch, self.num_experts) if want_sums else None
        return scatter_weighted(raw_SD, weight_S, dispatch, x_TD.shape[0]), sums_ED

    def forward_expert(self, expert, x_TD):
        return self.constants_ED[expert].expand_as(x_TD) + 0 * x_TD
