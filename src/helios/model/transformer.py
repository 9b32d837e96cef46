"""The Helios diffusion transformer: Wan2.1 DiT backbone plus the history machinery of the paper.

Parameter names and numerics follow diffusers' ``HeliosTransformer3DModel`` so the released
Helios-{Base,Mid,Distilled} checkpoints load unchanged (see ``checkpoint.py``). Differences are
in how the work is organised, not in what is computed:

* modulation is kept per *segment* (history at t = 0, noisy tokens at t): two (B, 6, D) rows per
  block instead of a (B, L, 6, D) fp32 tensor;
* RoPE tables hold one value per channel pair and are built once per call for all blocks.

Precision policy (as released): LayerNorms, modulation and residual accumulation run in fp32;
``time_embedder``, ``scale_shift_table`` and ``norm2`` parameters stay fp32 in a bf16 model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..config import TransformerConfig
from .attention import attention
from .memory import HistoryInputs, TokenSegments, as_index_rows, embed_history, memory_patches, patchify
from .rope import RopeTable, apply_rope, rope_table

# Parameters whose dotted name contains one of these stay fp32 whatever the model dtype (as released).
FP32_PARAMETER_PATTERNS = ("time_embedder", "scale_shift_table", "norm1", "norm2", "norm3", "history_key_scale")
HISTORY_KEY_MAX_SCALE = 10.0  # paper eq. 1: factor 1 + sigmoid(s)·(max − 1)


def timestep_features(timestep: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``[cos(t·f_k), sin(t·f_k)]`` with f_k = max_period^(−k/half), fp32."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timestep.device)
    frequencies = torch.exp(exponent / half)
    angles = timestep[:, None].float() * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def layer_norm_fp32(x: torch.Tensor, eps: float, norm: nn.LayerNorm | None = None) -> torch.Tensor:
    """LayerNorm computed in fp32 (affine if ``norm`` is given); returns fp32."""
    weight = norm.weight.float() if norm is not None else None
    bias = norm.bias.float() if norm is not None else None
    return F.layer_norm(x.float(), (x.shape[-1],), weight, bias, eps)


class _TwoLayerMLP(nn.Module):
    """linear_1 → activation → linear_2 (the time and text embedders)."""

    def __init__(self, in_dim: int, dim: int, activation: nn.Module):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.activation = activation
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.activation(self.linear_1(x)))


class ConditionEmbedder(nn.Module):
    """Timestep → (temb, six modulation vectors); text (UMT5 features) → model width."""

    def __init__(self, dim: int, freq_dim: int, text_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = _TwoLayerMLP(freq_dim, dim, nn.SiLU())
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.text_embedder = _TwoLayerMLP(text_dim, dim, nn.GELU(approximate="tanh"))

    def embed_time(self, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) timesteps → temb (B, D) and modulation projections (B, 6, D), both in ``dtype``."""
        features = timestep_features(timestep, self.freq_dim).to(self.time_embedder.linear_1.weight.dtype)
        temb = self.time_embedder(features).to(dtype)
        projections = self.time_proj(F.silu(temb)).unflatten(-1, (6, -1))
        return temb, projections

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        return self.text_embedder(text)


class SegmentModulation:
    """A block's six modulation vectors for each token segment (history, noisy).

    Only two timestep values exist per forward, so each segment carries (Bs, 1, D) fp32 vectors
    (Bs = 1 or B) instead of a per-token (B, L, 6, D) tensor. Order: shift, scale, gate of the
    self-attention, then shift, scale, gate of the feed-forward (as in Wan).
    """

    def __init__(self, table: torch.Tensor, projections: list[torch.Tensor], lengths: list[int]):
        self.lengths = lengths
        self.vectors = [(table + p.float()).unsqueeze(2).unbind(1) for p in projections]

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.split(self.lengths, dim=1) if len(self.lengths) > 1 else (x,)

    def modulate(self, normed: torch.Tensor, shift: int, scale: int, dtype: torch.dtype) -> torch.Tensor:
        parts = [
            (part * (1 + v[scale]) + v[shift]).to(dtype) for part, v in zip(self._parts(normed), self.vectors)
        ]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def gated_residual(self, x: torch.Tensor, update: torch.Tensor, gate: int) -> torch.Tensor:
        parts = [
            (xp.float() + up * v[gate]).to(x.dtype)
            for xp, up, v in zip(self._parts(x), self._parts(update), self.vectors)
        ]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


