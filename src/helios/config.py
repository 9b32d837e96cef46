"""Settings and named presets: one source of truth for the numbers of the spec.

The transformer settings use diffusers' ``HeliosTransformer3DModel`` config keys, so a released
``transformer/config.json`` maps onto :class:`TransformerConfig` one to one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIFFUSERS_CLASS_NAME = "HeliosTransformer3DModel"
DIFFUSERS_VERSION = "0.42.1"

# Keys diffusers writes into config.json that describe the file, not the model.
_CONFIG_METADATA_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a malformed file is a ValueError naming the file and the problem."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


EXTENSION_FIELDS = (
    "pyramid_rope_alignment",
    "rope_spatial_scale",
)  # ours, unknown to diffusers' HeliosTransformer3DModel


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of the Helios DiT. Defaults are the released 14B model (paper §3.1, §3.3.1)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 40
    attention_head_dim: int = 128
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096  # UMT5-XXL d_model
    freq_dim: int = 256  # sinusoidal timestep features
    ffn_dim: int = 13824
    num_layers: int = 40
    cross_attn_norm: bool = True
    # Stored for compatibility only: q/k always get one RMSNorm over all heads (diffusers does the same).
    qk_norm: str | None = "rms_norm_across_heads"
    eps: float = 1e-6
    added_kv_proj_dim: int | None = None
    rope_dim: tuple[int, int, int] = (44, 42, 42)  # rotary dims for (t, y, x)
    rope_theta: float = 10000.0
    guidance_cross_attn: bool = True  # paper §3.1.2: only the noisy tokens cross-attend to text
    zero_history_timestep: bool = True  # history tokens are modulated with t = 0
    has_multi_term_memory_patch: bool = True  # paper §3.3.1
    is_amplify_history: bool = False  # paper eq. 1; off in the released checkpoints
    history_scale_mode: str = "per_head"  # "per_head" or "scalar"
    # Our extension, off in every released model (and never written to their config.json): the RoPE
    # positions of a lower pyramid stage's noisy tokens are spread over the full-resolution grid of the
    # history, so a noisy token and the history token at the same place in the picture get the same
    # position. As released, a stage-0 token (i, j) sits at (i, j) — beside the history's top-left
    # corner — and position cannot tell the model where the history's objects are.
    pyramid_rope_alignment: bool = False
    # Our extension, 1 in every released model: the RoPE positions of the picture's rows and columns
    # are token indices times this. A model re-patched to tokens half as wide (model/repatch.py, the
    # recipe's --repatch 2) keeps the positions, and so the attention, it was trained with at 0.5.
    rope_spatial_scale: float = 1.0

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if problems:
            raise ValueError("invalid transformer config: " + "; ".join(problems))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "rope_dim", tuple(int(d) for d in self.rope_dim))
        if len(self.patch_size) != 3:
            problems.append(f"patch_size must have 3 entries, got {self.patch_size}")
        if len(self.rope_dim) != 3 or any(d % 2 for d in self.rope_dim):
            problems.append(f"rope_dim must be 3 even numbers, got {self.rope_dim}")
        elif sum(self.rope_dim) != self.attention_head_dim:
            problems.append(f"rope_dim {self.rope_dim} must sum to attention_head_dim {self.attention_head_dim}")
        if self.added_kv_proj_dim is not None:
            problems.append("added_kv_proj_dim (an image-embedding branch) is not part of Helios")
        if self.history_scale_mode not in ("per_head", "scalar"):
            problems.append(f"history_scale_mode must be 'per_head' or 'scalar', got {self.history_scale_mode!r}")
        if self.out_channels is None:
            object.__setattr__(self, "out_channels", self.in_channels)
        if problems:
            raise ValueError("invalid transformer config: " + "; ".join(problems))

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    # dict-like reading, as diffusers' model configs (config["num_layers"], config.get(...), dict(config))
    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TransformerConfig:
        """Build from a diffusers ``config.json`` dict; unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k not in _CONFIG_METADATA_KEYS}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown Helios transformer config keys: {', '.join(unknown)}")
        class_name = config.get("_class_name", DIFFUSERS_CLASS_NAME)
        if class_name != DIFFUSERS_CLASS_NAME:
            raise ValueError(f"config is for {class_name!r}, expected {DIFFUSERS_CLASS_NAME!r}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> TransformerConfig:
        return cls.from_dict(read_json(path))

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of diffusers' ``HeliosTransformer3DModel`` for this architecture."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        enabled = [name for name in EXTENSION_FIELDS if getattr(self, name) != defaults[name]]
        if enabled:
            raise ValueError(f"diffusers' Helios transformer has no {', '.join(enabled)}")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in EXTENSION_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """The diffusers ``config.json`` layout (lists for tuples, class name and version)."""
        out: dict[str, Any] = {"_class_name": DIFFUSERS_CLASS_NAME, "_diffusers_version": DIFFUSERS_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in EXTENSION_FIELDS and value == f.default:
                continue  # released configs stay as released
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _type_problems(config: TransformerConfig) -> list[str]:
    """Fields whose value has the wrong type (a config file with "num_layers": "eight", say)."""
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        default = f.default
        if value is None or value == default:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
            )
        else:
            ok = isinstance(value, str)
        if not ok:
            problems.append(f"{f.name} = {value!r} is not a valid {type(default).__name__}")
    return problems


# The released Helios-{Base,Mid,Distilled} transformers all share this architecture.
HELIOS_14B = TransformerConfig()

# The tiny fixture model of the parity tests (spec: diffusers-reference, "Tiny fixture model").
TINY = TransformerConfig(
    num_attention_heads=2,
    attention_head_dim=16,
    text_dim=32,
    ffn_dim=64,
    num_layers=2,
    rope_dim=(6, 6, 4),
)

TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    "helios-14b": HELIOS_14B,
    "helios-base": HELIOS_14B,
    "helios-mid": HELIOS_14B,
    "helios-distilled": HELIOS_14B,
    "tiny": TINY,
}


