"""Router score functions: how logits z = W x become the per-expert scores pi the layer mixes with.

Shape legend: T tokens, E experts, K experts per token.

Each score function is chosen once, when the router is built (``MoETransformerConfig.score_function``);
adding one means adding a class here and an entry to ``SCORE_FUNCTIONS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Optional

import torch

from kernels.reference import select_experts


class ScoreFunction(ABC):
    """Scores pi_TE (fp32) and the top-K selection with its mixing weights."""

    name: ClassVar[str]
    sums_to_one: ClassVar[bool]  # pi is a distribution over the experts (softmax) or not (sigmoid)
    fusable: ClassVar[bool] = False  # the Triton routing kernel computes this score function

    @abstractmethod
    def scores(self, logits_TE: torch.Tensor) -> torch.Tensor:
        """pi_TE from the router logits (fp32)."""

    @abstractmethod
    def select(self, logits_TE: torch.Tensor, probs_TE: torch.Tensor, bias_E: Optional[torch.Tensor], top_k: int,
               normalize_topk: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(expert_idx_TK, weights_TK): top-K of ``pi + bias``, weighted by the unbiased pi."""

    def distribution(self, probs_TE: torch.Tensor) -> torch.Tensor:
        """pi normalised per token (for the load-balancing loss and the router entropy)."""
        return probs_TE if self.sums_to_one else probs_TE / probs_TE.sum(-1, keepdim=True).clamp_min(1e-20)


class Softmax(ScoreFunction):
    """pi = softmax(z) over all experts (Switch, Mixtral, OLMoE, Qwen-MoE, the Default-MoE papers)."""

    name = "softmax"
    sums_to_one = True
    fusable = True

    def scores(self, logits_TE: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits_TE, dim=-1)

    def select(self, logits_TE, probs_TE, bias_E, top_k, normalize_topk):
        return select_experts(logits_TE, probs_TE, bias_E, top_k, normalize_topk)


class Sigmoid(ScoreFunction):
    """pi_i = sigmoid(z_i), independently per expert (DeepSeek-V3); with ``normalize_topk`` the selected
    scores are divided by their sum. Pairs with aux-loss-free bias balancing (``bias_update_rate``)."""

    name = "sigmoid"
    sums_to_one = False

    def scores(self, logits_TE: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits_TE)

    def select(self, logits_TE, probs_TE, bias_E, top_k, normalize_topk):
        selection_TE = probs_TE.detach() if bias_E is None else probs_TE.detach() + bias_E.float()
        expert_idx_TK = selection_TE.topk(top_k, dim=-1).indices
        weights_TK = probs_TE.gather(1, expert_idx_TK)
        if normalize_topk:
            weights_TK = weights_TK / weights_TK.sum(-1, keepdim=True).clamp_min(1e-20)
        return expert_idx_TK, weights_TK


SCORE_FUNCTIONS: dict[str, type[ScoreFunction]] = {cls.name: cls for cls in (Softmax, Sigmoid)}
