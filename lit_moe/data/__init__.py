from lit_moe.data.datamodule import TextDataModule

__all__ = ["TextDataModule"]
