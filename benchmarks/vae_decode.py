"""Wan2.1 VAE decode of one chunk (9 latent frames → 33 frames at 384×640) on the GPU, per variant:
fp32, bf16, bf16 channels-last, bf16 with torch.compile of the decoder (issue 5); then our streaming
decoder (encoders/wan_decoder.py: a whole chunk per layer) in bf16, channels-last, and compiled, each
with its error against diffusers' fp32 decode (issue 14); last, the fastest two again with cuDNN's
autotuner on (``torch.backends.cudnn.benchmark``: each convolution shape times cuDNN's algorithms once).

    python benchmarks/vae_decode.py --out vae_decode.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from helios.bench.timing import cuda_median_ms, run_meta
from helios.encoders.video import WanVideoCodec


@torch.no_grad()
def main() -> None:
    from diffusers import AutoencoderKLWan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    with torch.device("cuda"):
        vae = AutoencoderKLWan().eval()
    latents = torch.randn(1, 16, 9, 48, 80, device="cuda")
    fp32 = WanVideoCodec(vae)
    reference = fp32.decode(latents).float()
    results = {"fp32": {"ms": cuda_median_ms(lambda: fp32.decode(latents), warmup=2, repeat=3)}}
    codec = WanVideoCodec(vae.to(torch.bfloat16))
    bf16 = codec.decode(latents).float()

    def measure(decode) -> dict:
        """Median time, the first call's time (where compilation happens) and the error of one variant."""
        started = time.perf_counter()
        out = decode(latents).float()
        first = time.perf_counter() - started
        return {
            "ms": cuda_median_ms(lambda: decode(latents), warmup=2, repeat=3),
            "first_call_s": round(first, 3),
            "max_abs_vs_fp32": (out - reference).abs().max().item(),
            "max_abs_vs_bf16": (out - bf16).abs().max().item(),
        }

    results["bf16"] = measure(codec.decode)
    codec.channels_last(True)
    results["bf16_channels_last"] = measure(codec.decode)
    codec.channels_last(False)
    vae.decoder.compile()
    results["bf16_compiled"] = measure(codec.decode)
    vae.decoder._compiled_call_impl = None  # (back to eager for our decoder, which shares the weights)
    codec.use_own_decoder(True)
    results["helios_bf16"] = measure(codec.decode)
    codec.channels_last(True)
    results["helios_bf16_channels_last"] = measure(codec.decode)
    codec.own_decoder.compile()
    results["helios_bf16_channels_last_compiled"] = measure(codec.decode)
    torch.backends.cudnn.benchmark = True
    results["helios_bf16_channels_last_compiled_cudnn_benchmark"] = measure(codec.decode)
    codec.own_decoder._compiled_call_impl = None
    results["helios_bf16_channels_last_cudnn_benchmark"] = measure(codec.decode)
    for name, r in results.items():
        print(name, r, flush=True)
    meta = run_meta()
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
