"""The Helios transformer and what it needs: RoPE, memory patches, attention, checkpoints."""

from .attention import attention_backend, get_attention_backend, set_attention_backend
from .checkpoint import CheckpointError
from .transformer import HeliosTransformer

__all__ = [
    "CheckpointError",
    "HeliosTransformer",
    "attention_backend",
    "get_attention_backend",
    "set_attention_backend",
]
