"""The losses of stage 3, Adversarial Hierarchical Distillation (paper §3.4.2, eq. 11–16).

Pure functions of tensors, so each is tested against values computed by hand:

* ``dmd_loss``: distribution matching — the generator's sample moves along (fake − real) score, both
  as x0 predictions, normalised per sample by the mean distance to the real score's x0;
* ``real_score``: the teacher's guided x0. Guidance convention (the official code's): cond + s·(cond −
  uncond); the paper's "real-score CFG weight 3.0" is s = 3, i.e. uncond + 4·(cond − uncond);
* ``critic_flow_loss``: the fake score learns the generator's distribution by flow matching;
* ``renoise_timesteps``: Dynamic Re-noise — Beta(4, 1.5) annealed to uniform by a cosine schedule;
* GAN: non-saturating discriminator / generator losses and approximate R1 (APT);
* ``ode_regression_loss``: Staged ODE Init, the student's stage endpoint against the teacher's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..sampling.schedules import time_shift
from .objectives import NUM_TRAIN_TIMESTEPS

RENOISE_CLAMP = (20, 980)  # integer timesteps the score models are evaluated at


def x0_from_velocity(noisy: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0 = x_t − σ·v on the straight path x_t = (1 − σ)·x0 + σ·ε (v = ε − x0)."""
    return noisy - _per_sample(sigma, noisy) * velocity


def real_score(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """The teacher's guided prediction: cond + scale·(cond − uncond) (scale 3 = standard CFG weight 4)."""
    return cond + scale * (cond - uncond)


def dmd_loss(sample: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor) -> torch.Tensor:
    """0.5·MSE(x, sg(x − g)) with g = (fake − real) / mean|x − real| per sample, in float64: its
    gradient with respect to x is g / numel, the DMD direction (DMD eq. 7, the official normalisation)."""
    x = sample.double()
    real, fake = real_x0.double(), fake_x0.double()
    normaliser = (x - real).abs().mean(dim=tuple(range(1, x.ndim)), keepdim=True).clamp_min(1e-12)
    gradient = ((fake - real) / normaliser).detach()
    return 0.5 * F.mse_loss(x, (x - gradient).detach())


def critic_flow_loss(velocity: torch.Tensor, noise: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The fake score's flow-matching loss on (detached) generator samples: MSE(v, ε − x0)."""
    return F.mse_loss(velocity.float(), (noise - clean).float())


def renoise_shape(step: int, anneal_steps: int, alpha: float = 4.0, beta: float = 1.5) -> tuple[float, float]:
    """Beta parameters at ``step``: from (alpha, beta) toward (1, 1) — uniform — on a cosine schedule."""
    progress = min(max(step, 0) / anneal_steps, 1.0) if anneal_steps > 0 else 1.0
    keep = 0.5 * (1 + math.cos(math.pi * progress))
    return 1 + (alpha - 1) * keep, 1 + (beta - 1) * keep


def renoise_timesteps(
    batch: int,
    generator: torch.Generator,
    mu: float,
    step: int | None = None,
    anneal_steps: int = 500,
    alpha: float = 4.0,
    beta: float = 1.5,
) -> torch.Tensor:
    """Integer timesteps (batch,) at which a generated sample is re-noised for scoring.

    ``step`` None: uniform (the critic's draws); else Dynamic Re-noise (the generator's): Beta whose
    shape anneals from (alpha, beta) — mass near 1, high noise, coarse structure first — to uniform.
    The draw t ∈ [0, 1] is shifted linearly by ``mu`` (the resolution's dynamic shift), scaled to
    1000, clamped to [20, 980] and rounded."""
    if step is None:
        t = torch.rand(batch, generator=generator, dtype=torch.float64)
    else:
        a, b = renoise_shape(step, anneal_steps, alpha, beta)
        # torch's Beta takes no generator: draw it from a private stream seeded by ours (exact resume)
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            t = torch.distributions.Beta(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
            t = t.sample((batch,))
    t = time_shift("linear", mu, t.clamp(1e-6, 1.0)) * NUM_TRAIN_TIMESTEPS
    return t.clamp(*RENOISE_CLAMP).round()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the discriminator (eq. 11): softplus(−D(real)) + softplus(D(fake)).
    (The official code flips the logit's sign — real → negative —, the same loss.)"""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def generator_gan_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the generator (eq. 14): softplus(−D(fake))."""
    return F.softplus(-fake_logits.float()).mean()


def approximate_r1(real_logits: torch.Tensor, perturbed_logits: torch.Tensor) -> torch.Tensor:
    """Approximate R1 (eq. 12): ‖D(x) − D(x + σ·ε)‖², which is σ²·‖∇ₓD‖² to first order — R1
    without a double backward."""
    return F.mse_loss(real_logits.float(), perturbed_logits.float())


def ode_regression_loss(
    noisy: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor, stage_end: torch.Tensor
) -> torch.Tensor:
    """Staged ODE Init: 0.5·MSE between the student's stage endpoint x_t − σ·v and the teacher's."""
    return 0.5 * F.mse_loss(x0_from_velocity(noisy.float(), velocity.float(), sigma.float()), stage_end.float())


class CachedGradient(torch.autograd.Function):
    """Cache Grad (paper §4.2): evaluate ``loss_fn(x)`` — a large network, e.g. the discriminator — on
    a detached copy of x, keep only dloss/dx and free the network's graph at once. Backward returns
    that cached gradient, so the caller's graph never holds the network's activations. The network's
    own parameters receive no gradient (the generator step does not train them)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, loss_fn) -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            loss = loss_fn(leaf)
            (gradient,) = torch.autograd.grad(loss, leaf)
        ctx.save_for_backward(gradient)
        return loss.detach()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (gradient,) = ctx.saved_tensors
        return gradient * grad_output, None


def cached_gradient_loss(x: torch.Tensor, loss_fn) -> torch.Tensor:
    """``loss_fn(x)`` with the gradient to x cached in the forward (see ``CachedGradient``)."""
    return CachedGradient.apply(x, loss_fn)


def _per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, device=like.device, dtype=like.dtype)
    return value.view(-1, *([1] * (like.ndim - 1))) if value.ndim == 1 else value
