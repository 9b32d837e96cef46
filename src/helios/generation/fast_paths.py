"""Fast paths and memory modes of a pipeline, switched on together (speed issue; each is tested equal
to the reference path). Used by ``helios generate`` and ``helios bench speed``; measured figures in
benchmarks/README.md. The recommended GPU set: ``FastPaths(compile=True, attention="cudnn",
vae_dtype="bf16", vae_channels_last=True)``, plus ``fp8="per_row"`` for the FP8 mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..devices import resolve_device
from ..encoders.video import WanVideoCodec
from ..model import speed
from ..model.attention import check_attention_backend, set_attention_backend
from ..model.fp8 import quantize_linears
from ..model.graphs import cuda_graphs_of, enable_cuda_graphs
from ..model.offload import offload_model_blocks
from .pipeline import HeliosPipeline


@dataclass(frozen=True)
class FastPaths:
    """Optional fast paths and memory modes to switch on for a run (each tested equal to the
    reference path). ``apply`` switches on what is set and never switches anything off, so one
    pipeline can be taken through a growing set of paths."""

    fused_kernels: bool = False  # Triton LayerNorm + modulation and RoPE
    fuse_qkv: bool = False
    compile: bool = False  # regional torch.compile of the blocks
    attention: str | None = None  # an attention backend name (see helios.model.attention)
    batched_cfg: bool = False
    vae_dtype: str = "fp32"
    vae_channels_last: bool = False  # channels-last 3-D conv weights in the VAE
    fp8: str | None = None  # "per_row" or "per_tensor": block linears through the FP8 GEMM
    cuda_graphs: bool = False  # one graph per transformer input shape
    overlap_vae: bool = False  # decode on a second stream while the next chunk is denoised
    offload: str | None = (
        None  # "text" (UMT5 layers) or "all" (and the transformer blocks): streamed from pinned host memory
    )
    memory_limit_gib: float | None = None  # cap the process's GPU memory (simulates a smaller card)
    vae_decoder: str = "diffusers"  # "helios": our streaming Wan decoder (encoders/wan_decoder.py)
    vae_compile: bool = False  # torch.compile of the VAE decoder (one shape per chunk: compiled once)
    decode_device: str | None = None  # pipelined on two devices: codec + text encoder there (place_decoder)

    def label(self) -> str:
        parts = [
            name
            for name in (
                "fused_kernels",
                "fuse_qkv",
                "compile",
                "cuda_graphs",
                "batched_cfg",
                "overlap_vae",
                "vae_channels_last",
                "vae_compile",
            )
            if getattr(self, name)
        ]
        parts += [f"offload={self.offload}"] if self.offload else []
        parts += [f"fp8={self.fp8}"] if self.fp8 else []
        parts += [f"attention={self.attention}"] if self.attention else []
        parts += [f"vae={self.vae_dtype}"] if self.vae_dtype != "fp32" else []
        parts += [f"vae_decoder={self.vae_decoder}"] if self.vae_decoder != "diffusers" else []
        parts += [f"limit={self.memory_limit_gib:g}GiB"] if self.memory_limit_gib else []
        parts += [f"decode_on={self.decode_device}"] if self.decode_device else []
        return "+".join(parts) or "reference path"

    def apply(self, pipeline: HeliosPipeline) -> None:
        self.check(pipeline)
        transformer = pipeline.transformer
        if self.fp8 and not speed.is_fp8(transformer):
            quantize_linears(transformer, self.fp8, "scaled_mm", inplace=True)
            if cuda_graphs_of(transformer) is not None:  # graphs captured with the 16-bit layers: capture anew
                enable_cuda_graphs(transformer, True)
            if pipeline.device.type == "cuda":
                torch.cuda.empty_cache()
        if self.offload:
            text_offload = getattr(pipeline.text_encoder, "enable_block_offload", None)
            if text_offload is not None:
                text_offload(pipeline.device)
            if self.offload == "all":
                offload_model_blocks(transformer, "blocks", pipeline.device)
            if pipeline.device.type == "cuda":
                torch.cuda.empty_cache()
        if self.fused_kernels:
            speed.use_fused_kernels(transformer, True)
        if self.fuse_qkv:
            speed.fuse_qkv(transformer, True)
        if self.compile:
            speed.compile_blocks(transformer)
        if self.attention:
            set_attention_backend(transformer, self.attention)
        if self.cuda_graphs:
            enable_cuda_graphs(transformer, True)
        if self.overlap_vae:
            pipeline.overlap_decode = True
        if self.batched_cfg:
            pipeline.batched_cfg = True
        if self.vae_dtype == "bf16":
            pipeline.codec = pipeline.codec.to_dtype(torch.bfloat16)
        if self.vae_channels_last:
            pipeline.codec.channels_last(True)
        if self.vae_decoder == "helios":
            pipeline.codec.use_own_decoder(True)
        if self.vae_compile:
            pipeline.codec.compile_decoder()
        if self.memory_limit_gib and pipeline.device.type == "cuda":
            total = torch.cuda.get_device_properties(pipeline.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.memory_limit_gib * 2**30 / total), pipeline.device)
        if self.decode_device:
            pipeline.place_decoder(self.decode_device)

    def check(self, pipeline: HeliosPipeline) -> None:
        """Refuse combinations this pipeline cannot take, before anything is changed."""
        if self.offload not in (None, "text", "all"):
            raise ValueError(f"offload must be 'text' or 'all', got {self.offload!r}")
        if self.offload == "text" and not hasattr(pipeline.text_encoder, "enable_block_offload"):
            raise ValueError(
                f"offload='text' needs a layered text encoder (UMT5); this model has "
                f"{type(pipeline.text_encoder).__name__}"
            )
        if self.offload == "all" and (self.compile or self.cuda_graphs):
            raise ValueError(
                "offload='all' streams weights between eager blocks: it cannot be combined with compile or cuda_graphs"
            )
        if self.vae_decoder not in ("diffusers", "helios"):
            raise ValueError(f"vae_decoder must be 'diffusers' or 'helios', got {self.vae_decoder!r}")
        wan_options = (
            self.vae_dtype == "bf16" or self.vae_channels_last or self.vae_compile or self.vae_decoder != "diffusers"
        )
        if wan_options and not isinstance(pipeline.codec, WanVideoCodec):
            raise ValueError(
                f"the VAE options apply to the Wan VAE; this model's codec is {type(pipeline.codec).__name__}"
            )
        if self.fp8 not in (None, "per_row", "per_tensor"):
            raise ValueError(f"fp8 must be 'per_row' or 'per_tensor', got {self.fp8!r}")
        if self.attention:
            check_attention_backend(self.attention)
        if self.decode_device:
            resolve_device(self.decode_device)
