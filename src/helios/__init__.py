"""helios: a fast, tested implementation of Helios, real-time long video generation."""

from .config import TransformerConfig
from .model import CheckpointError, HeliosTransformer

__version__ = "0.1.0"

__all__ = ["CheckpointError", "HeliosTransformer", "TransformerConfig", "__version__"]
