"""One training loop for every stage; stages are configurations, not copies of the loop.

Determinism: every random number of step ``n`` comes from a generator seeded by (seed, n, rank),
so a run stopped and resumed from a checkpoint continues with exactly the losses of a run that was
not stopped. Checkpoints (trainable weights, EMA, optimizer, step) are written to a temporary folder
and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..config import TrainConfig, transformer_preset
from ..model.context_parallel import enable_context_parallel
from ..model.memory import init_memory_from_patch_embedding
from ..model.speed import compile_blocks
from ..model.transformer import HeliosTransformer
from ..model.window import window_frames
from ..sampling.schedules import PyramidConstants
from .activation_offload import saved_tensors_on_host
from .corruption import corrupt_history, drop_history, still_image_history
from .data import LatentShards, curriculum_reach
from .distillation import Distillation
from .objectives import flow_matching_loss, pyramid_flow_matching_loss
from .ode_pairs import OdePairs, OdePairShards
from .sharded_start import build_sharded, fill_shard

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def build_transformer(spec: str | dict) -> HeliosTransformer:
    """A preset name, a config dict, a Helios transformer folder, or ``wan:FOLDER`` (a Wan2.1 T2V start)."""
    if isinstance(spec, dict):
        return HeliosTransformer.from_config(spec)
    if spec.startswith("wan:"):
        return HeliosTransformer.from_wan(spec[4:], dtype=torch.float32)
    if Path(spec).exists():
        return HeliosTransformer.from_pretrained(spec, dtype=torch.float32)
    return HeliosTransformer.from_config(transformer_preset(spec))


def linear_layer_names(model: nn.Module) -> list[str]:
    """Every nn.Linear except those inside norms: the official ``all-linear`` LoRA target."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and "norm" not in name]


def add_lora(model: HeliosTransformer, rank: int, alpha: int) -> HeliosTransformer:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=linear_layer_names(model)
    )
    model = inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer and remove the adapters (export format)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    return model


