"""The prompts of a ``cli.py predict`` run, as a datamodule (one prompt per predict step)."""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from lit_moe.errors import UserInputError


def _single(batch: list[str]) -> str:
    return batch[0]


class PromptDataModule(pl.LightningDataModule):
    """Texts for ``GenerationModule`` to continue.

    Args:
        prompts: The texts, in order.
    """

    def __init__(self, prompts: list[str]) -> None:
        super().__init__()
        if not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise UserInputError("data.init_args.prompts must be a non-empty list of non-empty texts")
        self.prompts = list(prompts)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.prompts, batch_size=1, collate_fn=_single)
