"""BatchTopK sparse crosscoder over paired activations of M models (arXiv 2603.05805), plain torch.

Shape legend: B batch (tokens), M models, D activation width per model, I = M*D concatenated input,
L dictionary size (latents), S designated shared latents, N kept (token, latent) pairs, C candidates
per row.

    f = BatchTopK(relu(sum_m W_enc^m (a^m - b_dec^m) + b_enc)),   â^m = W_dec^m f + b_dec^m

BatchTopK keeps the B*k largest ``f_i * (sum_m ||d_i^m||)`` over the whole batch (the decoder-norm
weighting makes a latent with a small decoder pay for its activation). The first S latents are
shared: one decoder vector serves every model (a single parameter, so the decoders are identical
by construction). At inference a learned threshold replaces the batch top-k: an EMA of the
smallest kept score. Training only back-propagates through the kept pairs: the encoder gradient is
a sparse-times-dense product and the decoder is an ``embedding_bag`` over the kept latents.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SparseCodes:
    """Kept latents in row-major order: token ``rows_N[n]`` activates latent ``cols_N[n]`` by ``values_N[n]``."""

    rows_N: torch.Tensor
    cols_N: torch.Tensor
    values_N: torch.Tensor
    batch: int
    dict_size: int

    def dense(self) -> torch.Tensor:
        """[B, L] codes (for metrics and tests)."""
        out_BL = self.values_N.new_zeros(self.batch, self.dict_size)
        out_BL[self.rows_N, self.cols_N] = self.values_N
        return out_BL

    def offsets_B(self) -> torch.Tensor:
        return torch.searchsorted(self.rows_N, torch.arange(self.batch, device=self.rows_N.device))


class _KeptPreactivations(torch.autograd.Function):
    """values[n] = pre[rows[n], cols[n]] of pre = x W + b, with gradients only through the kept pairs
    (W: a sparse [L, B] x dense [B, I] product; b: an index_add) instead of a dense [B, L] gradient."""

    @staticmethod
    def forward(ctx, x_BI, weight_IL, bias_L, pre_BL, rows_N, cols_N):
        ctx.save_for_backward(x_BI, weight_IL, rows_N, cols_N)
        return pre_BL[rows_N, cols_N]

    @staticmethod
    def backward(ctx, grad_N):
        x_BI, weight_IL, rows_N, cols_N = ctx.saved_tensors
        batch, dict_size = x_BI.shape[0], weight_IL.shape[1]
        grad_N = grad_N.to(x_BI.dtype)
        grad_x_BI = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            order_N = torch.argsort(cols_N, stable=True)
            grad_LB = torch.sparse_csr_tensor(_crow(cols_N, dict_size), rows_N[order_N], grad_N[order_N],
                                              (dict_size, batch), check_invariants=False)
            grad_weight_IL = (grad_LB @ x_BI).t()
            if ctx.needs_input_grad[0]:  # rows_N is sorted (row-major codes)
                grad_BL = torch.sparse_csr_tensor(_crow(rows_N, batch), cols_N, grad_N, (batch, dict_size),
                                                  check_invariants=False)
                grad_x_BI = grad_BL @ weight_IL.t()
        grad_bias_L = torch.zeros(dict_size, dtype=grad_N.dtype, device=grad_N.device).index_add_(0, cols_N, grad_N)
        return grad_x_BI, grad_weight_IL, grad_bias_L, None, None, None


def _crow(sorted_index_N: torch.Tensor, size: int) -> torch.Tensor:
    """CSR row pointers of entries whose (sorted) row index is ``sorted_index_N``."""
    crow = torch.zeros(size + 1, dtype=torch.long, device=sorted_index_N.device)
    crow[1:] = torch.bincount(sorted_index_N, minlength=size).cumsum(0)
    return crow


def batch_topk_positions(scores_BL: torch.Tensor, count: int, row_cap: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(rows, cols) of the ``count`` largest scores of the batch, row-major, and the per-row candidate
    cap to use next time. Exact: a per-row top-``row_cap`` pre-selection is followed by the global
    top-``count``; if some row had all its candidates selected (it might hold more), the cap doubles
    and the selection is redone."""
    batch, dict_size = scores_BL.shape
    count = min(count, scores_BL.numel())
    while True:
        cap = min(max(row_cap, -(-count // batch) + 1), dict_size)
        cand_BC, cand_idx_BC = scores_BL.topk(cap, dim=1, sorted=False) if cap < dict_size else (
            scores_BL, torch.arange(dict_size, device=scores_BL.device).expand(batch, dict_size))
        chosen = cand_BC.reshape(-1).topk(count, sorted=False)
        if cap == dict_size:
            break
        threshold = chosen.values.min()
        if not bool((cand_BC.min(dim=1).values > threshold).any()):
            break
        row_cap *= 2
    mask_BC = torch.zeros(cand_BC.shape, dtype=torch.bool, device=scores_BL.device)
    mask_BC.view(-1)[chosen.indices] = True
    rows_N, slot_N = mask_BC.nonzero(as_tuple=True)
    return rows_N, cand_idx_BC[rows_N, slot_N], row_cap


class BatchTopKCrosscoder(nn.Module):
    """Crosscoder with designated shared latents, decoder-norm-weighted BatchTopK and a learned threshold.

    Args:
        num_models: Models whose activations are reconstructed (M, 2 for model diffing).
        d_in: Activation width of each model (D).
        dict_size: Latents (L).
        k: Average active latents per token (BatchTopK keeps B*k per batch).
        num_shared: Designated shared latents (S, the first S): one decoder vector for all models.
    """

    def __init__(self, num_models: int, d_in: int, dict_size: int, k: int, num_shared: int = 0) -> None:
        super().__init__()
        if not 0 <= num_shared <= dict_size:
            raise ValueError(f"num_shared={num_shared} must lie in [0, dict_size={dict_size}]")
        if not 1 <= k <= dict_size:
            raise ValueError(f"k={k} must lie in [1, dict_size={dict_size}]")
        self.num_models, self.d_in, self.dict_size, self.k, self.num_shared = num_models, d_in, dict_size, k, num_shared
        self.w_dec_shared_SD = nn.Parameter(torch.empty(num_shared, d_in))
        self.w_dec_own_LMD = nn.Parameter(torch.empty(dict_size - num_shared, num_models, d_in))
        self.w_enc_IL = nn.Parameter(torch.empty(num_models * d_in, dict_size))
        self.b_enc_L = nn.Parameter(torch.zeros(dict_size))
        self.b_dec_MD = nn.Parameter(torch.zeros(num_models, d_in))
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not learned yet
        self.register_buffer("input_scale_M", torch.ones(num_models))  # a^m -> a^m * scale_m (E||a||^2 = D)
        self.row_cap = 2 * k
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Decoder rows of random direction with norm 1 per model; encoder = decoder transposed."""
        self.w_dec_shared_SD.copy_(F.normalize(torch.randn_like(self.w_dec_shared_SD), dim=-1))
        self.w_dec_own_LMD.copy_(F.normalize(torch.randn_like(self.w_dec_own_LMD), dim=-1))
        self.w_enc_IL.copy_(self.decoder_LMD().reshape(self.dict_size, -1).t() / self.num_models)
        self.b_enc_L.zero_()
        self.b_dec_MD.zero_()

    # ------------------------------------------------------------------- parts
    def decoder_LMD(self) -> torch.Tensor:
        """Full decoder [L, M, D]; the shared rows repeat one vector for every model."""
        shared_SMD = self.w_dec_shared_SD.unsqueeze(1).expand(-1, self.num_models, -1)
        return torch.cat([shared_SMD, self.w_dec_own_LMD], dim=0)

    def decoder_norms_LM(self) -> torch.Tensor:
        return self.decoder_LMD().norm(dim=-1)

    def scale_inputs(self, a_BMD: torch.Tensor) -> torch.Tensor:
        return a_BMD.float() * self.input_scale_M.view(1, -1, 1)

    def preactivations(self, a_BMD: torch.Tensor) -> torch.Tensor:
        """relu-free encoder output [B, L] of already scaled activations (no autograd)."""
        x_BI = (a_BMD - self.b_dec_MD).reshape(a_BMD.shape[0], -1)
        return torch.addmm(self.b_enc_L, x_BI, self.w_enc_IL)

    # ------------------------------------------------------------------ encode
    def encode(self, a_BMD: torch.Tensor, use_threshold: bool = False) -> SparseCodes:
        """Sparse codes of scaled activations: BatchTopK (training) or the learned threshold (inference)."""
        batch = a_BMD.shape[0]
        x_BI = (a_BMD - self.b_dec_MD).reshape(batch, -1)
        with torch.no_grad():
            pre_BL = torch.addmm(self.b_enc_L.detach(), x_BI.detach(), self.w_enc_IL.detach()).relu_()
            scores_BL = pre_BL * self.decoder_norms_LM().sum(-1)
            if use_threshold and float(self.threshold) >= 0:
                rows_N, cols_N = (scores_BL > self.threshold).nonzero(as_tuple=True)
            else:
                rows_N, cols_N, self.row_cap = batch_topk_positions(scores_BL, batch * self.k, self.row_cap)
                positive_N = pre_BL[rows_N, cols_N] > 0
                rows_N, cols_N = rows_N[positive_N], cols_N[positive_N]
        values_N = _KeptPreactivations.apply(x_BI, self.w_enc_IL, self.b_enc_L, pre_BL, rows_N, cols_N)
        return SparseCodes(rows_N, cols_N, values_N, batch, self.dict_size)

    def decode(self, codes: SparseCodes, decoder_LMD: Optional[torch.Tensor] = None, bias: bool = True
               ) -> torch.Tensor:
        """Reconstructions [B, M, D] (in the scaled space)."""
        decoder_LMD = self.decoder_LMD() if decoder_LMD is None else decoder_LMD
        out_BI = F.embedding_bag(codes.cols_N, decoder_LMD.reshape(decoder_LMD.shape[0], -1), codes.offsets_B(),
                                 mode="sum", per_sample_weights=codes.values_N)
        out_BMD = out_BI.view(codes.batch, self.num_models, self.d_in)
        return out_BMD + self.b_dec_MD if bias else out_BMD

    def forward(self, a_BMD: torch.Tensor, use_threshold: bool = False) -> tuple[torch.Tensor, SparseCodes]:
        """Scaled activations in, (reconstruction [B, M, D], codes) out."""
        codes = self.encode(a_BMD, use_threshold)
        return self.decode(codes), codes

    # ------------------------------------------------------------- auxiliary
    def auxiliary_loss(self, a_BMD: torch.Tensor, residual_BMD: torch.Tensor, dead_L: torch.Tensor,
                       k_aux: int) -> torch.Tensor:
        """Dead latents reconstruct the residual: each token's top-``k_aux`` dead pre-activations,
        decoded without bias; ``||e - ê||² / ||e - mean(e)||²`` (OpenAI / dictionary_learning form)."""
        dead_idx = dead_L.nonzero().squeeze(-1)
        if dead_idx.numel() == 0:
            return a_BMD.new_zeros(())
        batch = a_BMD.shape[0]
        x_BI = (a_BMD - self.b_dec_MD).reshape(batch, -1)
        pre_BX = (x_BI @ self.w_enc_IL[:, dead_idx] + self.b_enc_L[dead_idx]).relu()
        top = pre_BX.topk(min(k_aux, dead_idx.numel()), dim=-1)
        rows_N = torch.arange(batch, device=a_BMD.device).repeat_interleave(top.indices.shape[1])
        codes = SparseCodes(rows_N, top.indices.reshape(-1), top.values.reshape(-1), batch, dead_idx.numel())
        recon_BMD = self.decode(codes, self.decoder_LMD()[dead_idx], bias=False)
        residual_BI = residual_BMD.reshape(batch, -1).detach()
        error = (residual_BI - recon_BMD.reshape(batch, -1)).pow(2).sum(-1).mean()
        spread = (residual_BI - residual_BI.mean(0)).pow(2).sum(-1).mean()
        return (error / spread.clamp_min(1e-12)).nan_to_num(0.0)

    @torch.no_grad()
    def update_threshold(self, codes: SparseCodes, beta: float) -> None:
        """EMA of the smallest kept score (the inference threshold)."""
        if codes.values_N.numel() == 0:
            return
        norms_L = self.decoder_norms_LM().sum(-1)
        smallest = (codes.values_N.detach() * norms_L[codes.cols_N]).min()
        if float(self.threshold) < 0:
            self.threshold.copy_(smallest)
        else:
            self.threshold.mul_(beta).add_((1 - beta) * smallest)

    def relative_decoder_norms(self) -> torch.Tensor:
        """r_i = ||d_i^B|| / (||d_i^A|| + ||d_i^B||) for two models: ~0 A-only, ~1 B-only, 0.5 shared."""
        norms_LM = self.decoder_norms_LM()
        return norms_LM[:, -1] / norms_LM.sum(-1).clamp_min(1e-12)