class Trainer:
    def __init__(self, config: TrainConfig, device: str | torch.device | None = None):
        self.config = config
        self.rank, self.world = _init_distributed(config.distributed)
        if device is None:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        torch.manual_seed(config.seed)  # model initialisation only; steps use their own generators
        if _starts_sharded(config):
            self.model = build_sharded(
                config.transformer.removeprefix("wan:"),
                self.device,
                prepare=self._prepare_model,
                shard=lambda m: _wrap(m, "fsdp", self.device),
                lora_rank=config.lora_rank,
            ).train()
            self.wrapped = self.model
        else:
            model = build_transformer(config.transformer)
            if config.init_memory_patches and model.config.has_multi_term_memory_patch:
                init_memory_from_patch_embedding(model, model.patch_embedding)
            self.model = self._prepare_model(model).to(self.device).train()
            self.wrapped = _wrap(self.model, config.distributed, self.device)
        if config.context_parallel:
            enable_context_parallel(self.model, split_batch=False)
        # After wrapping: FSDP2 replaces parameters with sharded ones.
        self.trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        # Sharded EMA (paper §4.2): under FSDP2 each parameter is a DTensor, so its fp32 EMA copy holds
        # only this rank's shard; the whole tensor is gathered only to save or export.
        self.ema = {n: p.detach().float().clone() for n, p in self.trainable.items()} if config.ema_decay else None
        params = [p for p in self.wrapped.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay, eps=config.adam_eps
        )
        distilling_ode = config.stage == 3 and config.distill.phase == "ode"
        self.data = OdePairShards(config.data) if distilling_ode else LatentShards(config.data)
        if config.curriculum_steps and not self.data.ordered:  # (TrainConfig refuses it at stage 3: ODE pairs)
            raise ValueError(
                f"curriculum_steps needs shards ordered easy to hard; {config.data} is not (offload it with the "
                "world recipe's --start-curriculum)"
            )
        self.distill = (
            Distillation(config, self.model, self.device, build_transformer, add_lora) if config.stage == 3 else None
        )
        self.constants = PyramidConstants(stages=len(config.pyramid_sample_ratios)) if config.stage == 2 else None
        self.out = Path(config.output_dir)
        self.step = 0
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._prefetch = None
        self._resume()

    def _prepare_model(self, model: HeliosTransformer) -> HeliosTransformer:
        """LoRA adapters, gradient checkpointing and compilation, as the config asks."""
        c = self.config
        if c.lora_rank:
            model = add_lora(model, c.lora_rank, c.lora_alpha or c.lora_rank)
            if c.train_memory_patches:
                for conv in (model.patch_short, model.patch_mid, model.patch_long):
                    conv.requires_grad_(True)
        model.enable_gradient_checkpointing(c.gradient_checkpointing)
        if c.compile:
            compile_blocks(model, backend=c.compile)
        return model

    # ------------------------------------------------------------------ one step

    def _generator(self, step: int) -> torch.Generator:
        # Data-parallel ranks draw their own samples; context-parallel ranks share every sample and noise.
        data_rank = 0 if self.config.context_parallel else self.rank
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + step * 1_009 + data_rank)

    def _lr(self, step: int) -> float:
        warmup = self.config.warmup_steps
        return self.config.learning_rate * (min(1.0, (step + 1) / warmup) if warmup else 1.0)

    def _reachable(self, step: int) -> int | None:
        """How many of the first shards step ``step`` (0-based) draws from under the curriculum; None: all."""
        c = self.config
        return (
            curriculum_reach(len(self.data), step + 1, c.curriculum_steps, c.batch_size) if c.curriculum_steps else None
        )

    def _prepare(self, step: int):
        """The samples of ``step`` (CPU work, on the prefetch thread), a pure function of it."""
        c = self.config
        generator = self._generator(step)
        if isinstance(self.data, OdePairShards):
            return step, self.data.sample(c.batch_size, generator), generator
        batch = self.data.sample(
            c.batch_size,
            generator,
            history_frames=window_frames(c.history),
            first_section=c.first_section,
            reachable=self._reachable(step),
        )
        keep_text = (torch.rand(c.batch_size, generator=generator) >= c.caption_dropout).float().view(-1, 1, 1)
        tensors = (batch.target, batch.history, batch.anchor, batch.text * keep_text)
        if c.history_drop.still_image:
            if batch.held is None:
                raise ValueError(
                    f"history_drop.still_image needs shards with held first frames; {c.data} has none "
                    "(offload with held=True, as the world recipe does)"
                )
            tensors += (batch.held,)
        return step, tensors, generator

    def _corrupt(self, tensors, generator: torch.Generator):
        """History corruption and drop, on the device (whole-batch tensor work; random draws from the
        step's generator, so the step stays a pure function of its seed)."""
        c = self.config
        target, history, anchor, text, *held = (t.to(self.device, non_blocking=True) for t in tensors)
        history, anchor = corrupt_history(history, anchor, c.corruption, generator)
        history, anchor, _ = drop_history(history, anchor, c.history_drop, c.history.chunk_latent_frames, generator)
        if held:  # (after the drops: a still-image sample keeps its history)
            history, anchor = still_image_history(
                history, anchor, target, held[0], c.history_drop.still_image, generator
            )
        return target, history, anchor, text

    def train_step(self) -> dict[str, float]:
        c = self.config
        # The next step's samples are drawn on a thread while this one runs on the device.
        pending = self._prefetch if self._prefetch is not None and self._prefetch.result()[0] == self.step else None
        step, tensors, generator = pending.result() if pending is not None else self._prepare(self.step)
        self._prefetch = self._pool.submit(self._prepare, self.step + 1)
        if not isinstance(tensors, OdePairs):
            tensors = self._corrupt(tensors, generator)
        if c.stage == 3:
            return self._distill_step(tensors, generator)
        target, history, anchor, text = tensors
        with self._autocast(), saved_tensors_on_host(c.offload_activations):
            if c.stage == 1:
                loss = flow_matching_loss(
                    self.wrapped, target, history, anchor, text, c.history, generator, c.logit_normal
                )
            else:
                loss = pyramid_flow_matching_loss(
                    self.wrapped,
                    target,
                    history,
                    anchor,
                    text,
                    c.history,
                    generator,
                    self.constants,
                    c.pyramid_sample_ratios,
                    motion_weight=c.motion_weight,
                    coarse_motion_dropout=c.coarse_motion_dropout,
                )
        grad_norm = self._update(loss)
        self.step += 1
        return {
            "step": self.step,
            "loss": _global_mean(loss.detach()),
            "grad_norm": float(grad_norm),
            "lr": self._lr(self.step - 1),
        }

    def _autocast(self):
        bf16 = self.config.mixed_precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def _update(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, clip, step the trained model's optimizer and its EMA; returns the gradient norm."""
        self.optimizer.zero_grad(set_to_none=True)
        # Context parallel: each rank's gradient is its tokens' share of the whole; FSDP averages over the
        # ranks, so scaling by their number makes the average the sum, the single-process gradient.
        (loss * self.world if self.config.context_parallel else loss).backward()
        params = [p for p in self.wrapped.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        self.optimizer.step()
        self._update_ema()
        return grad_norm

    def _distill_step(self, tensors, generator: torch.Generator) -> dict[str, float]:
        """Stage 3. Phase ode: the student regresses the teacher's stage endpoints. Phase dmd: the
        critic learns every step; on the student's turn (two time scales) the student learns from
        the DMD gradient (+ the GAN term), and only then its EMA moves."""
        c, d = self.config, self.distill
        record: dict[str, float] = {"step": self.step + 1, "lr": self._lr(self.step)}
        if isinstance(tensors, OdePairs):
            with self._autocast():
                loss = d.ode_loss(self.wrapped, tensors.to(self.device), generator, torch.float32)
            record["grad_norm"] = float(self._update(loss))
            record["loss"] = _global_mean(loss.detach())
            self.step += 1
            return record
        batch = tensors  # (target, history, anchor, text), history corrupted
        record.update(d.critic_step(self.wrapped, batch, generator, self.step, torch.float32, self._autocast()))
        if d.generator_turn(self.step):
            generator_steps = self.step // c.distill.generator_update_every
            with self._autocast():
                parts = d.generator_loss(self.wrapped, batch, generator, generator_steps, self.step, torch.float32)
            loss = parts.pop("loss")
            record["grad_norm"] = float(self._update(loss))
            record.update(parts)
        else:
            record["grad_norm"] = 0.0  # the student did not learn this step
        # The logged loss: the student's when it learned this step, else the critic's.
        student = record.get("dmd", 0.0) + c.distill.gan_generator_weight * record.get("gan_g", 0.0)
        record["loss"] = student if "dmd" in record else record["critic_flow"]
        self.step += 1
        return record

    def _update_ema(self) -> None:
        # (stage 3 calls this only on the student's turn: the EMA follows generator updates)
        if self.ema is None or self.step < self.config.ema_start:
            return
        n = self.step - self.config.ema_start
        decay = min(self.config.ema_decay, (1 + n) / (10 + n))
        with torch.no_grad():
            for name, param in self.trainable.items():
                self.ema[name].mul_(decay).add_(param.detach().float(), alpha=1 - decay)

    # ------------------------------------------------------------------ the loop

    def train(self, max_steps: int | None = None, stop_after: int | None = None) -> list[dict[str, float]]:
        """Run to ``max_steps`` (default: the config's); ``stop_after`` ends early (tests: interrupted runs)."""
        c = self.config
        end = max_steps or c.max_steps
        if stop_after is not None:
            end = min(end, self.step + stop_after)
        records = []
        log = self.out / "log.jsonl"
        writer = _tensorboard(self.out) if self.rank == 0 else None
        started = time.perf_counter()
        while self.step < end:
            record = self.train_step()
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"loss became {record['loss']} at step {self.step}")
            records.append(record)
            if self.rank == 0 and (self.step % c.log_every == 0 or self.step == end):
                record = {**record, "seconds": time.perf_counter() - started}
                self.out.mkdir(parents=True, exist_ok=True)
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                if writer is not None:
                    for key in ("loss", "grad_norm", "lr"):
                        writer.add_scalar(f"train/{key}", record[key], self.step)
                _progress(self.step, end, record["loss"])
            if self.step % c.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
        if self.rank == 0:
            sys.stderr.write("\n")
        return records

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path | None:
        trainable = {n: _full(p).detach().float().cpu().contiguous() for n, p in self.trainable.items()}
        optimizer = _optimizer_state(self.wrapped, self.optimizer, self.config.distributed)
        ema = {n: _full(t).cpu().contiguous() for n, t in self.ema.items()} if self.ema is not None else None
        if self.rank != 0:
            _barrier()
            return None
        folder = self.out / CHECKPOINTS
        final = folder / f"step_{self.step:07d}"
        tmp = folder / f".tmp_step_{self.step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(trainable, str(tmp / "trainable.safetensors"))
        if ema is not None:
            save_file(ema, str(tmp / "ema.safetensors"))
        torch.save(optimizer, tmp / "optimizer.pt")
        if self.distill is not None and self.distill.critic_params:
            critic, critic_optimizer = self.distill.state()
            save_file(critic, str(tmp / "critic.safetensors"))
            torch.save(critic_optimizer, tmp / "critic_optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": self.step, "config": self.config.to_dict()}, indent=1))
        for file in tmp.iterdir():  # on disk before the folder is published, so a crash never leaves it half-written
            _fsync(file)
        _fsync(tmp)
        _replace_folder(tmp, final)
        latest_tmp = folder / f".{LATEST}.tmp"
        latest_tmp.write_text(final.name)
        _fsync(latest_tmp)
        os.replace(latest_tmp, folder / LATEST)
        _fsync(folder)
        self._prune_checkpoints(keep=final)
        _barrier()
        return final

    def _prune_checkpoints(self, keep: Path) -> None:
        """Keep the newest ``keep_checkpoints`` checkpoints (None keeps all); never the one just written."""
        limit = self.config.keep_checkpoints
        if limit is None:
            return
        saved = sorted(p for p in (self.out / CHECKPOINTS).glob("step_*") if p.is_dir())
        for old in saved[: max(0, len(saved) - limit)]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def _resume(self) -> None:
        pointer = self.out / CHECKPOINTS / LATEST
        if not pointer.is_file():
            return
        folder = self.out / CHECKPOINTS / pointer.read_text().strip()
        state = json.loads((folder / "state.json").read_text())
        saved = load_file(str(folder / "trainable.safetensors"))
        missing = sorted(set(self.trainable) - set(saved))
        if missing or set(saved) - set(self.trainable):
            raise ValueError(
                f"checkpoint {folder} does not match this run's trainable parameters ({len(missing)} missing)"
            )
        with torch.no_grad():
            for name, param in self.trainable.items():
                fill_shard(param, saved[name])
        if self.ema is not None and (folder / "ema.safetensors").is_file():
            saved_ema = load_file(str(folder / "ema.safetensors"))
            with torch.no_grad():
                for name, value in self.ema.items():
                    fill_shard(value, saved_ema[name])
        optimizer = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
        _load_optimizer_state(self.wrapped, self.optimizer, optimizer, self.config.distributed)
        if self.distill is not None and self.distill.critic_params:
            if not (folder / "critic.safetensors").is_file():
                raise ValueError(f"checkpoint {folder} has no critic: it was not written by a stage-3 dmd run")
            critic_optimizer = torch.load(folder / "critic_optimizer.pt", weights_only=True, map_location="cpu")
            self.distill.load_state(load_file(str(folder / "critic.safetensors")), critic_optimizer)
        self.step = state["step"]
        _truncate_log(self.out / "log.jsonl", self.step)

    # ------------------------------------------------------------------ export

    def export(self, path: str | Path, use_ema: bool = True) -> Path:
        """Save a plain transformer folder (LoRA merged; EMA weights when kept and started) loadable by
        ``HeliosTransformer.from_pretrained`` and by diffusers."""
        import copy

        model = copy.deepcopy(self.model).cpu()
        # Before ema_start the EMA is still the starting weights: exporting it would drop all the training.
        if use_ema and self.ema is not None and self.step > self.config.ema_start:
            with torch.no_grad():
                named = dict(model.named_parameters())
                for name, value in self.ema.items():
                    named[name].data.copy_(_full(value).cpu())
        if self.config.lora_rank:
            model = merge_lora(model)
        model.gradient_checkpointing = False
        if self.rank == 0:
            model.save_pretrained(path)
        _barrier()
        return Path(path)


