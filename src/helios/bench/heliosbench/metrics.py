"""HeliosBench's weight-free metrics, on uint8 frames (T, H, W, 3) read at 640 wide (official).

* ``motion_amplitude``: Farnebäck optical flow between consecutive grayscale frames (OpenCV; pyramid
  0.5, 3 levels, window 15, 3 iterations, poly 5 / 1.2), each flow map area-resized to 16 wide, averaged
  over time, pixels and both components; the absolute value of that *signed* mean (official: opposite
  motions cancel — a known flaw, kept for comparability; ``motion_magnitude`` is the unsigned mean).
* ``motion_smoothness_linear``: the even frames kept, each odd frame predicted as the mean of its two
  neighbours, score = (255 − mean |prediction − frame|) / 255. A **weight-free fallback**: the official
  metric interpolates with AMT-S (the paper says RAFT); numbers are not comparable with theirs.
* ``drifting``: |M(first 15 %) − M(last 15 %)| of a metric M.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

WIDTH = 640  # the official evaluation reads every video at this width
FLOW_WIDTH = 16
DRIFT_PART = 0.15


def opencv():
    try:
        import cv2
    except ImportError:
        raise ImportError("HeliosBench needs OpenCV: pip install 'helios[bench]'") from None
    return cv2


def at_benchmark_width(frames: np.ndarray, width: int = WIDTH) -> np.ndarray:
    """Frames resized to ``width`` wide, aspect kept (the official reader's size)."""
    cv2 = opencv()
    _, h, w, _ = frames.shape
    if w == width:
        return frames
    height = max(1, round(h * width / w))
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in frames])


def _check(frames: np.ndarray, minimum: int) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) < minimum:
        raise ValueError(f"this metric needs at least {minimum} frames, got {len(frames)}")


def _flows(frames: np.ndarray) -> np.ndarray:
    """Farnebäck flow of each consecutive pair, area-resized to 16 wide: (T − 1, h, 16, 2)."""
    cv2 = opencv()
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    _, h, w, _ = frames.shape
    small = (FLOW_WIDTH, max(1, round(h * FLOW_WIDTH / w)))
    flows = []
    for previous, current in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        flows.append(cv2.resize(flow, small, interpolation=cv2.INTER_AREA))
    return np.stack(flows)


def motion_amplitude(frames: np.ndarray) -> float:
    _check(frames, 2)
    return float(abs(_flows(frames).mean()))


def motion_magnitude(frames: np.ndarray) -> float:
    """The mean flow length (pixels per frame at the benchmark width): opposite motions do not cancel."""
    _check(frames, 2)
    return float(np.linalg.norm(_flows(frames), axis=-1).mean())


def motion_smoothness_linear(frames: np.ndarray) -> float:
    _check(frames, 3)
    video = frames.astype(np.float32)
    odd = np.arange(1, len(video) - 1, 2)
    predicted = (video[odd - 1] + video[odd + 1]) / 2
    return float((255 - np.abs(predicted - video[odd]).mean()) / 255)


def drifting(metric: Callable[[np.ndarray], float], frames: np.ndarray, part: float = DRIFT_PART) -> float:
    """|M(first part) − M(last part)|, each part at least 4 frames (official: smoothness needs ≥ 4)."""
    count = max(4, round(len(frames) * part))
    if 2 * count > len(frames):
        raise ValueError(f"drifting needs at least {2 * count} frames, got {len(frames)}")
    return abs(metric(frames[:count]) - metric(frames[-count:]))
