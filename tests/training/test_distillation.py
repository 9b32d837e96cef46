"""Stage 3 (Adversarial Hierarchical Distillation): every loss against values computed by hand on tiny
tensors, approximate R1 against exact R1, Cache Grad against plain autograd, adapter toggling, the
gradient routing of Staged Backward Simulation, and both phases trained, checkpointed and resumed."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from helios import HeliosTransformer
from helios.config import DistillSettings, HistoryDropSettings, SamplerSettings, ShiftSettings, TrainConfig
from helios.generation.loading import DEFAULT_MODEL_DIR
from helios.sampling.chunk import ChunkSampler, pyramid_schedules
from helios.sampling.noise import NoiseDraws
from helios.sampling.schedules import PyramidConstants
from helios.training.backward_simulation import staged_backward_simulation
from helios.training.distill_losses import (
    approximate_r1,
    cached_gradient_loss,
    critic_flow_loss,
    discriminator_loss,
    dmd_loss,
    generator_gan_loss,
    ode_regression_loss,
    real_score,
    renoise_shape,
    renoise_timesteps,
)
from helios.training.distillation import adapters, student_sampler
from helios.training.gan import DiscriminatorHeads, crop_window, gan_block_indices
from helios.training.ode_pairs import OdePairShards, record_ode_pairs
from helios.training.trainer import Trainer, add_lora

from .conftest import TINY_WORLD_TRANSFORMER, train_config


def test_dmd_loss_value_and_gradient_by_hand():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    real = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    fake = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    loss = dmd_loss(x, real, fake)
    # per sample: mean|x − real| = 1.5 and 1.5; g = (fake − real)/1.5; loss = 0.5·mean(g²)
    g = torch.tensor([[2.0, 1.0], [0.0, 2.0]]) / 1.5
    assert loss.dtype == torch.float64
    assert math.isclose(loss.item(), 0.5 * (g**2).mean().item(), rel_tol=1e-12)
    loss.backward()
    assert torch.allclose(x.grad, g / 4)  # d/dx 0.5·mean((x − sg(x − g))²) = g / numel


def test_real_score_convention_and_flow_and_ode_losses_by_hand():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert real_score(cond, uncond, 3.0).item() == 5.0  # cond + 3·(cond − uncond) = standard weight 4
    assert real_score(cond, uncond, 3.0).item() == (uncond + 4 * (cond - uncond)).item()
    velocity, noise, clean = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    assert critic_flow_loss(velocity, noise, clean).item() == pytest.approx(((1 - 2) ** 2 + (1 + 1) ** 2) / 2)
    noisy, sigma, end = torch.ones(2, 1, 1, 1, 1), torch.tensor([0.5, 0.25]), torch.zeros(2, 1, 1, 1, 1)
    v = torch.ones(2, 1, 1, 1, 1) * 2
    # x0 = 1 − σ·2 → 0 and 0.5; 0.5·mean(x0²) = 0.5·(0 + 0.25)/2
    assert ode_regression_loss(noisy, v, sigma, end).item() == pytest.approx(0.0625)


def test_gan_losses_by_hand():
    zero = torch.zeros(3)
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_gan_loss(zero).item() == pytest.approx(math.log(2))
    assert discriminator_loss(torch.full((3,), 20.0), torch.full((3,), -20.0)).item() < 1e-8
    assert generator_gan_loss(torch.full((3,), 20.0)).item() < 1e-8
    assert approximate_r1(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0])).item() == pytest.approx(0.625)


def test_dynamic_renoise_anneals_from_beta_to_uniform():
    assert renoise_shape(0, 500) == (4.0, 1.5)
    assert renoise_shape(250, 500) == pytest.approx((2.5, 1.25))
    assert renoise_shape(500, 500) == renoise_shape(9000, 500) == (1.0, 1.0)
    generator = torch.Generator().manual_seed(0)
    early = renoise_timesteps(20000, generator, mu=1.0, step=0)  # mu = 1: the linear shift is the identity
    late = renoise_timesteps(20000, generator, mu=1.0, step=500)
    uniform = renoise_timesteps(20000, generator, mu=1.0)
    assert early.mean().item() / 1000 == pytest.approx(4 / 5.5, abs=0.01)  # Beta(4, 1.5) mean
    assert late.mean().item() / 1000 == pytest.approx(0.5, abs=0.01)
    assert uniform.mean().item() / 1000 == pytest.approx(0.5, abs=0.01)
    for t in (early, late, uniform):
        assert t.min() >= 20 and t.max() <= 980 and torch.equal(t, t.round())
    shifted = renoise_timesteps(20000, generator, mu=3.0)  # a larger shift moves mass to high noise
    assert shifted.mean() > uniform.mean() + 100


def test_approximate_r1_matches_exact_r1_on_a_tiny_discriminator():
    torch.manual_seed(0)
    discriminator = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(4, 6, requires_grad=True)
    (gradient,) = torch.autograd.grad(discriminator(x).sum(), x)
    exact = gradient.pow(2).sum(dim=1).mean().item()  # R1 = E‖∇ₓD‖²
    sigma, draws = 1e-3, 4000
    with torch.no_grad():
        logits = discriminator(x).squeeze(-1)
        approx = torch.stack(
            [approximate_r1(logits, discriminator(x + sigma * torch.randn_like(x)).squeeze(-1)) for _ in range(draws)]
        ).mean()
    assert approx.item() / sigma**2 == pytest.approx(exact, rel=0.05)


def test_cached_gradient_equals_plain_autograd():
    torch.manual_seed(1)
    generator_net = nn.Linear(5, 8)
    discriminator = nn.Sequential(nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 1))
    z = torch.randn(3, 5)

    def gan(x):
        return generator_gan_loss(discriminator(x).squeeze(-1))

    plain = gan(generator_net(z))
    plain.backward()
    expected = [p.grad.clone() for p in generator_net.parameters()]
    generator_net.zero_grad()
    discriminator.zero_grad()
    cached = cached_gradient_loss(generator_net(z), gan)
    assert cached.item() == pytest.approx(plain.item())
    assert type(cached.grad_fn).__name__ == "CachedGradientBackward"  # one node: no discriminator graph kept
    (2.0 * cached).backward()  # grad_output scales the cached gradient
    for p, e in zip(generator_net.parameters(), expected):
        assert torch.allclose(p.grad, 2 * e, atol=1e-6)
    assert all(p.grad is None for p in discriminator.parameters())  # D gets nothing from the student's step


def _tiny_model(seed: int = 0) -> HeliosTransformer:
    torch.manual_seed(seed)
    return HeliosTransformer.from_config(TINY_WORLD_TRANSFORMER)


def test_adapter_toggling_gives_the_teacher_and_the_critic_from_one_network():
    base = _tiny_model()
    reference = _tiny_model()
    score = add_lora(base, 4, 4)
    with torch.no_grad():
        for name, param in score.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained critic: its LoRA changes the output
    x, t, text = torch.randn(1, 16, 1, 4, 4), torch.tensor([500.0]), torch.randn(1, 4, 64)
    teacher_out = reference(x, t, text)
    with torch.no_grad(), adapters(score, False):
        real = score(x, t, text)
    with torch.no_grad():
        fake = score(x, t, text)
    assert torch.allclose(real, teacher_out, atol=1e-6)
    assert not torch.allclose(fake, teacher_out, atol=1e-3)
    assert all(p.requires_grad for n, p in score.named_parameters() if "lora_" in n)  # restored


def _world_sampler(steps=(1, 1, 1)) -> SamplerSettings:
    return SamplerSettings(
        name="t", sampler="dmd", pyramid_steps=steps, guidance_scale=1.0, shift=ShiftSettings("linear")
    )


def test_backward_simulation_at_the_last_steps_is_the_inference_sampler():
    model = _tiny_model().eval()
    text = torch.randn(1, 4, 64)
    settings = _world_sampler((2, 2, 2))
    constants = PyramidConstants()
    noise = torch.randn(1, 16, 1, 8, 8)
    schedules = pyramid_schedules(settings, constants, noise.shape, (1, 2, 2), first_chunk=False)
    with torch.no_grad():
        rollout = staged_backward_simulation(
            lambda x, t: model(x, t, text),
            noise,
            schedules,
            constants,
            tuple(len(s) - 1 for s in schedules),
            torch.Generator().manual_seed(5),
        )
        sampled = ChunkSampler(settings, (1, 2, 2), torch.float32).sample(
            lambda x, t, e: model(x, t, e),
            noise,
            text,
            None,
            NoiseDraws(torch.Generator().manual_seed(5), "cpu"),
            False,
        )
    assert torch.equal(rollout.sample, sampled)


def test_backward_simulation_routes_gradients_only_through_each_stage_exit():
    scales = nn.ParameterList([nn.Parameter(torch.tensor(0.5)) for _ in range(3)])
    calls = []

    def denoise(x, t):
        stage = {16: 0, 64: 1, 256: 2}[x[0, 0].numel()]  # the stage from the latent's size
        calls.append((stage, torch.is_grad_enabled()))
        return scales[stage] * x

    settings, constants = _world_sampler((3, 3, 3)), PyramidConstants()
    noise = torch.randn(1, 1, 1, 16, 16)
    schedules = pyramid_schedules(settings, constants, noise.shape, (1, 2, 2), first_chunk=False)
    exits = (2, 0, 1)
    rollout = staged_backward_simulation(denoise, noise, schedules, constants, exits, torch.Generator().manual_seed(0))
    assert [stage for stage, _ in calls] == [0, 0, 0, 1, 2, 2]  # exit + 1 calls per stage
    assert [grad for _, grad in calls] == [False, False, True, True, False, True]
    assert rollout.grad_calls == 3
    rollout.sample.sum().backward()
    # chained across stages: the final sample depends on every stage's exit call
    assert all(p.grad is not None and p.grad.abs() > 0 for p in scales)


def test_gan_heads_at_the_papers_depths_and_one_logit_per_head():
    assert gan_block_indices(40) == (5, 15, 25, 35)
    assert gan_block_indices(8) == (1, 3, 5, 7)
    assert gan_block_indices(2) == (0, 1)
    model = _tiny_model()
    heads = DiscriminatorHeads(model, dim=8)
    with heads.capturing():
        out = model(torch.randn(3, 16, 2, 4, 6), torch.tensor([100.0] * 3), torch.randn(3, 4, 64))
    logits = heads.logits(out)
    assert logits.shape == (3, len(heads.blocks) + 1)
    with pytest.raises(RuntimeError, match="run the network"):
        heads.logits(out)
    model(torch.randn(3, 16, 2, 4, 6), torch.tensor([100.0] * 3), torch.randn(3, 4, 64))  # not capturing
    with pytest.raises(RuntimeError, match="run the network"):
        heads.logits(out)
    rows, cols = crop_window(8, 12, torch.Generator().manual_seed(0))
    assert torch.randn(2, 16, 9, 8, 12)[..., rows, cols].shape[-2:] == (4, 6)


def _distill_config(data, out, **changes) -> TrainConfig:
    distill = changes.pop("distill")
    return train_config(data, out, stage=3, distill=distill, **changes)


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    _tiny_model(3).save_pretrained(folder)
    return folder


def test_staged_ode_init_records_teacher_pairs_and_trains(world_shards, tmp_path, teacher_folder):
    shards, _, _ = world_shards
    teacher = HeliosTransformer.from_pretrained(teacher_folder, dtype=torch.float32)
    mid = SamplerSettings(name="m", pyramid_steps=(2, 2, 2), guidance_scale=2.0, shift=ShiftSettings("linear"))
    pairs = record_ode_pairs(teacher, shards, tmp_path / "ode", mid, count=3, seed=0, batch_size=2)
    data = OdePairShards(pairs)
    assert len(data) == 3  # a full batch of two and a last batch of one
    item = data.load(0)
    assert item["stage0_end"].shape == (16, 9, 2, 2) and item["stage2_end"].shape == (16, 9, 8, 8)
    assert not torch.equal(item["stage2_end"], data.load(1)["stage2_end"])  # each chunk its own trajectory
    assert not torch.equal(item["stage2_start"], item["stage2_end"])
    with pytest.raises(ValueError, match="latent shards, not ODE pairs"):
        OdePairShards(shards)
    config = _distill_config(pairs, tmp_path / "run", distill=DistillSettings(phase="ode"), max_steps=4)
    records = Trainer(config).train()
    assert len(records) == 4 and all(math.isfinite(r["loss"]) for r in records)
    with pytest.raises(ValueError, match="holds ODE pairs"):
        Trainer(train_config(pairs, tmp_path / "wrong"))
    with pytest.raises(ValueError, match="curriculum_steps must be >= 0 and is a stage-1/2 option"):
        Trainer(replace(config, curriculum_steps=4))


def _dmd_settings(teacher_folder, **changes) -> DistillSettings:
    values = dict(
        phase="dmd",
        teacher=str(teacher_folder),
        critic_lora_rank=4,
        critic_lora_alpha=4,
        critic_learning_rate=1e-3,
        generator_update_every=2,
        gan_start_step=1,
        gan_head_dim=8,
    )
    values.update(changes)
    return DistillSettings(**values)


def test_dmd_with_gan_two_time_scales_and_exact_resume(world_shards, tmp_path, teacher_folder):
    shards, _, _ = world_shards

    def config(out):
        return _distill_config(
            shards,
            out,
            distill=_dmd_settings(teacher_folder),
            transformer=str(teacher_folder),
            ema_decay=0.9,
            max_steps=4,
            checkpoint_every=2,
        )

    straight = Trainer(config(tmp_path / "a")).train()
    assert [("dmd" in r) for r in straight] == [True, False, True, False]  # the student learns every 2nd step
    assert "gan_d" not in straight[0] and all("gan_d" in r and "r1" in r for r in straight[1:])
    assert "gan_g" in straight[2]
    first = Trainer(config(tmp_path / "b")).train(stop_after=2)
    resumed = Trainer(config(tmp_path / "b"))
    assert resumed.step == 2
    rest = resumed.train()
    assert [r["loss"] for r in first + rest] == [r["loss"] for r in straight]
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_0000004" / "critic.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_0000004" / "critic.safetensors"))
    assert set(a) == set(b) and any(k.startswith("gan.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    student = HeliosTransformer.from_pretrained(resumed.export(tmp_path / "student"), dtype=torch.float32)
    assert student.config.num_layers == TINY_WORLD_TRANSFORMER["num_layers"]


def test_a_bidirectional_teacher_scores_without_history(world_shards, tmp_path, teacher_folder):
    """The Table-5 ablation: the real and fake scores see zeros for history and anchor, the student
    the real history."""
    shards, _, _ = world_shards
    config = _distill_config(
        shards,
        tmp_path / "run",
        distill=_dmd_settings(teacher_folder, score_history=False, gan_start_step=10),
        transformer=str(teacher_folder),
        max_steps=2,
        history_drop=HistoryDropSettings(t2v=0.0, i2v=0.0, v2v=0.0),  # the student always sees history
    )
    trainer = Trainer(config)
    seen = {"score": [], "student": []}
    for name, model in (("score", trainer.distill.score), ("student", trainer.model)):
        forward = model.forward

        def spy(*args, history=None, _forward=forward, _name=name, **kwargs):
            seen[_name].append(history.short.abs().sum().item())
            return _forward(*args, history=history, **kwargs)

        model.forward = spy
    records = trainer.train()
    assert all(math.isfinite(r["loss"]) for r in records)
    assert seen["score"] and all(total == 0 for total in seen["score"])
    assert seen["student"] and all(total > 0 for total in seen["student"])


def test_stage3_configs_are_checked():
    with pytest.raises(ValueError, match="needs a 'distill' section"):
        TrainConfig(stage=3)
    with pytest.raises(ValueError, match="only stage 3"):
        TrainConfig(stage=1, distill=DistillSettings(phase="ode"))
    with pytest.raises(ValueError, match="teacher is needed"):
        DistillSettings(phase="dmd")
    with pytest.raises(ValueError, match="unknown distill keys: gan_power"):
        TrainConfig.from_dict({"stage": 3, "distill": {"phase": "ode", "gan_power": 1}})
    config = TrainConfig.from_dict({"stage": 3, "distill": {"phase": "ode", "student_steps": [2, 2, 2]}})
    assert config.distill.student_steps == (2, 2, 2)
    assert student_sampler(config.distill).pyramid_steps == (2, 2, 2)


def test_helios_offload_records_ode_pairs_with_the_default_models_teacher(world_shards, tmp_path, capsys):
    from helios.cli import main

    shards, _, _ = world_shards
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "default")
    teacher = tmp_path / "default" / "mid"  # the Mid teacher (its codec and text encoder are the parent's)
    sampler = json.loads((teacher / "sampler.json").read_text())
    (teacher / "sampler.json").write_text(json.dumps({**sampler, "pyramid_steps": [1, 1, 1]}))  # a quick teacher
    capsys.readouterr()
    code = main(
        [
            "offload",
            "--record-ode",
            str(shards),
            "--model",
            str(teacher),
            "--out",
            str(tmp_path / "ode"),
            "--pairs",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = OdePairShards(tmp_path / "ode")
    assert len(data) == 2 and data.stages == 3
    batch = data.sample(2, torch.Generator().manual_seed(0))
    assert [t.shape[-2:] for t in batch.ends] == [(2, 2), (4, 4), (8, 8)]
    assert main(["offload", "--out", str(tmp_path / "x")]) != 0
    assert "needs --manifest" in capsys.readouterr().err
    # a teacher without the multi-step pyramid sampler is refused by name, not recorded: the embedded
    # default (Distilled, DMD sampler) and a Base (one full-resolution stage); Base distils through DMD only
    (teacher / "sampler.json").write_text(json.dumps({**sampler, "pyramid_steps": None, "steps": 4}))
    for wrong in (tmp_path / "default", teacher):
        command = ["offload", "--record-ode", str(shards), "--model", str(wrong), "--out", str(tmp_path / "bad")]
        assert main([*command, "--pairs", "1"]) == 2
        assert "ODE pairs come from a pyramid teacher" in capsys.readouterr().err


def test_cache_grad_gives_the_student_the_same_update_as_plain_autograd(world_shards, tmp_path, teacher_folder):
    shards, _, _ = world_shards
    runs = {}
    for cached in (True, False):
        distill = _dmd_settings(teacher_folder, generator_update_every=1, gan_start_step=0, cache_gan_grad=cached)
        config = _distill_config(
            shards,
            tmp_path / str(cached),
            distill=distill,
            transformer=str(teacher_folder),
            max_steps=2,
            gradient_checkpointing=True,
        )
        trainer = Trainer(config)
        trainer.distill.score.enable_gradient_checkpointing(True)
        runs[cached] = (trainer.train(), trainer)
    (cached_records, cached_trainer), (plain_records, plain_trainer) = runs[True], runs[False]
    for a, b in zip(cached_records, plain_records):
        assert a["gan_g"] == pytest.approx(b["gan_g"], rel=1e-5) and a["dmd"] == pytest.approx(b["dmd"], rel=1e-5)
    for (name, a), b in zip(cached_trainer.model.named_parameters(), plain_trainer.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