# ---------------------------------------------------------------------- distributed helpers


def _init_distributed(mode: str) -> tuple[int, int]:
    if mode == "none":
        return 0, 1
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            raise RuntimeError(f"distributed={mode!r} needs a launcher: run with `torchrun --nproc-per-node N`")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def _wrap(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
    return model


def _full(param: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a (possibly FSDP-sharded) parameter."""
    return param.full_tensor() if hasattr(param, "full_tensor") else param


def _starts_sharded(config: TrainConfig) -> bool:
    """FSDP2 from a Helios or Wan (``wan:``) folder: built on the meta device and filled shard by shard
    (sharded_start.py). A preset start, or memory patches re-initialised from the patch embedding of a
    Helios folder, builds whole."""
    spec = config.transformer
    if config.distributed != "fsdp" or not isinstance(spec, str):
        return False
    if spec.startswith("wan:"):
        return Path(spec[4:]).is_dir()
    return Path(spec).is_dir() and not config.init_memory_patches


def _optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, mode: str) -> dict:
    if mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return optimizer.state_dict()


def _load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, mode: str) -> None:
    if mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)


def _global_mean(value: torch.Tensor) -> float:
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return float(value)


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') bytes to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _replace_folder(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; an existing ``target`` stays until ``new`` is in place, so at every
    moment one complete checkpoint of this step exists."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".old_{target.name}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _truncate_log(log: Path, step: int) -> None:
    """Drop log records past the checkpoint a run resumes from: they will be written again."""
    if not log.is_file():
        return
    kept = []
    for line in log.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the crash
    log.write_text("".join(line + "\n" for line in kept))


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder / "tensorboard"))


def _progress(step: int, total: int, loss: float) -> None:
    width = 24
    filled = int(width * step / max(total, 1))
    sys.stderr.write(f"\rstep {step}/{total} |{'█' * filled}{'·' * (width - filled)}| loss {loss:.4f}")
    sys.stderr.flush()