def transformer_preset(name: str) -> TransformerConfig:
    try:
        return TRANSFORMER_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown transformer preset {name!r}; choose one of {', '.join(sorted(TRANSFORMER_PRESETS))}"
        ) from None


# ------------------------------------------------------------------------------------ generation


@dataclass(frozen=True)
class ShiftSettings:
    """Dynamic shift of σ tables by token count (``kind`` None: no shift). Official §2.3–2.5."""

    kind: str | None = None  # "linear" | "exponential" | None
    base_seq_len: int = 256
    max_seq_len: int = 4096
    base_shift: float = 0.5
    max_shift: float = 1.15

    def __post_init__(self) -> None:
        if self.kind not in (None, "linear", "exponential"):
            raise ValueError(f"unknown time shift {self.kind!r}; choose 'linear', 'exponential' or None")


@dataclass(frozen=True)
class HistorySettings:
    """The rolling history window (paper §3.1–3.3; official §2.1–2.2)."""

    sizes: tuple[int, int, int] = (16, 2, 1)  # long, mid, newest ("1x") latent frames
    chunk_latent_frames: int = 9  # → 33 video frames per chunk
    keep_first_frame: bool = True  # First-Frame Anchor (paper §3.2.2)
    image_noise_sigma: tuple[float, float] = (0.111, 0.135)  # I2V/V2V anchor noise σ range
    video_noise_sigma: tuple[float, float] = (0.111, 0.135)  # V2V frames / I2V fake frame σ range

    def chunk_video_frames(self, temporal_factor: int) -> int:
        """Video frames of one chunk with a causal codec of ``temporal_factor``: (latent frames − 1)·tf + 1."""
        return (self.chunk_latent_frames - 1) * temporal_factor + 1


@dataclass(frozen=True)
class SamplerSettings:
    """How one chunk is denoised. ``pyramid_steps`` None means one resolution with ``steps`` steps."""

    name: str
    sampler: str = "unipc"  # "unipc" | "dmd"
    steps: int = 50
    pyramid_steps: tuple[int, ...] | None = None
    guidance_scale: float = 5.0
    cfg_zero_star: bool = False
    zero_init_steps: int | None = None  # CFG-Zero* zero-init: steps 0..n of stage 0 predict 0
    amplify_first_chunk: bool = False  # DMD only: chunk 0 gets 2n steps per stage
    shift: ShiftSettings = ShiftSettings()
    # Which latent size gives a pyramid stage its dynamic-shift mu: "diffusers" uses the size
    # before that stage's upsample (the public pipelines), "official" the stage's own size (the
    # research pipeline, ODE pairs and DMD training). See docs/sampling.md.
    shift_convention: str = "diffusers"

    def __post_init__(self) -> None:
        if self.sampler not in ("unipc", "dmd"):
            raise ValueError(f"unknown sampler {self.sampler!r}; choose 'unipc' or 'dmd'")
        if self.sampler == "dmd" and self.pyramid_steps is None:
            raise ValueError("the DMD sampler runs on the pyramid: give pyramid_steps")
        if self.shift_convention not in ("diffusers", "official"):
            raise ValueError(f"shift_convention must be 'diffusers' or 'official', got {self.shift_convention!r}")
        steps = self.pyramid_steps if self.pyramid_steps is not None else (self.steps,)
        if any(int(s) < 1 for s in steps):
            raise ValueError(f"every stage needs at least one step, got {steps}")

    @property
    def uses_cfg(self) -> bool:
        return self.guidance_scale > 1.0 and self.sampler != "dmd"


