from lit_moe.model.config import MoETransformerConfig
from lit_moe.model.moe_layer import MoELayer, MoEStats
from lit_moe.model.transformer import MoETransformer, TransformerOutput

__all__ = ["MoELayer", "MoEStats", "MoETransformer", "MoETransformerConfig", "TransformerOutput"]
