"""Language-modelling data: one DataModule per source on a shared packing base."""

from lit_moe.data.base import PackedTextDataModule
from lit_moe.data.builtin import BuiltinText
from lit_moe.data.deprecated import TextDataModule
from lit_moe.data.files import LocalTextFiles
from lit_moe.data.hub import HubTextStream

__all__ = ["BuiltinText", "HubTextStream", "LocalTextFiles", "PackedTextDataModule", "TextDataModule"]
