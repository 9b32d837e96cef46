"""Reading images and videos, writing MP4 (H.264) and PNG frames. Errors name the file and the problem."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


class MediaError(ValueError):
    """An input image or video that cannot be used; the message names the file."""


# Bounds checked from the file's header before any pixel is decoded (decompression-bomb guard): a tiny
# PNG can declare 13000×13000 pixels, a tiny MP4 thousands of 1080p frames.
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_VIDEO_FRAME_PIXELS = 3840 * 2160
MAX_VIDEO_FRAMES = 24 * 60 * 10


def _input_file(path: str | Path, kind: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{kind} not found: {path}")
    if not path.is_file():
        raise MediaError(f"{kind} is not a file: {path}")
    return path


def _check_pixels(width: int, height: int, limit: int, what: str) -> None:
    if width * height > limit:
        raise MediaError(f"{what} is {width}×{height}, more than the {limit:,} pixels allowed")


def _reduce(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Shrink a frame (H, W, 3) that is larger than needed to cover ``size`` (height, width), keeping its
    aspect ratio; the final cover-resize and centre crop happen in :func:`to_model_pixels`."""
    if size is None:
        return frame
    h, w = frame.shape[:2]
    scale = max(size[0] / h, size[1] / w)
    if scale >= 0.5:  # close enough: resizing twice would only cost precision
        return frame
    from PIL import Image

    target = (max(size[1], round(w * scale * 2)), max(size[0], round(h * scale * 2)))  # keep 2× headroom
    return np.asarray(Image.fromarray(frame).resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0))


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as uint8 (H, W, 3); larger than ``max_pixels`` is refused before decoding, and
    with ``size`` (height, width) a much larger image is reduced as it is decoded."""
    from PIL import Image, UnidentifiedImageError

    path = _input_file(path, "image")
    try:
        with Image.open(path) as image:
            _check_pixels(*image.size, max_pixels, f"image {path}")
            if size is not None:  # JPEG: decode at a reduced scale directly
                image.draft("RGB", (size[1], size[0]))
            return _reduce(np.asarray(image.convert("RGB")), size)
    except Image.DecompressionBombError:  # PIL's own guard, for sizes far past ours
        raise MediaError(f"image {path} declares more than the {max_pixels:,} pixels allowed") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, MediaError):
            raise
        reason = "not an image file PIL can read" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise MediaError(f"cannot read image {path}: {reason}") from None


def read_video(
    path: str | Path,
    max_pixels: int = MAX_VIDEO_FRAME_PIXELS,
    max_frames: int = MAX_VIDEO_FRAMES,
    size: tuple[int, int] | None = None,
    keep_last: int | None = None,
) -> tuple[np.ndarray, float]:
    """A video file as uint8 frames (T, H, W, 3) and its frame rate.

    Frames larger than ``max_pixels`` or more than ``max_frames`` of them are refused (the frame size
    is checked before decoding, the count as frames are decoded). With ``size`` (height, width) large
    frames are reduced as they are decoded; with ``keep_last`` only the first frame and the last
    ``keep_last`` frames are held, so memory stays bounded whatever the clip's length.
    """
    import av

    path = _input_file(path, "video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            stream = container.streams.video[0]
            _check_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels, f"video {path}")
            if stream.frames and stream.frames > max_frames:
                raise MediaError(f"video {path} has {stream.frames} frames, more than the {max_frames} frames allowed")
            first, frames, count = None, deque(maxlen=keep_last), 0
            for frame in container.decode(stream):
                count += 1
                if count > max_frames:
                    raise MediaError(f"video {path} has more than the {max_frames} frames allowed")
                _check_pixels(frame.width, frame.height, max_pixels, f"a frame of video {path}")
                pixels = _reduce(frame.to_ndarray(format="rgb24"), size)
                if first is None and keep_last is not None:
                    first = pixels
                else:
                    frames.append(pixels)
            fps = float(stream.average_rate or stream.guessed_rate or 24)
    except (av.error.FFmpegError, ValueError) as exc:
        if isinstance(exc, MediaError):
            raise
        reason = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's own text repeats the file name
        raise MediaError(f"cannot read video {path}: {reason}") from None
    kept = ([first] if first is not None else []) + list(frames)
    if not kept:
        raise MediaError(f"{path} contains no decodable frames")
    return np.stack(kept), fps


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 24) -> Path:
    """Write uint8 frames (T, H, W, 3) as H.264 (yuv420p, playable everywhere). Odd sizes are padded by one pixel."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # mbtree off: with it this libx264 build gives different bytes (and pixels) for the same frames
        # from run to run; without it the same frames always give the same file (tests/generation).
        stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def write_frames(frames: np.ndarray, folder: str | Path, start: int = 0) -> list[Path]:
    """Write frames as numbered PNGs (frame_000000.png, ...)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start=start):
        target = folder / f"frame_{i:06d}.png"
        Image.fromarray(frame).save(target)
        paths.append(target)
    return paths


def to_model_pixels(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) → float (1, 3, T, height, width) in [−1, 1]; resized to cover, then centre-cropped.

    Scaled as x/255·2 − 1 like diffusers' processors, so equal inputs give equal latents.
    """
    video = torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0  # (T, H, W, 3)
    video = video.permute(0, 3, 1, 2)  # (T, 3, H, W)
    h, w = video.shape[-2:]
    if (h, w) != (height, width):
        scale = max(height / h, width / w)
        new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
        video = F.interpolate(video, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        top, left = (new_h - height) // 2, (new_w - width) // 2
        video = video[:, :, top : top + height, left : left + width].clamp(0, 1)
    return (2.0 * video - 1.0).permute(1, 0, 2, 3).unsqueeze(0)


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """Decoded pixels (1, 3, T, H, W) in [−1, 1] → uint8 (T, H, W, 3), on the same device (the host
    copy then moves a quarter of the bytes)."""
    frames = (video[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0)
    return (frames * 255).round().to(torch.uint8)