SAMPLER_PRESETS: dict[str, SamplerSettings] = {
    # Helios-Base: one resolution, UniPC 50 steps, CFG 5 (official §2.3).
    "helios-base": SamplerSettings(
        name="helios-base", steps=50, guidance_scale=5.0, shift=ShiftSettings("exponential")
    ),
    # Helios-Mid: pyramid 20/20/20 UniPC, CFG-Zero* 5 with zero-init of 2 steps (official §2.4).
    "helios-mid": SamplerSettings(
        name="helios-mid",
        pyramid_steps=(20, 20, 20),
        guidance_scale=5.0,
        cfg_zero_star=True,
        zero_init_steps=1,
        shift=ShiftSettings("exponential"),
    ),
    # Helios-Distilled: pyramid DMD 2/2/2, no CFG, first chunk amplified (official §2.5).
    "helios-distilled": SamplerSettings(
        name="helios-distilled",
        sampler="dmd",
        pyramid_steps=(2, 2, 2),
        guidance_scale=1.0,
        amplify_first_chunk=True,
        shift=ShiftSettings("linear"),
    ),
}


def sampler_preset(name: str) -> SamplerSettings:
    try:
        return SAMPLER_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(SAMPLER_PRESETS))}") from None


# ------------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class CorruptionSettings:
    """Frame-Aware Corrupt (paper §3.2.3) and the saturation augmentation, per history frame.

    With probability ``clean_prob`` a sample's history is left alone; otherwise every history frame
    (and, separately, the anchor) independently draws one mode with the given probabilities.
    """

    clean_prob: float = 0.1
    noise_prob: float = 0.55  # x ← σ·ε + (1 − σ)·x, σ ~ U(noise_sigma)
    noise_sigma: tuple[float, float] = (0.0, 1 / 3)
    exposure_prob: float = 0.15  # x ← a·x, a ~ U(exposure_range)
    exposure_range: tuple[float, float] = (0.8, 1.2)
    downsample_prob: float = 0.15  # bilinear down to a factor ~ U(downsample_range), then back up
    downsample_range: tuple[float, float] = (0.5, 0.9)
    # the rest of the probability mass keeps the frame clean
    saturation_prob: float = 0.0  # per sample: scale deviations from the channel mean (official stage 3: 0.9)
    saturation_range: tuple[float, float] = (0.3, 1.7)

    def __post_init__(self) -> None:
        total = self.noise_prob + self.exposure_prob + self.downsample_prob
        if total > 1 + 1e-9 or min(self.noise_prob, self.exposure_prob, self.downsample_prob, self.clean_prob) < 0:
            raise ValueError(f"corruption mode probabilities must be ≥ 0 and sum to ≤ 1, got {total}")


