"""Training on a tiny model and a tiny synthetic dataset: losses fall, corruption statistics match
their settings, offload reads back, resume is exact, LoRA merges, two processes train together."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helios import HeliosTransformer
from helios.config import CorruptionSettings, HistoryDropSettings, TrainConfig
from helios.encoders.world_text import WorldTextEncoder
from helios.media import read_video, to_model_pixels
from helios.model.checkpoint import StoredWeights
from helios.model.speed import blocks_compiled
from helios.sampling.schedules import PyramidConstants
from helios.synthetic.world import vocabulary
from helios.training.corruption import choose_modes, corrupt_history, drop_history
from helios.training.data import LatentShards
from helios.training.objectives import motion_weights, motionless, pyramid_flow_matching_loss
from helios.training.offload import write_index
from helios.training.trainer import Trainer

from .conftest import TINY_WORLD_TRANSFORMER, train_config


def test_frame_aware_corrupt_mode_frequencies_match_settings():
    settings = CorruptionSettings(noise_prob=0.5, exposure_prob=0.2, downsample_prob=0.1)
    counts = Counter(choose_modes(20000, settings, torch.Generator().manual_seed(0)))
    for mode, expected in (("noise", 0.5), ("exposure", 0.2), ("downsample", 0.1), ("clean", 0.2)):
        assert abs(counts[mode] / 20000 - expected) < 0.015, (mode, counts)


def test_corruption_is_per_frame_and_clean_probability_holds():
    settings = CorruptionSettings(clean_prob=0.3, noise_prob=1.0, exposure_prob=0.0, downsample_prob=0.0)
    history = torch.randn(400, 4, 5, 4, 4)
    anchor = torch.randn(400, 4, 1, 4, 4)
    corrupted, _ = corrupt_history(history, anchor, settings, torch.Generator().manual_seed(1))
    untouched = [(corrupted[b] == history[b]).all().item() for b in range(400)]
    assert abs(sum(untouched) / 400 - 0.3) < 0.06
    changed = next(b for b in range(400) if not untouched[b])
    per_frame_change = (corrupted[changed] - history[changed]).abs().mean(dim=(0, 2, 3))
    assert len(set(per_frame_change.round(decimals=4).tolist())) == 5  # each frame got its own σ


def test_history_drop_frequencies_match_settings():
    settings = HistoryDropSettings(t2v=0.4, i2v=0.1, v2v=0.4)
    history, anchor = torch.ones(4000, 1, 19, 1, 1), torch.ones(4000, 1, 1, 1, 1)
    dropped, new_anchor, kinds = drop_history(history, anchor, settings, 9, torch.Generator().manual_seed(2))
    counts = Counter(kinds)
    expected = {"t2v": 0.4, "i2v": 0.6 * 0.1, "v2v": 0.6 * 0.9 * 0.4, "full": 0.6 * 0.9 * 0.6}
    for kind, share in expected.items():
        assert abs(counts[kind] / 4000 - share) < 0.025, (kind, counts)
    t2v = [i for i, k in enumerate(kinds) if k == "t2v"][0]
    i2v = [i for i, k in enumerate(kinds) if k == "i2v"][0]
    assert dropped[t2v].abs().sum() == 0 and new_anchor[t2v].abs().sum() == 0
    assert dropped[i2v, :, :-1].abs().sum() == 0 and dropped[i2v, :, -1].abs().sum() > 0 and new_anchor[i2v].sum() == 1
    v2v_zeroed = {int((dropped[i, 0, :, 0, 0] == 0).sum()) for i, k in enumerate(kinds) if k == "v2v"}
    assert v2v_zeroed == {1, 10, 19}


def test_offload_reads_back_what_was_written(world_shards):
    shards, codec, manifest = world_shards
    data = LatentShards(shards)
    assert len(data) == 4
    entry = json.loads(manifest.read_text())[1]
    latents, text, _ = data.load(1)
    frames, _ = read_video(manifest.parent / entry["path"])
    pixels = to_model_pixels(frames[:66], 64, 64)
    expected = torch.stack([codec.encode(pixels[:, :, :33])[0], codec.encode(pixels[:, :, 33:66])[0]])
    assert latents.shape == (2, 16, 9, 8, 8)
    assert torch.allclose(latents, expected.half().float())
    # the manifest's timeline gives each chunk the caption in force at its first frame
    in_force = [max((c for c in entry["timeline"] if c[0] <= k * 33), key=lambda c: c[0])[1] for k in range(2)]
    assert torch.equal(text, WorldTextEncoder(vocabulary()).encode(in_force))


def test_sample_windows_follow_the_sequence(world_shards):
    shards, _, _ = world_shards
    data = LatentShards(shards)
    generator = torch.Generator().manual_seed(3)
    for _ in range(10):
        state = generator.get_state()
        batch = data.sample(1, generator)
        probe = torch.Generator()
        probe.set_state(state)
        video = int(torch.randint(len(data), (1,), generator=probe))
        k = int(torch.randint(2, (1,), generator=probe))
        latents, _, _ = data.load(video)
        assert torch.equal(batch.target[0], latents[k])
        if k == 0:
            assert batch.history.abs().sum() == 0 and batch.anchor.abs().sum() == 0
        else:
            assert torch.equal(batch.history[0, :, -9:], latents[0]) and batch.history[0, :, :10].abs().sum() == 0
            assert torch.equal(batch.anchor[0, :, 0], latents[0, :, 0])


def test_a_curriculum_draws_from_a_growing_prefix_of_the_shards(world_shards, tmp_path):
    """TrainConfig.curriculum_steps (the world recipe's --start-curriculum): the shards are ordered easy to
    hard, and step n draws only from the first ⌈files · (n + 1) / curriculum_steps⌉ of them."""
    shards, _, _ = world_shards
    with pytest.raises(ValueError, match="not \\(offload it with"):  # these shards are in no particular order
        Trainer(train_config(shards, tmp_path, curriculum_steps=8))
    ordered = shutil.copytree(shards, tmp_path / "ordered")
    index = json.loads((ordered / "index.json").read_text())
    write_index(ordered, index["files"], index["height"], index["width"], ordered=True)
    trainer = Trainer(train_config(ordered, tmp_path / "run", batch_size=1, curriculum_steps=8, max_steps=1))
    assert [trainer._reachable(step) for step in range(9)] == [1, 1, 2, 2, 3, 3, 4, 4, 4]
    first_file = trainer.data.load(0)[0]
    for step in (0, 1):
        target = trainer._prepare(step)[1][0][0]
        assert any(torch.equal(target, chunk) for chunk in first_file)
    with pytest.raises(ValueError, match="curriculum_steps"):
        train_config(shards, tmp_path, curriculum_steps=-1)
    with pytest.raises(ValueError, match="at least one file"):
        trainer.data.sample(1, torch.Generator(), reachable=0)


def _mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize("stage, ratios", [(1, (1, 1, 1)), (2, (1, 1, 1)), (2, (1, 1))])
def test_loss_falls(world_shards, tmp_path, stage, ratios):
    """Stage 1, and stage 2 with the released three-stage pyramid and with a two-stage one (the coarse
    stage at half resolution, an experiment of the world model's recipe: --pyramid-ratios 1 1)."""
    shards, _, _ = world_shards
    config = train_config(
        shards,
        tmp_path,
        stage=stage,
        pyramid_sample_ratios=ratios,
        max_steps=40,
        checkpoint_every=100,
        learning_rate=2e-3,
        corruption=CorruptionSettings(clean_prob=1.0),
        history_drop=HistoryDropSettings(0, 0, 0),
    )
    records = Trainer(config).train()
    losses = [r["loss"] for r in records]
    assert _mean(losses[-8:]) < 0.8 * _mean(losses[:8]), losses


def test_motion_weights_single_out_moving_elements():
    clean = torch.zeros(1, 2, 3, 4, 4)
    clean[0, :, 1, 1, 1] = 1.0  # a dot in the middle frame only: it changes at frames 1 and 2
    weights = motion_weights(clean, 2.0)
    # mean change 3/48 (the first frame repeats the second's change): the dot weighs 1 + 2·16, the rest 1
    assert weights.shape == (1, 1, 3, 4, 4)
    assert torch.equal(weights[0, 0, :, 1, 1], torch.full((3,), 33.0))
    assert int((weights == 1).sum()) == 45
    assert torch.equal(motion_weights(torch.ones(1, 2, 3, 4, 4), 5.0), torch.ones(1, 1, 3, 4, 4))


def test_motion_weighted_pyramid_loss_equals_the_plain_one_on_a_static_video():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY_WORLD_TRANSFORMER).eval()
    constants, settings = PyramidConstants(stages=3), TrainConfig().history
    text, history, anchor = torch.randn(1, 8, 64), torch.randn(1, 16, 19, 8, 8), torch.randn(1, 16, 1, 8, 8)

    def loss(target, weight):
        generator = torch.Generator().manual_seed(3)  # the same noise and timesteps every call
        with torch.no_grad():
            return pyramid_flow_matching_loss(
                model, target, history, anchor, text, settings, generator, constants, motion_weight=weight
            )

    static = torch.randn(1, 16, 1, 8, 8).expand(1, 16, 9, 8, 8).contiguous()
    assert torch.allclose(loss(static, 4.0), loss(static, 0.0), rtol=1e-6)
    moving = torch.randn(1, 16, 9, 8, 8)
    assert not torch.allclose(loss(moving, 4.0), loss(moving, 0.0), rtol=1e-3)
    with pytest.raises(ValueError, match="motion_weight"):
        TrainConfig(stage=2, motion_weight=-1.0)
    with pytest.raises(ValueError, match="stage-2 option"):
        TrainConfig(stage=1, motion_weight=1.0)


def test_coarse_motion_dropout_starts_the_finer_stages_from_a_still_coarse_level():
    """The first stage's inputs are untouched; the later stages' differ exactly where the video moves; a
    still video is its own motionless version, so there nothing changes."""
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY_WORLD_TRANSFORMER).eval()
    constants, settings = PyramidConstants(stages=3), TrainConfig().history
    text, history, anchor = torch.randn(1, 8, 64), torch.randn(1, 16, 19, 8, 8), torch.randn(1, 16, 1, 8, 8)

    def inputs(target, dropout):
        seen = []

        def recording(noisy, *args, **kwargs):
            seen.append(noisy)
            return model(noisy, *args, **kwargs)

        generator = torch.Generator().manual_seed(3)  # the same noise and timesteps every call
        with torch.no_grad():
            pyramid_flow_matching_loss(
                recording, target, history, anchor, text, settings, generator, constants, coarse_motion_dropout=dropout
            )
        return seen  # one noisy chunk per stage

    moving = torch.randn(1, 16, 9, 8, 8)
    plain, dropped = inputs(moving, 0.0), inputs(moving, 1.0)
    assert torch.equal(plain[0], dropped[0])
    assert not torch.allclose(plain[1], dropped[1]) and not torch.allclose(plain[2], dropped[2])
    static = torch.randn(1, 16, 1, 8, 8).expand(1, 16, 9, 8, 8).contiguous()
    assert all(torch.allclose(a, b) for a, b in zip(inputs(static, 0.0), inputs(static, 1.0)))
    still = motionless(moving)
    assert torch.allclose(still[:, :, 0], moving.mean(dim=2)) and torch.equal(still[:, :, 0], still[:, :, 8])
    with pytest.raises(ValueError, match="coarse_motion_dropout"):
        TrainConfig(stage=2, coarse_motion_dropout=1.5)
    with pytest.raises(ValueError, match="stage-2 option"):
        TrainConfig(stage=1, coarse_motion_dropout=0.5)


