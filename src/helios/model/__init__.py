"""The Helios transformer and what it needs: RoPE, memory patches, the history window's inputs,
attention, checkpoints and the speed switches beside the network."""

from .attention import attention_backend, get_attention_backend, set_attention_backend
from .checkpoint import CheckpointError
from .transformer import HeliosTransformer
from .window import HistoryInputs

__all__ = [
    "CheckpointError",
    "HeliosTransformer",
    "HistoryInputs",
    "attention_backend",
    "get_attention_backend",
    "set_attention_backend",
]
