"""Ulysses context parallelism of the transformer (sequence parallelism, DeepSpeed-Ulysses style).

The token sequence ``[history | noisy]`` is cut into N contiguous shards, one per rank of a process
group. Every layer works on its rank's tokens alone — patch embeddings, modulation, cross-attention,
the feed-forward and the output head are per token — except self-attention, where two all-to-all
exchanges turn (local tokens, all heads) into (all tokens, heads / N) before the attention kernel and
back after it. The noisy tokens' outputs are gathered at the end, so every rank returns the whole
prediction and the sampler, identical on all ranks, needs no change. Weights are replicated.

Shards may differ in length by one token (any sequence length works); the head count must be a
multiple of N. The exchanges and the gather are autograd functions (the backward of an all-to-all
is the reverse all-to-all), so gradients flow; each rank's weight gradients are then its tokens' share, and their
sum over the ranks (an all-reduce) is the single-process gradient (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class SequenceShards:
    """Where this rank's tokens lie in the whole sequence."""

    group: dist.ProcessGroup | None  # None: the default (world) group
    lengths: tuple[int, ...]  # every rank's token count, in rank order
    rank: int
    method: str = "ulysses"  # how self-attention sees the whole sequence: "ulysses" or "ring"

    @property
    def start(self) -> int:
        return sum(self.lengths[: self.rank])

    @property
    def local(self) -> int:
        return self.lengths[self.rank]

    def tokens_from(self, position: int) -> list[int]:
        """How many tokens at or after ``position`` of the sequence each rank holds."""
        starts = [sum(self.lengths[:r]) for r in range(len(self.lengths))]
        return [min(max(start + n - position, 0), n) for start, n in zip(starts, self.lengths)]


class ContextParallel:
    """A process group that splits the transformer's work (``enable_context_parallel``).

    ``split_batch``: a batch that divides by the ranks is split by samples instead — each rank runs its
    samples whole and one gather ends the forward (CFG-parallel: the conditional and unconditional
    halves of a batched-CFG call on two GPUs); otherwise the sequence is split, and self-attention
    sees all of it by ``method``: "ulysses" (all-to-all, heads split) or "ring" (ring_attention.py)."""

    def __init__(self, group: dist.ProcessGroup | None = None, split_batch: bool = True, method: str = "ulysses"):
        if not dist.is_initialized():
            raise RuntimeError("context parallelism needs torch.distributed initialised (run under torchrun)")
        if method not in ("ulysses", "ring"):
            raise ValueError(f"context-parallel method must be 'ulysses' or 'ring', got {method!r}")
        self.method = method
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.split_batch = split_batch

    def batch_rows(self, batch: int) -> slice | None:
        """This rank's samples when the batch is split, else None."""
        if not self.split_batch or batch % self.size:
            return None
        per_rank = batch // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def gather_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's samples (B / N, ...) → the batch (B, ...), in rank order, on every rank."""
        lengths = [x.shape[0]] * self.size
        return gather_sequence(x.transpose(0, 1), lengths, self.group).transpose(0, 1)

    def shards(self, total: int) -> SequenceShards:
        base, extra = divmod(total, self.size)
        if base == 0:
            raise ValueError(f"{total} tokens cannot be split over {self.size} ranks")
        lengths = tuple(base + (1 if r < extra else 0) for r in range(self.size))
        return SequenceShards(self.group, lengths, self.rank, self.method)


def own_strides(shard: torch.Tensor) -> torch.Tensor:
    """A copy of ``shard`` (a rank's run of a longer sequence) laid out for its own shape. Compiled blocks
    guard on strides, and a view's batch stride is the whole sequence's, which ``.contiguous()`` keeps
    for a batch of one (a dimension of size one does not count against contiguity)."""
    return shard.clone(memory_format=torch.contiguous_format)


def check_heads(heads: int, ranks: int) -> None:
    if heads % ranks:
        raise ValueError(f"{heads} heads cannot be split over {ranks} ranks (context parallelism needs a divisor)")