def test_compiled_blocks_train_like_eager_ones(world_shards, tmp_path):
    """``compile``: the blocks go through torch.compile (the aot_eager backend here: the trace and the
    autograd split are real, code generation is for GPUs) and a stage-2 run's losses and weights match
    the eager run's."""
    shards, _, _ = world_shards
    runs = {}
    for backend in (None, "aot_eager"):
        trainer = Trainer(train_config(shards, tmp_path / str(backend), stage=2, max_steps=2, compile=backend))
        assert blocks_compiled(trainer.model) == (backend is not None)
        runs[backend] = [r["loss"] for r in trainer.train()], trainer.model.state_dict()
    (eager_losses, eager_weights), (compiled_losses, compiled_weights) = runs.values()
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    assert all(torch.allclose(eager_weights[k], compiled_weights[k], atol=1e-5) for k in eager_weights)


def test_offloaded_activations_train_like_resident_ones(world_shards, tmp_path, monkeypatch):
    """offload_activations keeps what the backward needs in host memory; the steps are the same (on the CPU
    the copies are plain; tests/gpu checks the GPU memory it saves). The tiny model's tensors are all
    below the 1 MiB threshold: lowered here, and the offload seen to move tensors and bring them back."""
    from helios.training import activation_offload

    if torch.cuda.is_available():
        pytest.skip("where CUDA runs, CPU tensors are left alone: tests/gpu")
    monkeypatch.setattr(activation_offload, "MIN_OFFLOAD_BYTES", 0)
    made = []

    class Recorded(activation_offload.HostActivations):
        def __init__(self, min_bytes):
            super().__init__(min_bytes)
            made.append(self)

    monkeypatch.setattr(activation_offload, "HostActivations", Recorded)
    shards, _, _ = world_shards
    records = {
        offload: Trainer(
            train_config(
                shards, tmp_path / str(offload), max_steps=2, gradient_checkpointing=True, offload_activations=offload
            )
        ).train()
        for offload in (False, True)
    }
    for a, b in zip(records[False], records[True], strict=True):
        assert (a["loss"], a["grad_norm"]) == (b["loss"], b["grad_norm"])
    assert len(made) == 2 and all(hooks.saved and len(set(hooks.unpacked)) == len(hooks.saved) for hooks in made)


