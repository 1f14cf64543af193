"""Blocks shared by the methods in ``msa_lib.models``."""
from .attention import (CrossModalAttention, FeedForward, MultiHeadAttention, TransformerEncoder,
                        TransformerLayer, masked_mean, sinusoidal_positions)
from .misc import BottleneckTokens, GradientReversal, VariationalEncoder, dropout_bits, grad_reverse
from .text import TextEncoder, load_pretrained, minilm_dir

__all__ = ["CrossModalAttention", "FeedForward", "MultiHeadAttention", "TransformerEncoder",
           "TransformerLayer", "masked_mean", "sinusoidal_positions", "BottleneckTokens",
           "GradientReversal", "VariationalEncoder", "dropout_bits", "grad_reverse", "TextEncoder",
           "load_pretrained", "minilm_dir"]
