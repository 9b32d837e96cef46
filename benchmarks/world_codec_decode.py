"""The default model's world codec: decode of one chunk (9 latent frames → 33 frames at 128×192) on
the CPU, in the contiguous layout and channels-last (what ``WorldCodec`` runs), with the difference
between the two. The codec is most of a CPU chunk of the default model (``make demo``, the tests).

    python benchmarks/world_codec_decode.py --out world_codec_decode.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from helios.encoders.world_codec import WorldCodec
from helios.generation.loading import DEFAULT_MODEL_DIR


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up (and the one-time weight conversion)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    codec = WorldCodec.from_pretrained(DEFAULT_MODEL_DIR / "codec")
    latents = torch.randn(1, codec.latent_channels, 9, 16, 24, generator=torch.Generator().manual_seed(0))
    contiguous = WorldCodec.from_pretrained(DEFAULT_MODEL_DIR / "codec")
    contiguous._channels_last = lambda network, x: network(x)  # the layout before: weights and inputs as loaded
    rows = [
        ("contiguous", median_seconds(lambda: contiguous.decode(latents), args.repeats)),
        ("channels-last (shipped)", median_seconds(lambda: codec.decode(latents), args.repeats)),
    ]
    difference = (codec.decode(latents) - contiguous.decode(latents)).abs().max().item()
    print("| layout | seconds per chunk |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    print(f"max |difference| {difference:.2e}; {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}")
    with open(args.out, "w") as f:
        json.dump(
            {
                "rows": [{"layout": n, "seconds": s} for n, s in rows],
                "max_abs_difference": difference,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            },
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
