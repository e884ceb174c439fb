"""The built-in corpus (CPython's reference documentation and/or standard-library sources, no
download) as packed language-modelling batches."""

from __future__ import annotations

from lit_core.errors import UserInputError
from lit_moe.data.base import PackedTextDataModule
from lit_moe.data.corpus import builtin_documents, split_documents


class BuiltinText(PackedTextDataModule):
    """Text that ships with CPython; every document gives its first ``1 - val_fraction`` (cut at a line
    boundary) to training and the rest to validation.

    Args:
        builtin_domains: Built-in domains to include: ``docs`` (Python reference documentation) and/or
            ``code`` (standard-library sources).
        val_fraction: Share of each document held out for validation (whole lines).
        **kwargs: Tokenizer, packing and loader arguments of ``PackedTextDataModule``.
    """

    def __init__(
        self,
        builtin_domains: list[str] = ["docs"],  # noqa: B006 (jsonargparse needs a literal default)
        val_fraction: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise UserInputError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1")
        self.builtin_domains = list(builtin_domains)
        self.val_fraction = val_fraction
        builtin_documents(self.builtin_domains, load=False)  # unknown domains fail here, before training

    def describe_source(self) -> str:
        return f"built-in domains {self.builtin_domains}"

    def load_documents(self) -> tuple[list[str], list[str]]:
        return split_documents(builtin_documents(self.builtin_domains), self.val_fraction)