class Attention(nn.Module):
    """Multi-head attention with q/k RMSNorm over all heads; self-attention gets RoPE.

    With ``amplify_history`` (paper eq. 1) the keys of the history tokens are scaled per head by
    ``1 + sigmoid(history_key_scale)·(10 − 1)`` so history can be made to matter more.
    """

    def __init__(self, dim: int, heads: int, eps: float, amplify_history: bool = False, scale_mode: str = "per_head"):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # index 0 keeps the released key name "to_out.0"
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.fused_rope = False  # Triton RoPE where it can run (see kernels/)
        self.fused_qkv = False  # one projection GEMM for q, k, v in self-attention
        self._qkv_cache: tuple | None = None
        if amplify_history:
            # Initialised to ones as in the official code: the starting factor is 1 + 9·sigmoid(1) ≈ 7.58.
            self.history_key_scale = nn.Parameter(torch.ones(heads if scale_mode == "per_head" else 1))

    def _qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """q/k/v weights and biases concatenated; rebuilt when any of them changes (training steps)."""
        layers = (self.to_q, self.to_k, self.to_v)
        key = tuple((id(p), p._version, p.device, p.dtype) for layer in layers for p in (layer.weight, layer.bias))
        if self._qkv_cache is None or self._qkv_cache[0] != key or torch.is_grad_enabled():
            weight = torch.cat([layer.weight for layer in layers])
            bias = torch.cat([layer.bias for layer in layers])
            if torch.is_grad_enabled():  # keep the graph to the three parameters; cache nothing
                return weight, bias
            self._qkv_cache = (key, weight, bias)
        return self._qkv_cache[1], self._qkv_cache[2]

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        rope: RopeTable | None = None,
        history_length: int = 0,
    ) -> torch.Tensor:
        source = x if context is None else context
        if self.fused_qkv and context is None and type(self.to_q) is nn.Linear:  # FP8 layers keep three GEMMs
            q, k, v = F.linear(x, *self._qkv_weights()).chunk(3, dim=-1)
        else:
            q, k, v = self.to_q(x), self.to_k(source), self.to_v(source)
        q = self.norm_q(q).unflatten(2, (self.heads, -1))
        k = self.norm_k(k).unflatten(2, (self.heads, -1))
        v = v.unflatten(2, (self.heads, -1))
        if rope is not None:
            rotate = apply_rope
            if self.fused_rope:
                from .kernels import rope as kernel

                if kernel.available(q.device):
                    rotate = kernel.apply_rope_fused
            q, k = rotate(q, rope), rotate(k, rope)
        if history_length > 0 and hasattr(self, "history_key_scale"):
            factor = 1.0 + torch.sigmoid(self.history_key_scale) * (HISTORY_KEY_MAX_SCALE - 1.0)
            factor = factor.view(1, 1, -1, 1)
            k = torch.cat([(k[:, :history_length] * factor).to(k.dtype), k[:, history_length:]], dim=1)
        out = attention(q, k, v).flatten(2).type_as(q)
        return self.to_out[0](out)


