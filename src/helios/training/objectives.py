"""Training objectives: flow matching with history (stage 1) and pyramid flow matching (stage 2).

Both predict the velocity of a noisy chunk conditioned on the (corrupted, partly dropped) history
window, exactly the inputs the sampler gives the model at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import HistorySettings
from ..model.window import window_history
from ..sampling.noise import device_randn
from ..sampling.pyramid import downsample, upsample
from ..sampling.schedules import PyramidConstants, flow_matching_training_sigmas, local_stage_sigmas

NUM_TRAIN_TIMESTEPS = 1000


def logit_normal_sigmas(batch: int, mean: float, std: float, generator: torch.Generator) -> torch.Tensor:
    """σ per sample: u = sigmoid(N(mean, std)), index ⌊1000u⌋ into the training table (official §3.3)."""
    u = torch.sigmoid(torch.randn(batch, generator=generator, dtype=torch.float64) * std + mean)
    index = (u * NUM_TRAIN_TIMESTEPS).long().clamp(0, NUM_TRAIN_TIMESTEPS - 1)
    return flow_matching_training_sigmas(NUM_TRAIN_TIMESTEPS)[index].float()


def predict_velocity(model, noisy, timestep, text, history, anchor, settings: HistorySettings, dtype):
    inputs = window_history(history, anchor, settings, dtype)
    return model(noisy.to(dtype), timestep, text.to(dtype), history=inputs)


def flow_matching_loss(
    model,
    target,
    history,
    anchor,
    text,
    settings: HistorySettings,
    generator: torch.Generator,
    logit_normal: tuple[float, float] = (0.0, 1.0),
    dtype=torch.float32,
) -> torch.Tensor:
    """Stage 1: x_t = (1 − σ)·x0 + σ·ε, predict ε − x0 (MSE)."""
    batch = target.shape[0]
    sigma = logit_normal_sigmas(batch, *logit_normal, generator).to(target.device).view(batch, 1, 1, 1, 1)
    noise = device_randn(target.shape, target.device, generator)
    noisy = (1 - sigma) * target + sigma * noise
    prediction = predict_velocity(
        model, noisy, sigma.flatten() * NUM_TRAIN_TIMESTEPS, text, history, anchor, settings, dtype
    )
    return F.mse_loss(prediction.float(), (noise - target).float())


def pyramid_flow_matching_loss(
    model,
    target,
    history,
    anchor,
    text,
    settings: HistorySettings,
    generator: torch.Generator,
    constants: PyramidConstants,
    sample_ratios: tuple[int, ...] = (1, 1, 1),
    dtype=torch.float32,
    motion_weight: float = 0.0,
    coarse_motion_dropout: float = 0.0,
) -> torch.Tensor:
    """Stage 2 (paper eq. 5–7): each pyramid stage learns the straight path from its start (noise, or
    the upsampled previous level re-noised to the stage's start σ) to its end (the next level's start
    point, or the clean latent at the last stage); the target is start − end.

    ``motion_weight`` λ > 0 weighs each latent element's squared error by 1 + λ·m, m its clean latent's
    frame-to-frame change relative to the sample's mean change (``motion_weights``), so the few moving
    elements that tell one direction from another are not drowned by the static background.

    ``coarse_motion_dropout`` p > 0: each sample w.p. p starts every stage after the first from the coarser
    level with its motion taken out (``motionless``), while its end stays the true path — so the finer
    stages learn to draw the motion the caption names, as sampling asks of them whenever the coarse stage
    commits to little motion (plain training always shows them the true coarse path, and they copy it)."""
    stages = constants.stages
    clean, noise = [target], [device_randn(target.shape, target.device, generator)]
    for _ in range(stages - 1):
        clean.insert(0, downsample(clean[0]))
        noise.insert(0, downsample(noise[0]) * 2)  # bilinear halving divides the noise std by 2
    coarse = clean
    if coarse_motion_dropout >= 1:  # every sample (no draw: the noise and timesteps stay those of p = 0)
        coarse = [motionless(level) for level in clean]
    elif coarse_motion_dropout > 0:
        dropped = (torch.rand(target.shape[0], generator=generator) < coarse_motion_dropout).to(target.device)
        coarse = [torch.where(dropped.view(-1, 1, 1, 1, 1), motionless(level), level) for level in clean]
    local_sigmas = torch.from_numpy(local_stage_sigmas(NUM_TRAIN_TIMESTEPS))
    losses = []
    for stage, count in enumerate(sample_ratios):
        s_start, s_end = constants.start_sigmas[stage], constants.end_sigmas[stage]
        start = noise[stage] if stage == 0 else s_start * noise[stage] + (1 - s_start) * upsample(coarse[stage - 1])
        end = clean[stage] if stage == stages - 1 else s_end * noise[stage] + (1 - s_end) * clean[stage]
        velocity = (start - end).float()
        weights = motion_weights(clean[stage], motion_weight) if motion_weight else None  # (per stage, not draw)
        for _ in range(count):
            index = torch.randint(NUM_TRAIN_TIMESTEPS, (target.shape[0],), generator=generator)
            sigma = local_sigmas[index].float().to(target.device).view(-1, 1, 1, 1, 1)
            timestep = constants.stage_timesteps[stage][index].float().to(target.device)
            noisy = sigma * start + (1 - sigma) * end
            prediction = predict_velocity(model, noisy, timestep, text, history, anchor, settings, dtype)
            if weights is None:
                losses.append(F.mse_loss(prediction.float(), velocity))
            else:
                losses.append(((prediction.float() - velocity).square() * weights).mean() / weights.mean())
    return torch.stack(losses).mean()


def motionless(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) with every frame replaced by the chunk's mean frame: a still smear over the path,
    where the object was on average and no direction to read."""
    return latents.mean(dim=2, keepdim=True).expand_as(latents)


def motion_weights(clean: torch.Tensor, strength: float) -> torch.Tensor:
    """(B, 1, T, H, W) weights 1 + strength·m from a clean latent (B, C, T, H, W): m is the mean absolute
    change of each element from the previous latent frame (the first frame takes the second's),
    divided by the sample's mean change — a static video weighs 1 everywhere."""
    change = (clean[:, :, 1:] - clean[:, :, :-1]).abs().mean(1, keepdim=True).float()
    if change.shape[2] == 0:
        return torch.ones_like(clean[:, :1]).float()
    change = torch.cat([change[:, :, :1], change], dim=2)
    scale = change.mean(dim=(2, 3, 4), keepdim=True)
    return 1 + strength * torch.where(scale > 0, change / scale.clamp_min(1e-12), torch.zeros_like(change))
