"""helios: a fast, tested implementation of Helios, real-time long video generation."""

from .config import HistorySettings, SamplerSettings, TransformerConfig
from .generation import GenerationRequest, HeliosPipeline, PromptChange, Video, VideoChunk
from .model import CheckpointError, HeliosTransformer

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "GenerationRequest",
    "HeliosPipeline",
    "HeliosTransformer",
    "HistorySettings",
    "PromptChange",
    "SamplerSettings",
    "TransformerConfig",
    "Video",
    "VideoChunk",
    "__version__",
]
