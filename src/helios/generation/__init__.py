"""The autoregressive generation loop: history window, prompts, adaptive sampling, pipeline."""

from .pipeline import HeliosPipeline, LiveStream, Video, VideoChunk, output_frame_count
from .prompts import PromptChange
from .request import GenerationRequest

__all__ = [
    "GenerationRequest",
    "HeliosPipeline",
    "LiveStream",
    "PromptChange",
    "Video",
    "VideoChunk",
    "output_frame_count",
]
