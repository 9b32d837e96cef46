"""Stage 3 inside the one trainer: the score network beside the student, and one step of each phase.

* Real and fake score share one network (the teacher, Base in the paper) carrying the critic's LoRA:
  adapters off → the frozen teacher (real score, with CFG); adapters on → the critic (fake score).
  Small models may train the whole network as the critic instead (``critic_lora_rank`` None); the
  real score is then a frozen copy.
* Pure Teacher Forcing: every rollout is one chunk conditioned on *real* history from the data.
* Two time scales: the critic learns every step, the student every ``generator_update_every``-th.
* The GAN heads hook the critic's blocks; the student's GAN term goes through Cache Grad.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn

from ..config import DistillSettings, SamplerSettings, ShiftSettings, TrainConfig
from ..sampling.chunk import pyramid_schedules
from ..sampling.dmd import step_sigma
from ..sampling.noise import device_randn
from ..sampling.schedules import PyramidConstants, calculate_shift
from .backward_simulation import draw_exits, staged_backward_simulation
from .distill_losses import (
    approximate_r1,
    cached_gradient_loss,
    critic_flow_loss,
    discriminator_loss,
    dmd_loss,
    generator_gan_loss,
    ode_regression_loss,
    real_score,
    renoise_timesteps,
    x0_from_velocity,
)
from .gan import DiscriminatorHeads, crop_window
from .objectives import NUM_TRAIN_TIMESTEPS, predict_velocity


def student_sampler(settings: DistillSettings) -> SamplerSettings:
    """The few-step sampler the student is trained for (and shipped with): DMD on the pyramid, no CFG."""
    return SamplerSettings(
        name="distilled",
        sampler="dmd",
        pyramid_steps=tuple(settings.student_steps),
        guidance_scale=1.0,
        shift=ShiftSettings("linear"),
    )


@contextmanager
def adapters(model: nn.Module, enabled: bool):
    """Switch every LoRA layer of ``model`` on or off for the block (the real score is the network
    with its adapters off); restores the previous state and the adapters' requires_grad after."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    before = [not layer.disable_adapters for layer in layers]
    flags = {n: p.requires_grad for n, p in model.named_parameters() if "lora_" in n}
    for layer in layers:
        layer.enable_adapters(enabled)
    try:
        yield model
    finally:
        for layer, state in zip(layers, before):
            layer.enable_adapters(state)
        for name, param in model.named_parameters():
            if name in flags:
                param.requires_grad_(flags[name])


