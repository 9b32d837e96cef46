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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..config import TransformerConfig
from .attention import attention
from .checkpoint import TransformerCheckpointMixin
from .context_parallel import SequenceShards, gather_sequence, own_strides, ulysses_attention
from .lora import LoraAdapters, scaled
from .memory import TokenSegments, as_index_rows, embed_history, memory_patches, patchify
from .precision import FP32_PARAMETER_PATTERNS
from .ring_attention import ring_attention
from .rope import RopeCache, RopeTable, apply_rope
from .window import HistoryInputs

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
        # (a context-parallel shard may hold one kind of token only: empty segments are left out)
        kept = [(p, n) for p, n in zip(projections, lengths) if n > 0]
        self.lengths = [n for _, n in kept]
        self.vectors = [(table + p.float()).unsqueeze(2).unbind(1) for p, _ in kept]

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.split(self.lengths, dim=1) if len(self.lengths) > 1 else (x,)

    def modulate(self, normed: torch.Tensor, shift: int, scale: int, dtype: torch.dtype) -> torch.Tensor:
        parts = [(part * (1 + v[scale]) + v[shift]).to(dtype) for part, v in zip(self._parts(normed), self.vectors)]
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
        self.backend = "sdpa"  # attention kernel (model/attention.py); set per model with set_attention_backend
        # Speed switches (model/speed.py), each tested equal to the reference path:
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
        shards: SequenceShards | None = None,
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
        if shards is not None and shards.method == "ring":  # context parallelism: K and V go round
            out = ring_attention(q, k, v, shards)
        elif shards is not None:  # context parallelism: all tokens, some heads, for the kernel
            out = ulysses_attention(q, k, v, shards, lambda q, k, v: attention(q, k, v, self.backend))
        else:
            out = attention(q, k, v, self.backend)
        return self.to_out[0](out.flatten(2).type_as(q))


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
                return kernel.norm_modulate(
                    x, [v[shift] for v in mod.vectors], [v[scale] for v in mod.vectors], mod.lengths, self.eps, x.dtype
                )
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
        attended = self.attn1(normed, rope=rope, history_length=segments.history, shards=segments.shards)
        x = mod.gated_residual(x, attended, gate=2)
        if self.guidance_cross_attn and segments.history > 0:  # (history tokens never read the text)
            # Also when a context-parallel rank holds no noisy token: its cross-attention weights then get
            # zero gradients, not none, so FSDP reduces the same gradients on every rank.
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


@dataclass
class TransformerOutput:
    """``.sample`` (and ``[0]``), where diffusers is not installed to give its own output class."""

    sample: torch.Tensor

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.sample,)[index]


def transformer_output(sample: torch.Tensor):
    try:
        from diffusers.models.modeling_outputs import Transformer2DModelOutput
    except ImportError:
        return TransformerOutput(sample)
    return Transformer2DModelOutput(sample=sample)


