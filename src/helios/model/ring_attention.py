"""Ring attention: the context-parallel alternative to Ulysses's all-to-all (inference).

Each rank keeps its queries; the keys and values travel around the ring of ranks, one shard per step
(the next shard's transfer overlaps the current shard's attention). Each step gives a partial result
over one shard of keys with its log-sum-exp; the partials combine exactly (softmax over the union of
shards) as ``out = Σ exp(lse_i − lse) · out_i`` with ``lse = logsumexp_i(lse_i)``. Unlike Ulysses it needs
no head count divisible by the ranks and never holds the whole sequence, at the price of N − 1
transfers of K and V per layer. Gradients are not implemented: training uses Ulysses.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .context_parallel import SequenceShards


def attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, S, D) attention and its log-sum-exp (B, H, S_q) in fp32, by a fused kernel where one
    returns it (flash attention on CUDA in 16-bit, on the CPU), else computed directly."""
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[:2]
        return out, lse.float()
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[:2]
        return out, lse.float()
    scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    lse = torch.logsumexp(scores, dim=-1)
    return (torch.softmax(scores, dim=-1) @ v.float()).to(q.dtype), lse


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shards: SequenceShards) -> torch.Tensor:
    """Self-attention of the whole sequence for this rank's (B, S_local, H, D) queries; k and v are this
    rank's shard and go round the ring. Returns (B, S_local, H, D)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError("ring attention has no backward: train with Ulysses context parallelism")
    group, n = shards.group, len(shards.lengths)
    world = dist.get_process_group_ranks(group) if group is not None else list(range(dist.get_world_size()))
    after, before = world[(shards.rank + 1) % n], world[(shards.rank - 1) % n]
    q = q.transpose(1, 2)
    travelling = torch.stack([k, v]).transpose(2, 3).contiguous()  # (2, B, H, S_shard, D)
    out = lse = None
    for step in range(n):
        incoming = None
        if step < n - 1:  # start moving the next shard before attending to this one
            source = (shards.rank - step - 1) % n
            incoming = travelling.new_empty((*travelling.shape[:3], shards.lengths[source], travelling.shape[-1]))
            requests = dist.batch_isend_irecv(
                [dist.P2POp(dist.isend, travelling, after, group), dist.P2POp(dist.irecv, incoming, before, group)]
            )
        part, part_lse = attention_with_lse(q, travelling[0], travelling[1])
        if out is None:
            out, lse = part.float(), part_lse
        else:
            combined = torch.logaddexp(lse, part_lse)
            out = out * (lse - combined).exp().unsqueeze(-1) + part.float() * (part_lse - combined).exp().unsqueeze(-1)
            lse = combined
        if incoming is not None:
            for request in requests:
                request.wait()
            travelling = incoming
    return out.to(q.dtype).transpose(1, 2)