class _GeluProjection(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        # Index 1 held dropout in the released model; keeping it makes the keys "net.0" and "net.2".
        self.net = nn.ModuleList([_GeluProjection(dim, hidden), nn.Identity(), nn.Linear(hidden, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class HeliosBlock(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        dim = config.inner_dim
        self.eps = config.eps
        self.guidance_cross_attn = config.guidance_cross_attn
        self.attn1 = Attention(
            dim, config.num_attention_heads, config.eps, config.is_amplify_history, config.history_scale_mode
        )
        self.attn2 = Attention(dim, config.num_attention_heads, config.eps)
        self.norm2 = nn.LayerNorm(dim, eps=config.eps) if config.cross_attn_norm else None
        self.ffn = FeedForward(dim, config.ffn_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.fused_kernels = False  # Triton LayerNorm + modulation where it can run (see kernels/)

    def _norm_modulate(self, x: torch.Tensor, mod: SegmentModulation, shift: int, scale: int) -> torch.Tensor:
        if self.fused_kernels:
            from .kernels import norm_modulate as kernel

            if kernel.available(x.device):
                return kernel.norm_modulate(x, [v[shift] for v in mod.vectors], [v[scale] for v in mod.vectors],
                                            mod.lengths, self.eps, x.dtype)
        return mod.modulate(layer_norm_fp32(x, self.eps), shift=shift, scale=scale, dtype=x.dtype)

    def _cross_attend(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        normed = layer_norm_fp32(x, self.eps, self.norm2) if self.norm2 is not None else x
        return x + self.attn2(normed.to(x.dtype), context=text)

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        projections: list[torch.Tensor],
        rope: RopeTable,
        segments: TokenSegments,
    ) -> torch.Tensor:
        lengths = [segments.history, segments.current] if len(projections) == 2 else [segments.total]
        mod = SegmentModulation(self.scale_shift_table, projections, lengths)
        normed = self._norm_modulate(x, mod, shift=0, scale=1)
        x = mod.gated_residual(x, self.attn1(normed, rope=rope, history_length=segments.history), gate=2)
        if self.guidance_cross_attn and segments.history > 0:
            history, current = x.split([segments.history, segments.current], dim=1)
            x = torch.cat([history, self._cross_attend(current, text)], dim=1)
        else:
            x = self._cross_attend(x, text)
        normed = self._norm_modulate(x, mod, shift=3, scale=4)
        return mod.gated_residual(x, self.ffn(normed).float(), gate=5)


class OutputHead(nn.Module):
    """fp32 LayerNorm modulated by temb of the noisy tokens (named ``norm_out`` as released)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.scale_shift_table + temb[:, None, :]).unsqueeze(2).unbind(1)
        return (layer_norm_fp32(x, self.eps) * (1 + scale) + shift).to(x.dtype)


class HeliosTransformer(nn.Module):
    """The Helios DiT. ``forward`` takes diffusers' keyword names and returns the predicted velocity."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        dim = config.inner_dim
        self.patch_embedding = nn.Conv3d(config.in_channels, dim, kernel_size=config.patch_size, stride=config.patch_size)
        if config.has_multi_term_memory_patch:
            self.patch_short, self.patch_mid, self.patch_long = memory_patches(config.in_channels, dim, config.patch_size)
        self.condition_embedder = ConditionEmbedder(dim, config.freq_dim, config.text_dim)
        self.blocks = nn.ModuleList([HeliosBlock(config) for _ in range(config.num_layers)])
        self.norm_out = OutputHead(dim, config.eps)
        self.proj_out = nn.Linear(dim, config.out_channels * math.prod(config.patch_size))
        self.gradient_checkpointing = False
        # Inference caches: RoPE tables (the window indices are the same for every chunk) and the
        # history's t = 0 modulation (depends only on weights). Keys include what they depend on.
        self._rope_cache: dict = {}
        self._zero_time_cache: dict = {}
        self._graphs = None  # a CudaGraphs runner once enable_cuda_graphs() is called

    # ----------------------------------------------------------------------------------- loading

    @classmethod
    def from_config(cls, config: TransformerConfig | dict[str, Any]) -> "HeliosTransformer":
        """Build with random weights from a :class:`TransformerConfig` or a diffusers config dict.

        Works under ``with torch.device("meta"):`` to get a weightless skeleton.
        """
        if isinstance(config, dict):
            config = TransformerConfig.from_dict(config)
        return cls(config)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
    ) -> "HeliosTransformer":
        """Load a transformer folder or a pipeline root with ``transformer/`` (see ``checkpoint.py``)."""
        from .checkpoint import load_transformer

        return load_transformer(cls, path, dtype=dtype, device=device)

    @classmethod
    def from_wan(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
    ) -> "HeliosTransformer":
        """Start from a Wan2.1 T2V transformer folder (diffusers ``WanTransformer3DModel``)."""
        from .checkpoint import load_wan_transformer

        return load_wan_transformer(cls, path, dtype=dtype, device=device)

    def save_pretrained(self, path: str | Path, max_shard_bytes: int = 10 * 2**30) -> None:
        from .checkpoint import save_transformer

        save_transformer(self, path, max_shard_bytes=max_shard_bytes)

    def cast(self, dtype: torch.dtype) -> "HeliosTransformer":
        """Cast to ``dtype`` except the parameters the precision policy keeps in fp32."""
        for name, param in self.named_parameters():
            target = torch.float32 if keeps_fp32(name) else dtype
            if param.dtype != target:
                param.data = param.data.to(target)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.gradient_checkpointing = enabled

    def enable_fused_kernels(self, enabled: bool = True) -> None:
        """Use the Triton kernels (LayerNorm + modulation, RoPE; forward and backward) where Triton
        runs; the reference path stays in use elsewhere."""
        for block in self.blocks:
            block.fused_kernels = enabled
            block.attn1.fused_rope = enabled

    def compile_blocks(self, enabled: bool = True, **options) -> None:
        """Regional ``torch.compile``: each block compiled on its own (the 40 blocks share one graph per
        input shape, so a pyramid run compiles three times, not 120). ``options`` go to torch.compile,
        e.g. ``mode="max-autotune-no-cudagraphs"``; ``enabled=False`` returns to eager blocks."""
        for block in self.blocks:
            if enabled:
                block.compile(**{"dynamic": False, **options})
            else:
                block._compiled_call_impl = None  # what nn.Module.compile() set

    def enable_cuda_graphs(self, enabled: bool = True) -> None:
        """Replay each inference forward as a CUDA graph captured once per input shape (three per
        pyramid run): one launch instead of thousands. Works with the compiled, fused and FP8 paths;
        capture it after switching those on. Gradient-enabled and CPU calls stay eager."""
        from .graphs import CudaGraphs

        self._graphs = CudaGraphs(self._forward) if enabled else None

    def enable_block_offload(self, device: torch.device | str, slots: int = 2):
        """Memory mode: the blocks' weights stay in pinned host memory and stream through ``slots``
        device buffers, overlapped with compute (model/offload.py); the rest of the model moves to
        ``device``. Eager only (not with compile_blocks or CUDA graphs). Returns the BlockOffload."""
        from .offload import offload_model_blocks

        return offload_model_blocks(self, "blocks", device, slots)

    def fuse_qkv(self, enabled: bool = True) -> None:
        """Compute self-attention q, k and v with one GEMM (parameter names and checkpoints unchanged)."""
        for block in self.blocks:
            block.attn1.fused_qkv = enabled

    # ----------------------------------------------------------------------------------- forward

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        indices_hidden_states: torch.Tensor | None = None,
        indices_latents_history_short: torch.Tensor | None = None,
        indices_latents_history_mid: torch.Tensor | None = None,
        indices_latents_history_long: torch.Tensor | None = None,
        latents_history_short: torch.Tensor | None = None,
        latents_history_mid: torch.Tensor | None = None,
        latents_history_long: torch.Tensor | None = None,
        return_dict: bool | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor]:
        """Predict the flow velocity ``ε − x0`` of the noisy chunk ``hidden_states`` (B, C, T, H, W).

        Returns the tensor; with ``return_dict=False`` a 1-tuple, so diffusers-style
        ``model(..., return_dict=False)[0]`` keeps working. ``attention_kwargs`` is accepted and ignored.
        """
        if return_dict:
            raise ValueError("return_dict=True is not supported: the velocity tensor is returned directly")
        inputs = dict(
            hidden_states=hidden_states, timestep=timestep, encoder_hidden_states=encoder_hidden_states,
            indices_hidden_states=indices_hidden_states, indices_latents_history_short=indices_latents_history_short,
            indices_latents_history_mid=indices_latents_history_mid,
            indices_latents_history_long=indices_latents_history_long, latents_history_short=latents_history_short,
            latents_history_mid=latents_history_mid, latents_history_long=latents_history_long,
        )
        if self._graphs is not None and hidden_states.is_cuda and not torch.is_grad_enabled():
            velocity = self._graphs(inputs)
        else:
            velocity = self._forward(**inputs)
        return (velocity,) if return_dict is False else velocity

    def _forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        indices_hidden_states: torch.Tensor | None,
        indices_latents_history_short: torch.Tensor | None,
        indices_latents_history_mid: torch.Tensor | None,
        indices_latents_history_long: torch.Tensor | None,
        latents_history_short: torch.Tensor | None,
        latents_history_mid: torch.Tensor | None,
        latents_history_long: torch.Tensor | None,
    ) -> torch.Tensor:
        batch = hidden_states.shape[0]
        dtype = self.dtype
        self._check_input(hidden_states, "hidden_states")
        timestep = self._batch_timesteps(timestep, batch)

        current, grid = patchify(self.patch_embedding, hidden_states.to(dtype))
        if indices_hidden_states is None:
            indices_hidden_states = torch.arange(grid[0])
        current_table = self._rope(as_index_rows(indices_hidden_states, batch), grid[1], grid[2], current.device)

        history = HistoryInputs(
            short=latents_history_short, mid=latents_history_mid, long=latents_history_long,
            indices_short=indices_latents_history_short, indices_mid=indices_latents_history_mid,
            indices_long=indices_latents_history_long,
        )
        if history.short is not None:
            if not self.config.has_multi_term_memory_patch:
                raise ValueError("this model has no history patch embeddings (has_multi_term_memory_patch=False)")
            self._check_input(history.short, "latents_history_short")
        history_tokens, history_tables = embed_history(
            self, _on_device(history, current.device, dtype), batch, lambda idx, h, w, pool=1: self._rope(
                idx, h, w, current.device, pool)
        )
        x = torch.cat([*history_tokens, current], dim=1) if history_tokens else current
        rope = RopeTable.cat([*history_tables, current_table])
        segments = TokenSegments(history=x.shape[1] - current.shape[1], current=current.shape[1], grid=grid)

        text = self.condition_embedder.embed_text(encoder_hidden_states.to(device=x.device, dtype=dtype))
        temb, projections = self.condition_embedder.embed_time(timestep.to(x.device), dtype)
        segment_projections = [projections]
        if segments.history > 0:
            if self.config.zero_history_timestep:
                history_projections = self._zero_time_projections(timestep.dtype, x.device, dtype)
            else:
                history_projections = projections
            segment_projections = [history_projections, projections]

        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, text, segment_projections, rope, segments, use_reentrant=False)
            else:
                x = block(x, text, segment_projections, rope, segments)

        out = self.proj_out(self.norm_out(x[:, segments.history :], temb))
        return self._unpatchify(out, grid)

    def _rope(self, indices: torch.Tensor, height: int, width: int, device: torch.device, pool: int = 1) -> RopeTable:
        """RoPE table, cached when the indices live on the CPU (reading them costs no device sync)."""
        if indices.device.type != "cpu":
            return rope_table(indices.to(device), height, width, self.config.rope_dim, self.config.rope_theta, pool)
        # Tables made under inference_mode cannot be saved for a backward pass: keep them apart.
        key = (tuple(indices.shape), tuple(indices.flatten().tolist()), height, width, pool, str(device),
               torch.is_inference_mode_enabled())
        table = self._rope_cache.get(key)
        if table is None:
            table = rope_table(indices.to(device), height, width, self.config.rope_dim, self.config.rope_theta, pool)
            if len(self._rope_cache) >= 64:
                self._rope_cache.clear()
            self._rope_cache[key] = table
        return table

    def _zero_time_projections(self, timestep_dtype: torch.dtype, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The t = 0 modulation of history tokens; cached outside autograd, keyed by the weights' versions."""
        zero = torch.zeros(1, dtype=timestep_dtype, device=device)
        if torch.is_grad_enabled():
            return self.condition_embedder.embed_time(zero, dtype)[1]
        weights = tuple((id(p), p._version) for p in self.condition_embedder.parameters())
        key = (timestep_dtype, str(device), dtype, weights, torch.is_inference_mode_enabled())
        if key not in self._zero_time_cache:
            self._zero_time_cache.clear()
            self._zero_time_cache[key] = self.condition_embedder.embed_time(zero, dtype)[1]
        return self._zero_time_cache[key]

    def _check_input(self, latents: torch.Tensor, name: str) -> None:
        if latents.ndim != 5 or latents.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{name} must be (B, {self.config.in_channels}, T, H, W); got shape {tuple(latents.shape)}"
            )
        _, ph, pw = self.config.patch_size
        if latents.shape[-2] % ph or latents.shape[-1] % pw:
            raise ValueError(
                f"{name}: latent size {latents.shape[-2]}×{latents.shape[-1]} is not divisible by the patch size {ph}×{pw}"
            )

    @staticmethod
    def _batch_timesteps(timestep: torch.Tensor | float, batch: int) -> torch.Tensor:
        timestep = torch.as_tensor(timestep)
        if timestep.ndim == 0 or timestep.numel() == 1:
            return timestep.reshape(1).expand(batch)
        if timestep.ndim != 1 or timestep.shape[0] != batch:
            raise ValueError(f"timestep must be a scalar or have shape ({batch},); got {tuple(timestep.shape)}")
        return timestep

    def _unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, L, pt·ph·pw·C) → (B, C, T, H, W); the C outputs of a patch position are contiguous."""
        pt, ph, pw = self.config.patch_size
        t, h, w = grid
        x = tokens.reshape(tokens.shape[0], t, h, w, pt, ph, pw, -1)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(tokens.shape[0], -1, t * pt, h * ph, w * pw)


def keeps_fp32(name: str) -> bool:
    return any(pattern in name for pattern in FP32_PARAMETER_PATTERNS)


def _on_device(history: HistoryInputs, device: torch.device, dtype: torch.dtype) -> HistoryInputs:
    def move(t: torch.Tensor | None, floating: bool) -> torch.Tensor | None:
        if t is None or not floating:
            return t  # indices stay where they are: on the CPU they key the RoPE cache without a sync
        return t.to(device=device, dtype=dtype)

    return HistoryInputs(
        short=move(history.short, True), mid=move(history.mid, True), long=move(history.long, True),
        indices_short=move(history.indices_short, False), indices_mid=move(history.indices_mid, False),
        indices_long=move(history.indices_long, False),
    )