class Parking:
    """A model's weights parked in pinned host memory while another model runs (paper §4.2,
    asynchronous VRAM freeing): copies in both directions are non-blocking; parameters keep their
    identity, so optimizers still hold them. On a CPU device it does nothing."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.device = device
        self.tensors = [*model.parameters(), *model.buffers()]
        self.enabled = device.type == "cuda"
        self.host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in self.tensors] if self.enabled else []
        self.parked = False

    def park(self) -> None:
        if not self.enabled or self.parked:
            return
        for tensor, host in zip(self.tensors, self.host):
            host.copy_(tensor.data, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()  # the host copies must land before the device memory goes
        for tensor, host in zip(self.tensors, self.host):
            tensor.data = host
        self.parked = True

    def fetch(self) -> None:
        if not self.enabled or not self.parked:
            return
        for tensor, host in zip(self.tensors, self.host):
            tensor.data = host.to(self.device, non_blocking=True)
        self.parked = False


class Distillation:
    """Stage-3 state beside the trainer's student: the score network, its GAN heads and optimizer."""

    def __init__(self, config: TrainConfig, student: nn.Module, device: torch.device, build_transformer, add_lora):
        self.config = config
        self.settings = settings = config.distill
        self.device = device
        self.sampler = student_sampler(settings)
        self.constants = PyramidConstants(stages=len(settings.student_steps))
        self.patch_size = tuple(student.config.patch_size)
        self.score = self.real = self.heads = self.critic_optimizer = None
        self.critic_params: dict[str, torch.Tensor] = {}
        if settings.phase != "dmd":
            return
        score = build_transformer(settings.teacher)
        if settings.critic_lora_rank:
            score = add_lora(score, settings.critic_lora_rank, settings.critic_lora_alpha or settings.critic_lora_rank)
        else:  # a small model: the whole network is the critic, a frozen copy the real score
            self.real = copy.deepcopy(score).requires_grad_(False).to(device).eval()
        self.score = score.to(device).train()
        if settings.gan:
            self.heads = DiscriminatorHeads(score, settings.gan_head_dim, settings.gan_blocks).to(device)
        self.critic_params = {n: p for n, p in score.named_parameters() if p.requires_grad}
        if self.heads is not None:
            self.critic_params.update({f"gan.{n}": p for n, p in self.heads.named_parameters()})
        self.critic_optimizer = torch.optim.AdamW(
            list(self.critic_params.values()),
            lr=settings.critic_learning_rate,
            betas=config.betas,
            weight_decay=config.weight_decay,
            eps=config.adam_eps,
        )
        self.parking = (Parking(student, device), Parking(self.score, device)) if settings.offload_idle_models else None

    # ------------------------------------------------------------------ helpers

    def generator_turn(self, step: int) -> bool:
        """Two-time-scale rule: the student is updated on every ``generator_update_every``-th step."""
        return self.settings.phase == "ode" or step % self.settings.generator_update_every == 0

    def gan_active(self, step: int) -> bool:
        return self.heads is not None and step >= self.settings.gan_start_step

    def _use(self, which: str) -> None:
        """With offloading: only the model about to run stays on the device ("both": none is parked)."""
        if self.parking is None:
            return
        student, score = self.parking
        if which == "both":
            student.fetch()
            score.fetch()
            return
        (score if which == "student" else student).park()
        (student if which == "student" else score).fetch()

    def _score_context(self, history: torch.Tensor, anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the score networks are conditioned on: the real history (Pure Teacher Forcing), or none
        for a bidirectional teacher (``score_history`` False; zeros = no history, as in a first chunk)."""
        if self.settings.score_history:
            return history, anchor
        return torch.zeros_like(history), torch.zeros_like(anchor)

    def _mu(self, target: torch.Tensor) -> float:
        tokens = math.prod(target.shape[-3:]) // math.prod(self.patch_size)
        return calculate_shift(tokens)

    def _rollout(self, student, target, history, anchor, text, generator, dtype):
        """The student's staged backward simulation from fresh noise, on real history."""
        schedules = pyramid_schedules(self.sampler, self.constants, target.shape, self.patch_size, first_chunk=False)
        exits = draw_exits(schedules, generator)
        noise = device_randn(target.shape, target.device, generator)
        h = self.config.history

        def denoise(latents, timestep):
            return predict_velocity(student, latents, timestep, text, history, anchor, h, dtype).float()

        return staged_backward_simulation(denoise, noise, schedules, self.constants, exits, generator)

    def _renoise(self, clean, timesteps, generator):
        sigma = (timesteps / NUM_TRAIN_TIMESTEPS).float().to(clean.device).view(-1, 1, 1, 1, 1)
        # (the score networks see the same integer timestep as a float, like stage-1 training)
        noise = device_randn(clean.shape, clean.device, generator)
        return (1 - sigma) * clean + sigma * noise, noise, sigma

    def _score(self, network, noisy, timesteps, text, history, anchor, dtype):
        return predict_velocity(
            network, noisy, timesteps.float().to(noisy.device), text, history, anchor, self.config.history, dtype
        ).float()

    def _logits(self, noisy, timesteps, text, history, anchor, dtype):
        with self.heads.capturing():
            output = self._score(self.score, noisy, timesteps, text, history, anchor, dtype)
        return self.heads.logits(output)

    def _real_velocities(self, noisy, timesteps, text, history, anchor, dtype):
        """The real score's conditional and unconditional velocities: the score network with the
        critic's adapters off (or the frozen copy of a full-network critic). Unconditional = an
        empty caption, as caption dropout trains it."""
        network = self.real if self.real is not None else self.score
        with adapters(network, False) if self.real is None else nullcontext():
            cond = self._score(network, noisy, timesteps, text, history, anchor, dtype)
            uncond = self._score(network, noisy, timesteps, torch.zeros_like(text), history, anchor, dtype)
        return cond, uncond

    def _crop(self, generator, *latents):
        """The same random window of every latent batch given (target-sized ones and the history)."""
        if self.settings.gan_crop >= 1.0:
            return latents
        rows, cols = crop_window(*latents[0].shape[-2:], generator, self.settings.gan_crop)
        return tuple(tensor[..., rows, cols] for tensor in latents)

    # ------------------------------------------------------------------ losses

    def ode_loss(self, student, pairs, generator, dtype) -> torch.Tensor:
        """Staged ODE Init: at every pyramid stage, a random step of the student's schedule on the
        teacher's line from the stage start to its end; the student's x0 must land on the end."""
        losses = []
        shape = pairs.ends[-1].shape
        schedules = pyramid_schedules(self.sampler, self.constants, shape, self.patch_size, first_chunk=False)
        for stage, schedule in enumerate(schedules):
            start, end = pairs.starts[stage], pairs.ends[stage]
            index = int(torch.randint(len(schedule), (1,), generator=generator))
            # the DMD sampler's latent at this step, had every earlier step landed on the teacher's end
            sigma = step_sigma(schedule, index).float().to(start.device)
            noisy = (1 - sigma) * end + sigma * start if index > 0 else start
            timestep = schedule.timesteps[index].expand(shape[0]).to(torch.int64).to(start.device)
            velocity = predict_velocity(
                student, noisy, timestep, pairs.text, pairs.history, pairs.anchor, self.config.history, dtype
            )
            losses.append(ode_regression_loss(noisy, velocity, sigma.expand(shape[0]), end))
        return self.settings.ode_weight * torch.stack(losses).mean()

    def generator_loss(self, student, batch, generator, generator_step: int, step: int, dtype) -> dict:
        """L_G = L_DMD + w_G·L_GAN (eq. 15) on one rolled-out chunk. Returns the loss and its parts."""
        s = self.settings
        target, history, anchor, text = batch
        self._use("student")
        rollout = self._rollout(student, target, history, anchor, text, generator, dtype)
        sample = rollout.sample.float()
        timesteps = renoise_timesteps(
            target.shape[0],
            generator,
            self._mu(target),
            step=generator_step,
            anneal_steps=s.renoise_anneal_steps,
            alpha=s.renoise_alpha,
            beta=s.renoise_beta,
        )
        noisy, _, sigma = self._renoise(sample, timesteps, generator)
        history, anchor = self._score_context(history, anchor)
        self._use("score")
        with torch.no_grad():
            cond, uncond = self._real_velocities(noisy.detach(), timesteps, text, history, anchor, dtype)
            fake = self._score(self.score, noisy.detach(), timesteps, text, history, anchor, dtype)
            real_x0 = x0_from_velocity(noisy.detach(), real_score(cond, uncond, s.real_guidance_scale), sigma)
            fake_x0 = x0_from_velocity(noisy.detach(), fake, sigma)
        loss = dmd_loss(sample, real_x0, fake_x0).float()
        parts = {"dmd": float(loss.detach())}
        if self.gan_active(step):
            crop_noisy, crop_history, crop_anchor = self._crop(generator, noisy, history, anchor)

            def gan(x):
                return generator_gan_loss(self._logits(x, timesteps, text, crop_history, crop_anchor, dtype))

            # Without Cache Grad the critic's weights also collect gradients here (its activations stay
            # alive until the student's backward — the memory Cache Grad saves); the critic's next step
            # clears them. Freezing them instead would break gradient checkpointing's recomputation.
            gan_loss = cached_gradient_loss(crop_noisy, gan) if s.cache_gan_grad else gan(crop_noisy)
            loss = loss + s.gan_generator_weight * gan_loss
            parts["gan_g"] = float(gan_loss.detach())
        # Without Cache Grad the student's backward runs through the score network too (its checkpointed
        # blocks are recomputed there), so it cannot be parked: parking saves memory only with Cache Grad.
        holds_score_graph = self.gan_active(step) and not s.cache_gan_grad
        self._use("both" if holds_score_graph else "student")
        return {"loss": loss, **parts}

    def critic_step(self, student, batch, generator, step: int, dtype, autocast) -> dict[str, float]:
        """One update of the fake score: its flow matching on the student's samples (L_Flow), then
        — in a second forward/backward, activations freed in between — the discriminator with
        approximate R1 on one batch of [fake, real, perturbed real] (w_D·L_D, eq. 16)."""
        s = self.settings
        target, history, anchor, text = batch
        self.critic_optimizer.zero_grad(set_to_none=True)
        with autocast, torch.no_grad():
            self._use("student")
            sample = self._rollout(student, target, history, anchor, text, generator, dtype).sample.float()
        self._use("score")
        history, anchor = self._score_context(history, anchor)
        timesteps = renoise_timesteps(target.shape[0], generator, self._mu(target))
        noisy, noise, _ = self._renoise(sample, timesteps, generator)
        with autocast:
            velocity = self._score(self.score, noisy, timesteps, text, history, anchor, dtype)
            flow = critic_flow_loss(velocity, noise, sample)
        flow.backward()
        record = {"critic_flow": float(flow.detach())}
        if self.gan_active(step):
            real_noisy, _, _ = self._renoise(target, timesteps, generator)
            perturbed = real_noisy + s.r1_sigma * device_randn(real_noisy.shape, target.device, generator)
            fake_c, real_c, perturbed_c, history_c, anchor_c = self._crop(
                generator, noisy, real_noisy, perturbed, history, anchor
            )
            with autocast:
                logits = self._logits(
                    torch.cat([fake_c, real_c, perturbed_c]),
                    timesteps.repeat(3),
                    text.repeat(3, 1, 1),
                    history_c.repeat(3, 1, 1, 1, 1),
                    anchor_c.repeat(3, 1, 1, 1, 1),
                    dtype,
                )
            fake_l, real_l, perturbed_l = logits.float().chunk(3)
            d_loss = discriminator_loss(real_l, fake_l)
            r1 = approximate_r1(real_l, perturbed_l)
            (s.gan_discriminator_weight * (d_loss + s.r1_weight * r1)).backward()
            record.update(gan_d=float(d_loss.detach()), r1=float(r1.detach()))
        torch.nn.utils.clip_grad_norm_(list(self.critic_params.values()), self.config.max_grad_norm)
        self.critic_optimizer.step()
        return record

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> tuple[dict[str, torch.Tensor], dict | None]:
        weights = {n: p.detach().float().cpu().contiguous() for n, p in self.critic_params.items()}
        return weights, self.critic_optimizer.state_dict() if self.critic_optimizer is not None else None

    def load_state(self, weights: dict[str, torch.Tensor], optimizer: dict | None) -> None:
        if set(weights) != set(self.critic_params):
            raise ValueError("the checkpoint's critic does not match this run's (critic LoRA or GAN heads differ)")
        with torch.no_grad():
            for name, param in self.critic_params.items():
                param.copy_(weights[name].to(param.dtype))
        if optimizer is not None and self.critic_optimizer is not None:
            self.critic_optimizer.load_state_dict(optimizer)