def test_resume_is_exact(world_shards, tmp_path):
    shards, _, _ = world_shards
    straight = Trainer(train_config(shards, tmp_path / "a", ema_decay=0.9)).train()
    first = Trainer(train_config(shards, tmp_path / "b", ema_decay=0.9)).train(stop_after=3)
    resumed_trainer = Trainer(train_config(shards, tmp_path / "b", ema_decay=0.9))
    assert resumed_trainer.step == 3
    resumed = resumed_trainer.train()
    assert [r["loss"] for r in first + resumed] == [r["loss"] for r in straight]
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_0000006" / "ema.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_0000006" / "ema.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "checkpoints" / "latest").read_text() == "step_0000006"
    assert not list((tmp_path / "a" / "checkpoints").glob(".tmp*"))
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_lora_trains_adapters_and_patches_and_merges_on_export(world_shards, tmp_path):
    shards, _, _ = world_shards
    trainer = Trainer(
        train_config(
            shards,
            tmp_path,
            lora_rank=4,
            lora_alpha=4,
            max_steps=4,
            gradient_checkpointing=True,
            mixed_precision="bf16",
        )
    )
    names = set(trainer.trainable)
    assert names and all("lora_" in n or n.startswith(("patch_short", "patch_mid", "patch_long")) for n in names)
    assert any("blocks.1.attn1.to_q.lora_A" in n for n in names)
    trainer.train()
    exported = trainer.export(tmp_path / "export")
    merged = HeliosTransformer.from_pretrained(exported, dtype=torch.float32)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    hidden, text = torch.randn(1, 16, 9, 8, 8), torch.randn(1, 5, 64)
    with torch.no_grad():
        trainer.model.eval()
        expected = trainer.model(hidden, torch.tensor([300.0]), text)
        got = merged(hidden, torch.tensor([300.0]), text)
    assert torch.allclose(got, expected, atol=1e-4)


