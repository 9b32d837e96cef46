"""Thin adapters behind two small protocols: a text encoder and a video codec."""

from .protocols import TextEncoder, VideoCodec

__all__ = ["TextEncoder", "VideoCodec"]
