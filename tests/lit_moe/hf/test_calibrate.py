"""Default vectors from a calibration pass equal the per-expert mean raw outputs computed by hand."""

from __future__ import annotations

import torch

from lit_moe.hf.calibrate import calibrate_default_vectors
from lit_moe.model import MoETransformer, MoETransformerConfig


def test_calibration_sets_mean_raw_expert_outputs():
    torch.manual_seed(0)
    config = MoETransformerConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=2, num_experts=6, top_k=2,
                                  d_expert=16, max_seq_len=16, router="default", init_std=0.1)
    model = MoETransformer(config).eval()
    batches = [torch.randint(0, 50, (2, 16)) for _ in range(2)]
    inputs: dict[int, list[torch.Tensor]] = {i: [] for i in model.moe_layers()}
    hooks = [layer.register_forward_hook(lambda _m, args, _o, i=i: inputs[i].append(args[0].reshape(-1, 32)))
             for i, layer in model.moe_layers().items()]
    assert calibrate_default_vectors(model, batches) == 2
    for hook in hooks:
        hook.remove()
    assert not model.training  # mode restored
    for index, layer in model.moe_layers().items():
        x_TD = torch.cat(inputs[index]).double()
        chosen_TK = layer.router(x_TD.float()).expert_idx_TK
        w_gate, w_up, w_down = (w.double() for w in (layer.experts.w_gate_EDF, layer.experts.w_up_EDF,
                                                      layer.experts.w_down_EFD))
        for expert in range(config.num_experts):
            rows = (chosen_TK == expert).any(-1)
            x = x_TD[rows]
            expected = (torch.nn.functional.silu(x @ w_gate[expert]) * (x @ w_up[expert])) @ w_down[expert]
            if rows.any():
                torch.testing.assert_close(layer.default_vectors_ED[expert].double(), expected.mean(0),
                                           rtol=1e-5, atol=1e-6)
            else:
                assert layer.default_vectors_ED[expert].abs().sum() == 0