def test_export_with_ema_differs_from_raw_weights(world_shards, tmp_path):
    shards, _, _ = world_shards
    trainer = Trainer(train_config(shards, tmp_path, ema_decay=0.5, max_steps=4))
    trainer.train()
    ema = HeliosTransformer.from_pretrained(trainer.export(tmp_path / "ema"), dtype=torch.float32)
    raw = HeliosTransformer.from_pretrained(trainer.export(tmp_path / "raw", use_ema=False), dtype=torch.float32)
    assert not torch.equal(ema.proj_out.weight, raw.proj_out.weight)
    assert torch.equal(raw.proj_out.weight, trainer.model.proj_out.weight.detach())


def test_export_before_the_ema_starts_gives_the_trained_weights(world_shards, tmp_path):
    """Until ema_start the EMA is the starting weights: an export then gives the trained ones (a stage-1
    run shorter than its ema_start exported its start and lost every step before this was checked)."""
    shards, _, _ = world_shards
    trainer = Trainer(train_config(shards, tmp_path, ema_decay=0.5, ema_start=10, max_steps=2))
    start = trainer.model.proj_out.weight.detach().clone()
    trainer.train()
    exported = HeliosTransformer.from_pretrained(trainer.export(tmp_path / "export"), dtype=torch.float32)
    assert torch.equal(exported.proj_out.weight, trainer.model.proj_out.weight.detach())
    assert not torch.equal(exported.proj_out.weight, start)


def test_bad_training_configs():
    with pytest.raises(ValueError, match="unknown training config keys: lr"):
        TrainConfig.from_dict({"lr": 1})
    with pytest.raises(ValueError, match="stage must be 1"):
        TrainConfig(stage=4)
    with pytest.raises(ValueError, match="unknown corruption keys: sparkle"):
        TrainConfig.from_dict({"corruption": {"sparkle": 1}})
    with pytest.raises(ValueError, match="context_parallel needs distributed: fsdp"):
        TrainConfig(context_parallel=True, distributed="ddp")