@dataclass(frozen=True)
class HistoryDropSettings:
    """Random history drop that teaches T2V / I2V / V2V from one data format (official §3.3)."""

    t2v: float = 0.4  # no history, no anchor
    i2v: float = 0.1  # anchor + only the newest frame
    v2v: float = 0.4  # the oldest 1 + r·9 frames zeroed, r ~ U{0, 1, 2}
    # Ours, 0 as released: after the drops, this share of samples gets I2V's history as inference builds it
    # from a still image of the chunk's first frame (anchor: that frame's latent; newest frame: the image
    # held for a chunk; nothing else): the path is told by the caption alone, as in I2V at inference. The
    # released ``i2v`` drop comes close (one newest latent barely shows a direction) but in few samples and
    # with the video's first frame as the anchor. Needs shards offloaded with held first frames
    # (``offload(held=True)``; the world recipe writes them).
    still_image: float = 0.0

    def __post_init__(self) -> None:
        for name in ("t2v", "i2v", "v2v", "still_image"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"history drop {name} must lie in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class DistillSettings:
    """Stage 3, Adversarial Hierarchical Distillation (paper §3.4.2, Table 2; official stage_3_*.yaml).

    ``phase`` "ode": Staged ODE Init — regression on teacher trajectories (``data`` is a folder of ODE
    pairs, ``helios offload --record-ode``). "dmd": DMD with Pure Teacher Forcing (real history from
    ``data``), Staged Backward Simulation, Dynamic Re-noise, the critic's flow matching and, from
    ``gan_start_step``, adversarial post-training. The student is the trainer's ``transformer`` (e.g. a
    Mid model or an ODE-initialised one); real and fake score share one network, ``teacher`` (Base in the
    paper), with the critic's LoRA switched off for the real score and on for the fake one.
    """

    phase: str = "dmd"  # "ode" | "dmd"
    teacher: str | dict = ""  # the real/fake-score network (folder or preset); phase dmd
    student_steps: tuple[int, ...] = (1, 1, 1)  # DMD steps per pyramid stage of the student
    # Guidance convention of the real score: cond + real_guidance_scale·(cond − uncond), the official
    # code's — the paper's "CFG weight 3.0" is this 3.0, i.e. a standard CFG weight of 4.
    real_guidance_scale: float = 3.0
    # False: the real and fake scores see no history or anchor — a bidirectional teacher scoring each chunk
    # on its own (the paper's "w Bidirectional Teacher" ablation, Table 5); the student still sees history
    score_history: bool = True
    critic_lora_rank: int | None = 256  # None: the whole score network is the critic (small models)
    critic_lora_alpha: int | None = 256
    critic_learning_rate: float = 4e-7
    generator_update_every: int = 5  # two-time-scale updates: the critic every step, the student every 5th
    renoise_alpha: float = 4.0  # Dynamic Re-noise: Beta(alpha, beta) annealed to uniform over …
    renoise_beta: float = 1.5
    renoise_anneal_steps: int = 500  # … this many generator updates
    gan: bool = True
    gan_start_step: int = 1000
    gan_head_dim: int = 768
    gan_blocks: tuple[int, ...] | None = None  # None: the paper's 5, 15, 25, 35 of 40, proportional otherwise
    gan_generator_weight: float = 5e-2  # w_G, eq. 15
    gan_discriminator_weight: float = 1e-2  # w_D, eq. 16
    r1_weight: float = 100.0  # λ_D
    r1_sigma: float = 0.1  # σ_D
    gan_crop: float = 0.5  # the discriminator sees an H·crop × W·crop window
    cache_gan_grad: bool = True  # Cache Grad: the generator's graph never holds the critic's activations
    offload_idle_models: bool = False  # park the model not in use in pinned host memory (non-blocking)
    ode_weight: float = 80.0  # phase ode: loss weight (official)

    def __post_init__(self) -> None:
        if self.phase not in ("ode", "dmd"):
            raise ValueError(f"distill.phase must be 'ode' or 'dmd', got {self.phase!r}")
        if self.phase == "dmd" and not self.teacher:
            raise ValueError("distill.teacher is needed for phase dmd: the real/fake-score network (e.g. Base)")
        if not self.student_steps or any(int(n) < 1 for n in self.student_steps):
            raise ValueError(f"distill.student_steps must be positive step counts per stage, got {self.student_steps}")
        if self.generator_update_every < 1:
            raise ValueError("distill.generator_update_every must be at least 1")
        if not 0.0 < self.gan_crop <= 1.0:
            raise ValueError(f"distill.gan_crop must lie in (0, 1], got {self.gan_crop}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Stage 1 (Base) and stage 2 (Mid) differ only in ``stage`` and numbers."""

    stage: int = 1
    data: str = ""  # folder of offloaded shards (``helios offload``)
    output_dir: str = "outputs/train"
    transformer: str | dict = "tiny"  # a preset name, a config dict, or a transformer folder to start from
    init_memory_patches: bool = True  # average-pool copies of patch_embedding, after loading weights
    lora_rank: int | None = None  # None: full fine-tuning
    lora_alpha: int | None = None
    train_memory_patches: bool = True  # memory patches fully trained beside LoRA (official stage 1)
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    batch_size: int = 2
    max_steps: int = 100
    seed: int = 0
    mixed_precision: str = "no"  # "bf16" | "no"
    gradient_checkpointing: bool = False
    # torch.compile backend for each transformer block ("inductor" on GPUs), None: eager. A small model
    # is bound by kernel launches (the default world model: ~8,500 per stage-2 step), which compiling
    # each block's element-wise work into few kernels removes.
    compile: str | None = None
    ema_decay: float | None = None
    ema_start: int = 0
    logit_normal: tuple[float, float] = (0.0, 1.0)  # stage-1 timestep sampling (mean, std)
    # Zero the caption embedding of a sample with this probability, so classifier-free guidance has an
    # unconditional branch to work with (models trained from scratch need it; the official 0 relies on Wan).
    caption_dropout: float = 0.0
    # Share of samples taken at a video's first section (no history: the caption alone), None for
    # uniform over sections — text-to-video from scratch is learned only there.
    first_section: float | None = None
    # A curriculum over shards ordered easy to hard (the world recipe's --start-curriculum): step n draws
    # from the first ⌈files · n / curriculum_steps⌉ (at least one batch's worth); 0: from all of them.
    curriculum_steps: int = 0
    pyramid_sample_ratios: tuple[int, ...] = (1, 1, 1)  # stage 2: samples per pyramid stage per step
    # Stage 2: weigh each latent element's error by 1 + motion_weight · (its frame-to-frame change over the
    # sample's mean change); 0 is the paper's plain loss. Moving elements are few, and they alone carry
    # the motion words.
    motion_weight: float = 0.0
    # Stage 2: share of samples whose finer pyramid stages start from the coarser level with its motion taken
    # out (``objectives.motionless``), so they learn to draw the captioned motion themselves; 0 is the paper's.
    coarse_motion_dropout: float = 0.0
    history: HistorySettings = HistorySettings()
    corruption: CorruptionSettings = CorruptionSettings()
    history_drop: HistoryDropSettings = HistoryDropSettings()
    log_every: int = 10
    checkpoint_every: int = 50
    keep_checkpoints: int | None = 3  # newest checkpoints kept on disk (None: all)
    distributed: str = "none"  # "none" | "ddp" | "fsdp" (launch with torchrun)
    # With fsdp: every rank trains on the same samples, each on its share of the token sequence (Ulysses,
    # model/context_parallel.py) — the activations, which sharding the weights leaves whole, split too.
    context_parallel: bool = False
    # Keep the tensors saved for the backward (with gradient checkpointing mostly each block's input, the
    # fp32 residual stream) in pinned host memory from the forward to the backward: GPU memory for PCIe time.
    offload_activations: bool = False
    distill: DistillSettings | None = None  # stage 3 only

    def __post_init__(self) -> None:
        if self.stage not in (1, 2, 3):
            raise ValueError(f"stage must be 1 (Base), 2 (Mid) or 3 (Distilled), got {self.stage}")
        if (self.stage == 3) != (self.distill is not None):
            raise ValueError("stage 3 needs a 'distill' section, and only stage 3 takes one")
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if self.distributed not in ("none", "ddp", "fsdp"):
            raise ValueError(f"distributed must be 'none', 'ddp' or 'fsdp', got {self.distributed!r}")
        if self.context_parallel and (self.distributed != "fsdp" or self.stage == 3):
            raise ValueError("context_parallel needs distributed: fsdp and stage 1 or 2")
        if self.offload_activations and self.stage == 3:
            raise ValueError("offload_activations is a stage-1/2 option")
        if self.first_section is not None and not 0.0 <= self.first_section <= 1.0:
            raise ValueError(f"first_section must lie in [0, 1] (or be null), got {self.first_section}")
        if self.curriculum_steps < 0 or (self.curriculum_steps and self.stage == 3):
            raise ValueError(f"curriculum_steps must be >= 0 and is a stage-1/2 option, got {self.curriculum_steps}")
        if self.motion_weight < 0 or (self.motion_weight and self.stage != 2):
            raise ValueError(f"motion_weight must be >= 0 and is a stage-2 option, got {self.motion_weight}")
        if not 0.0 <= self.coarse_motion_dropout <= 1.0 or (self.coarse_motion_dropout and self.stage != 2):
            raise ValueError(
                f"coarse_motion_dropout must lie in [0, 1] and is a stage-2 option, got {self.coarse_motion_dropout}"
            )
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1 (or null for all), got {self.keep_checkpoints}")
        if (self.lora_rank is None) != (self.lora_alpha is None) and self.lora_alpha is not None:
            raise ValueError("lora_alpha needs lora_rank")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        nested = {
            "history": HistorySettings,
            "corruption": CorruptionSettings,
            "history_drop": HistoryDropSettings,
            "distill": DistillSettings,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        values = dict(data)
        for key, kind in nested.items():
            if isinstance(values.get(key), dict):
                inner_known = {f.name for f in dataclasses.fields(kind)}
                bad = sorted(set(values[key]) - inner_known)
                if bad:
                    raise ValueError(f"unknown {key} keys: {', '.join(bad)}")
                values[key] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values[key].items()})
        for key in ("betas", "logit_normal", "pyramid_sample_ratios"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"training config not found: {path}")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text())
        else:
            data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a training config is a mapping of settings")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