def enable_context_parallel(
    model: torch.nn.Module, group: dist.ProcessGroup | None = None, split_batch: bool = True, method: str = "ulysses"
) -> ContextParallel:
    """Split ``model``'s work over ``group`` (default: all ranks) from now on; returns the splitter."""
    parallel = ContextParallel(group, split_batch, method)
    if method == "ulysses":
        check_heads(model.config.num_attention_heads, parallel.size)
    model.context_parallel = parallel
    return parallel


def disable_context_parallel(model: torch.nn.Module) -> None:
    model.context_parallel = None


def _exchange(send: torch.Tensor, send_sizes: list[int], receive_sizes: list[int], group) -> torch.Tensor:
    """all-to-all of a flat tensor with uneven splits (element counts per peer)."""
    received = send.new_empty(sum(receive_sizes))
    dist.all_to_all_single(received, send, receive_sizes, send_sizes, group=group)
    return received


def _sequence_to_heads(x: torch.Tensor, shards: SequenceShards) -> torch.Tensor:
    """(B, S_local, H, D) → (B, S, H / N, D): every rank gives each peer that peer's group of heads."""
    batch, local, heads, dim = x.shape
    n = len(shards.lengths)
    group_heads = heads // n
    send = x.reshape(batch, local, n, group_heads, dim).permute(2, 1, 0, 3, 4).contiguous()  # (N, S_l, B, h, D)
    per_token = batch * group_heads * dim
    received = _exchange(send.flatten(), [local * per_token] * n, [s * per_token for s in shards.lengths], shards.group)
    return received.view(sum(shards.lengths), batch, group_heads, dim).permute(1, 0, 2, 3)


def _heads_to_sequence(y: torch.Tensor, shards: SequenceShards) -> torch.Tensor:
    """(B, S, H / N, D) → (B, S_local, H, D): the inverse of ``_sequence_to_heads``."""
    batch, _, group_heads, dim = y.shape
    n = len(shards.lengths)
    send = y.permute(1, 0, 2, 3).contiguous()  # (S, B, h, D): rank r's tokens are one contiguous run
    per_token = batch * group_heads * dim
    received = _exchange(
        send.flatten(), [s * per_token for s in shards.lengths], [shards.local * per_token] * n, shards.group
    )
    return received.view(n, shards.local, batch, group_heads, dim).permute(2, 1, 0, 3, 4).flatten(2, 3)


class _Exchange(torch.autograd.Function):
    """``_sequence_to_heads`` (``to_heads``) or its inverse; the backward of each is the other."""

    @staticmethod
    def forward(ctx, x, shards, to_heads: bool):
        ctx.shards, ctx.to_heads = shards, to_heads
        return (_sequence_to_heads if to_heads else _heads_to_sequence)(x, shards)

    @staticmethod
    def backward(ctx, grad):
        return (_heads_to_sequence if ctx.to_heads else _sequence_to_heads)(grad, ctx.shards), None, None


def ulysses_attention(q, k, v, shards: SequenceShards, attend) -> torch.Tensor:
    """Self-attention of the whole sequence from this rank's (B, S_local, H, D) q, k, v: ``attend`` (a
    kernel on (B, S, heads, D)) sees all tokens and H / N heads; the result is this rank's tokens."""
    q, k, v = (_Exchange.apply(t, shards, True) for t in (q, k, v))
    return _Exchange.apply(attend(q, k, v), shards, False)


class _GatherSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lengths, group):
        ctx.lengths, ctx.rank = lengths, dist.get_rank(group)
        longest = max(lengths)
        padded = x.new_zeros((x.shape[0], longest, *x.shape[2:]))
        padded[:, : x.shape[1]] = x
        parts = [torch.empty_like(padded) for _ in lengths]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([part[:, :n] for part, n in zip(parts, lengths)], dim=1)

    @staticmethod
    def backward(ctx, grad):
        # every rank computes the same loss on the whole output: its tokens' share of the gradient is its own
        start = sum(ctx.lengths[: ctx.rank])
        return grad[:, start : start + ctx.lengths[ctx.rank]], None, None


def gather_sequence(x: torch.Tensor, lengths: list[int], group) -> torch.Tensor:
    """(B, n_local, ...) on every rank → (B, Σ n, ...) on every rank, in rank order (uneven lengths are
    padded to the longest for all_gather, then trimmed)."""
    return _GatherSequence.apply(x, list(lengths), group)