@pytest.fixture(scope="module")
def two_process_runs(world_shards, tmp_path_factory):
    """One torchrun launch (2 gloo processes) for every two-process run of this module: FSDP2 from a
    Helios folder with LoRA, FSDP2 from a Wan2.1 folder, and DDP from a preset. Returns the worker's
    report per run and the runs' output folders."""
    from diffusers import WanTransformer3DModel

    shards, _, _ = world_shards
    root = tmp_path_factory.mktemp("two_process")
    folder = root / "start"
    torch.manual_seed(5)
    HeliosTransformer.from_config(TINY_WORLD_TRANSFORMER).save_pretrained(folder)
    fsdp = train_config(
        shards,
        root / "run",
        transformer=str(folder),
        distributed="fsdp",
        max_steps=3,
        checkpoint_every=3,
        ema_decay=0.9,
        lora_rank=4,
        lora_alpha=4,
        init_memory_patches=False,
    ).to_dict()
    wan = root / "wan"
    WanTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, text_dim=64, ffn_dim=64, num_layers=2
    ).save_pretrained(wan)
    from_wan = {**fsdp, "transformer": f"wan:{wan}", "max_steps": 1, "output_dir": str(root / "run_wan")}
    ddp = train_config(
        shards, root / "run_ddp", distributed="ddp", max_steps=3, checkpoint_every=3, ema_decay=0.9
    ).to_dict()
    context = {**fsdp, "context_parallel": True, "lora_rank": None, "lora_alpha": None, "ema_decay": None}
    context |= {"max_steps": 2, "checkpoint_every": 2, "stage": 2, "output_dir": str(root / "run_cp")}
    paths = []
    for name, config in (("fsdp", fsdp), ("wan", from_wan), ("ddp", ddp), ("cp", context)):
        paths.append(root / f"config_{name}.json")
        paths[-1].write_text(json.dumps(config))
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "tests.training.sharded_start_worker", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=repo,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'src'}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = json.loads(result.stdout.strip().splitlines()[-1])
    runs = {"fsdp": root / "run", "ddp": root / "run_ddp", "cp": root / "run_cp"}
    return dict(zip(("fsdp", "wan", "ddp", "cp"), reports)), runs, context


def _check_run_folder(run: Path) -> None:
    """Three logged steps, and a checkpoint whose EMA is whole (FSDP keeps each rank's EMA shard only;
    the checkpoint gathers whole tensors) and moved away from the weights."""
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    saved = run / "checkpoints" / "step_0000003"
    trainable, ema = load_file(str(saved / "trainable.safetensors")), load_file(str(saved / "ema.safetensors"))
    assert {k: v.shape for k, v in ema.items()} == {k: v.shape for k, v in trainable.items()}
    assert any(not torch.equal(ema[k], trainable[k]) for k in ema)


def test_two_process_ddp_training(two_process_runs):
    reports, runs, _ = two_process_runs
    assert reports["ddp"] == {"exit_code": 0}  # `helios train` under torchrun
    _check_run_folder(runs["ddp"])


def test_fsdp_starts_from_a_folder_shard_by_shard(two_process_runs):
    """FSDP2 from a model folder builds on the meta device and fills each rank's shards one tensor at a
    time: the gathered weights equal the folder's, the LoRA start is peft's (B = 0, A ~ N(0, 1/r) drawn
    alike on every rank), and training runs: the log, and a checkpoint whose EMA is gathered whole. A
    Wan2.1 folder (``wan:``) starts the same way, its memory patches made from its patch embedding."""
    reports, runs, _ = two_process_runs
    report, wan_report = reports["fsdp"], reports["wan"]
    assert wan_report["sharded"] and wan_report["weights_equal"] and len(wan_report["losses"]) == 1, wan_report
    assert report["sharded"] and report["weights_equal"], report
    assert report["lora_b_zero"] and report["lora_a_same_on_ranks"] and report["lora_a_by_name"], report
    assert abs(report["lora_a_std"] - 1 / 4) < 0.05, report
    assert len(report["losses"]) == 3 and all(math.isfinite(x) for x in report["losses"]), report
    _check_run_folder(runs["fsdp"])