class HeliosTransformer(TransformerCheckpointMixin, LoraAdapters, nn.Module):
    """The Helios DiT. ``forward`` takes diffusers' keyword names (or a :class:`HistoryInputs`) and
    returns the predicted velocity. Loading and saving: ``checkpoint.py``; speed switches: ``speed.py``."""

    # diffusers' class attributes (its loaders and training scripts read them)
    _supports_gradient_checkpointing = True
    _keep_in_fp32_modules = list(FP32_PARAMETER_PATTERNS)
    _no_split_modules = ["HeliosBlock", "OutputHead"]

    def __init__(self, config: TransformerConfig | None = None, **diffusers_config: Any):
        """From a :class:`TransformerConfig`, or diffusers' keywords (``HeliosTransformer(num_layers=2, ...)``)."""
        super().__init__()
        if config is not None and diffusers_config:
            raise TypeError("give a TransformerConfig or diffusers' config keywords, not both")
        if config is None:
            config = TransformerConfig.from_dict(diffusers_config)
        self.config = config
        dim = config.inner_dim
        self.patch_embedding = nn.Conv3d(
            config.in_channels, dim, kernel_size=config.patch_size, stride=config.patch_size
        )
        if config.has_multi_term_memory_patch:
            self.patch_short, self.patch_mid, self.patch_long = memory_patches(
                config.in_channels, dim, config.patch_size
            )
        self.condition_embedder = ConditionEmbedder(dim, config.freq_dim, config.text_dim)
        self.blocks = nn.ModuleList([HeliosBlock(config) for _ in range(config.num_layers)])
        self.norm_out = OutputHead(dim, config.eps)
        self.proj_out = nn.Linear(dim, config.out_channels * math.prod(config.patch_size))
        self.gradient_checkpointing = False
        self.context_parallel = None  # model/context_parallel.py: split the sequence over ranks
        # Inference caches: RoPE tables (the window indices are the same for every chunk) and the
        # history's t = 0 modulation (depends only on weights). Keys include what they depend on.
        self.rope_cache = RopeCache(config.rope_dim, config.rope_theta, spatial_scale=config.rope_spatial_scale)
        self._zero_time_cache: dict = {}

    @classmethod
    def from_config(cls, config: TransformerConfig | dict[str, Any]) -> HeliosTransformer:
        """Build with random weights from a :class:`TransformerConfig` or a diffusers config dict.

        Works under ``with torch.device("meta"):`` to get a weightless skeleton.
        """
        if isinstance(config, dict):
            config = TransformerConfig.from_dict(config)
        return cls(config)

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.gradient_checkpointing = enabled

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.gradient_checkpointing

    @contextmanager
    def cache_context(self, name: str):
        """diffusers' pipelines name each forward's branch ("cond", "uncond") for their cache hooks;
        this transformer keeps no per-branch cache, so the context only has to exist."""
        yield

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
        history: HistoryInputs | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor]:
        """Predict the flow velocity ``ε − x0`` of the noisy chunk ``hidden_states`` (B, C, T, H, W).

        The history comes as diffusers' keywords or as one ``history`` (not both). Returns the
        tensor; with ``return_dict=False`` a 1-tuple and with ``return_dict=True`` diffusers' output
        (``.sample``), as diffusers' model. ``attention_kwargs={"scale": s}`` scales the loaded
        LoRA adapters for this call (diffusers' convention); other attention keywords are refused.
        """
        keywords = dict(
            indices_hidden_states=indices_hidden_states,
            indices_latents_history_short=indices_latents_history_short,
            indices_latents_history_mid=indices_latents_history_mid,
            indices_latents_history_long=indices_latents_history_long,
            latents_history_short=latents_history_short,
            latents_history_mid=latents_history_mid,
            latents_history_long=latents_history_long,
        )
        if history is None:
            history = HistoryInputs.from_diffusers(**keywords)
        elif any(value is not None for value in keywords.values()):
            raise ValueError("give the history either as history=HistoryInputs or as diffusers' keywords, not both")
        extra = set(attention_kwargs or {}) - {"scale"}
        if extra:
            raise ValueError(f"attention_kwargs: only 'scale' (the LoRA scale) is supported, got {sorted(extra)}")
        scale = float((attention_kwargs or {}).get("scale", 1.0))
        with scaled(self, scale) if scale != 1.0 else nullcontext():  # (no LoRA walk on the plain path)
            velocity = self.predict(hidden_states, timestep, encoder_hidden_states, history)
        if return_dict is False:
            return (velocity,)
        return transformer_output(velocity) if return_dict else velocity

    def predict(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor | float, text: torch.Tensor, history: HistoryInputs
    ) -> torch.Tensor:
        """The network: noisy latents, timestep(s), text embedding and history → velocity."""
        batch = hidden_states.shape[0]
        self._check_input(hidden_states, "hidden_states")
        timestep = self._batch_timesteps(timestep, batch)
        parallel = self.context_parallel
        rows = parallel.batch_rows(batch) if parallel is not None else None
        if rows is not None:  # CFG-parallel: this rank's samples whole, the batch gathered after
            text = text.expand(batch, *text.shape[1:]) if text.shape[0] == 1 else text
            local = self._predict(hidden_states[rows], timestep[rows], text[rows], history.rows(rows), False)
            return parallel.gather_batch(local)
        return self._predict(hidden_states, timestep, text, history, parallel is not None)

    def _pyramid_spacing(self, grid: tuple[int, int, int], history: HistoryInputs) -> int:
        """How many history token rows one noisy token row spans (``pyramid_rope_alignment``; else 1)."""
        if not self.config.pyramid_rope_alignment or history.short is None:
            return 1
        patch_h, patch_w = self.config.patch_size[1:]
        full_h, full_w = -(-history.short.shape[-2] // patch_h), -(-history.short.shape[-1] // patch_w)
        spacing = full_h // grid[1]
        if spacing < 1 or (full_h, full_w) != (grid[1] * spacing, grid[2] * spacing):
            raise ValueError(
                f"pyramid_rope_alignment needs the noisy token grid {grid[1]}×{grid[2]} to divide the "
                f"history's {full_h}×{full_w} by one whole factor"
            )
        return spacing

    def _predict(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        history: HistoryInputs,
        split: bool,
    ) -> torch.Tensor:
        """``predict`` on this process's inputs; ``split``: the sequence is split over the ranks."""
        batch = hidden_states.shape[0]
        dtype = self.dtype

        current, grid = patchify(self.patch_embedding, hidden_states.to(dtype))
        device = current.device
        indices_current = history.indices_current if history.indices_current is not None else torch.arange(grid[0])
        spacing = self._pyramid_spacing(grid, history)
        current_table = self.rope_cache.table(
            as_index_rows(indices_current, batch), grid[1], grid[2], device, spacing=spacing
        )

        if history.has_history:
            if not self.config.has_multi_term_memory_patch:
                raise ValueError("this model has no history patch embeddings (has_multi_term_memory_patch=False)")
            self._check_input(history.short, "latents_history_short")
        history_tokens, history_tables = embed_history(self, history.to(device, dtype), batch, self.rope_cache, device)
        x = torch.cat([*history_tokens, current], dim=1) if history_tokens else current
        rope = RopeTable.cat([*history_tables, current_table])
        segments = TokenSegments(history=x.shape[1] - current.shape[1], current=current.shape[1], grid=grid)
        if split:  # this rank keeps its run of the sequence
            shards = self.context_parallel.shards(segments.total)
            tokens = slice(shards.start, shards.start + shards.local)
            # Copies, not views: a view's strides are the whole sequence's, and a new stride recompiles
            # the compiled blocks (seen on two and four GPUs).
            x = own_strides(x[:, tokens])
            rope = RopeTable(own_strides(rope.cos[:, tokens]), own_strides(rope.sin[:, tokens]))
            segments = segments.shard(shards)

        text = self.condition_embedder.embed_text(text.to(device=device, dtype=dtype))
        temb, projections = self.condition_embedder.embed_time(timestep.to(device), dtype)
        segment_projections = [projections]
        if segments.history > 0:
            if self.config.zero_history_timestep:
                history_projections = self._zero_time_projections(timestep.dtype, device, dtype)
            else:
                history_projections = projections
            segment_projections = [history_projections, projections]

        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, text, segment_projections, rope, segments, use_reentrant=False)
            else:
                x = block(x, text, segment_projections, rope, segments)

        out = self.proj_out(self.norm_out(x[:, segments.history :], temb))
        if segments.shards is not None:  # every rank returns the whole prediction
            out = self._gather_noisy(out, segments)
        return self._unpatchify(out, grid)

    @staticmethod
    def _gather_noisy(out: torch.Tensor, segments: TokenSegments) -> torch.Tensor:
        """Every rank's noisy-token outputs, in sequence order (context parallelism)."""
        shards = segments.shards
        history = sum(shards.lengths) - math.prod(segments.grid)  # (the noisy tokens are the grid's)
        return gather_sequence(out, shards.tokens_from(history), shards.group)

    def _zero_time_projections(
        self, timestep_dtype: torch.dtype, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
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
                f"{name}: latent size {latents.shape[-2]}×{latents.shape[-1]} "
                f"is not divisible by the patch size {ph}×{pw}"
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