def test_context_parallel_training_equals_one_process(two_process_runs, tmp_path):
    """FSDP2 + context parallelism on 2 processes (every rank on the same samples, half the tokens each)
    trains like one process on the whole sequence: the same losses and gradient norms step by step
    (the norm also checks that the ranks' token shares add up to the whole gradient, not its average),
    and the same updated weights. Control: one process with another seed must not match."""
    _, runs, context = two_process_runs

    def single(run: Path, seed: int) -> list[dict]:
        config = {**context, "distributed": "none", "context_parallel": False, "seed": seed, "output_dir": str(run)}
        Trainer(TrainConfig.from_dict(config)).train()
        return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]

    stored = dict(StoredWeights(Path(context["transformer"])).tensors())

    def update(run: Path) -> torch.Tensor:
        saved = load_file(str(run / "checkpoints" / "step_0000002" / "trainable.safetensors"))
        return torch.cat([(saved[k] - stored[k].float()).flatten() for k in sorted(saved)])

    parallel = [json.loads(line) for line in (runs["cp"] / "log.jsonl").read_text().splitlines()]
    alone, other_seed = single(tmp_path / "one", context["seed"]), single(tmp_path / "seed", context["seed"] + 1)
    for key in ("loss", "grad_norm"):
        for p, a in zip(parallel, alone, strict=True):
            assert p[key] == pytest.approx(a[key], rel=1e-4), (key, parallel, alone)
        assert abs(other_seed[0][key] - alone[0][key]) > 1e-3 * alone[0][key], (key, other_seed, alone)
    update_alone = update(tmp_path / "one")
    assert (update(runs["cp"]) - update_alone).norm() < 1e-3 * update_alone.norm()
    assert (update(tmp_path / "seed") - update_alone).norm() > 0.1 * update_alone.norm()


def test_shipped_configs_parse():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs"
    names = sorted(p.name for p in folder.glob("*.json"))
    assert "helios_14b_stage1_init.json" in names and "world_mid.json" in names
    for path in folder.glob("*.json"):
        config = TrainConfig.from_file(path)
        assert config.stage in (1, 2, 3)
    paper = TrainConfig.from_file(folder / "helios_14b_stage2_init.json")
    assert (paper.lora_rank, paper.learning_rate, paper.pyramid_sample_ratios) == (256, 1e-4, (1, 2, 1))
    post = TrainConfig.from_file(folder / "helios_14b_stage3_post.json")  # paper Table 2
    d = post.distill
    assert (post.learning_rate, d.critic_learning_rate, d.generator_update_every, d.gan_start_step) == (
        2e-6,
        4e-7,
        5,
        1000,
    )
    assert (d.real_guidance_scale, d.r1_weight, d.r1_sigma, d.gan_blocks, post.betas) == (
        3.0,
        100.0,
        0.1,
        (5, 15, 25, 35),
        (0.0, 0.999),
    )


def test_checkpoints_keep_the_newest_n_and_the_log_never_repeats_a_step(world_shards, tmp_path):
    shards, _, _ = world_shards
    config = train_config(shards, tmp_path / "run", checkpoint_every=1, keep_checkpoints=2, max_steps=5)
    first = Trainer(config)
    first.train(stop_after=3)
    # A crash after step 4 was logged but before its checkpoint: the resumed run writes step 4 again.
    log = tmp_path / "run" / "log.jsonl"
    log.write_text(log.read_text() + json.dumps({"step": 4, "loss": 9.9}) + "\n" + '{"step": 5, "lo')
    resumed = Trainer(config)
    assert resumed.step == 3
    resumed.train()
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*")) == ["step_0000004", "step_0000005"]


def test_saving_a_step_again_replaces_it_without_a_gap(world_shards, tmp_path, monkeypatch):
    import os

    from helios.training import trainer as trainer_module

    shards, _, _ = world_shards
    trainer = Trainer(train_config(shards, tmp_path / "run", max_steps=1, checkpoint_every=100))
    trainer.train()
    final = tmp_path / "run" / "checkpoints" / "step_0000001"
    assert final.is_dir()
    seen = []
    real_replace = os.replace

    def watching(source, target):  # at every rename, a complete step-1 checkpoint exists somewhere
        seen.append(any((p / "state.json").is_file() for p in final.parent.glob("*step_0000001")))
        return real_replace(source, target)

    monkeypatch.setattr(trainer_module.os, "replace", watching)
    trainer.save_checkpoint()
    assert seen and all(seen)
    assert (final / "state.json").is_file() and not list(final.parent.glob(".old_*"))
