"""Training configuration: one dataclass, loaded from YAML, validated before anything is built."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Optional

TA_TARGETS = ("ce", "perspective_normalised")   # "ce" is the paper's (MIND.md section 4); the other is an ablation
MODES = ("single", "uniform", "consistency", "mind", "mind-no-inertia", "mind-no-synergy")
TA_MODES = ("mind", "mind-no-inertia", "mind-no-synergy")
CONS_MODES = ("consistency", "mind", "mind-no-inertia", "mind-no-synergy")


class ConfigError(ValueError):
    pass


@dataclass
class TrainConfig:
    mode: str = "mind"
    perspectives: Optional[list] = None      # None = data.PERSPECTIVES
    golden: str = "formal-symbolic"          # the one path of mode `single`
    # data (built-in dataset unless train_file is given)
    train_file: Optional[str] = None
    id_eval_file: Optional[str] = None
    ood_eval_file: Optional[str] = None
    n_train: int = 600
    n_id: int = 100
    n_ood: int = 100
    data_seed: int = 0
    ood_variants: Optional[list] = None      # built-in OOD variants (teacher.OOD_CANDIDATES); None = teacher.OOD_VARIANTS
    # student
    student: str = "tiny-llama"              # "tiny-llama", "smollm2-135m" or a local HF dir
    vocab_size: int = 320
    lora_r: int = 0                          # 0 = full fine-tune; > 0 = LoRA adapters of this rank (peft)
    max_len: int = 96
    # optimisation: one step = `accum` micro-batches of `questions_per_step` questions x K paths.
    # protocol (protocols.py): equal_questions = every mode the same questions per step (the paper's);
    # equal_rows = `single` takes K x more questions per micro-batch (one path each).
    protocol: str = "equal_questions"
    # padding-free rows (packing.py). None = auto: on with flash-attn varlen, off with SDPA, where the
    # block-diagonal mask is computed densely (measured: no step-time gain on the 2-core CPU)
    pack: Optional[bool] = None
    pack_len: int = 256                      # tokens per packed row (paths are never split)
    steps: int = 400
    questions_per_step: int = 4
    accum: int = 1
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    bf16: bool = True                        # autocast on CUDA only
    # MIND (MIND.md sections 3-5; OURS values)
    beta: float = 0.7
    tau: float = 1.0                         # TA listwise temperature
    tau_s: float = 1.0                       # selection softmax temperature
    lam: float = 0.05                        # weight of L_cons
    momentum: float = 0.9                    # inertia
    ta_hidden: int = 64
    ta_heads: int = 4
    ta_score_heads: int = 3
    ta_lr_scale: float = 0.1
    ta_accum_scale: int = 4
    ta_warmup_steps: int = 20                # TA-only steps on the current student's losses
    ta_warmup_lr_scale: float = 1.0          # TA lr during warm-up (x student lr)
    ta_target: str = "ce"                    # TA_TARGETS: what the TA ranks paths by (ablation switch)
    # run
    seed: int = 0
    device: str = "cpu"
    provider: Optional[str] = None
    out_dir: Optional[str] = None
    log_every: int = 25
    ckpt_every: int = 0                      # 0 = only at the end
    max_wall_s: Optional[float] = None       # wall-clock guard for the whole run (stops cleanly)
    eval_max_n: Optional[int] = 200
    eval_max_new_tokens: int = 48
    eval_batch_size: int = 64
    extra: dict = field(default_factory=dict)

    @property
    def uses_ta(self) -> bool:
        return self.mode in TA_MODES

    @property
    def uses_cons(self) -> bool:
        return self.mode in CONS_MODES

    def validate(self, known_perspectives=None):
        def bad(name, problem, fix):
            raise ConfigError(f"config {name}={getattr(self, name)!r} {problem}; {fix}")
        if self.mode not in MODES:
            bad("mode", "is unknown", f"choose one of {list(MODES)}")
        if known_perspectives is not None:
            persp = self.perspectives or list(known_perspectives)
            unknown = [p for p in persp if p not in known_perspectives]
            if unknown:
                bad("perspectives", f"has unknown names {unknown}", f"choose from {list(known_perspectives)}")
            if len(set(persp)) != len(persp):
                bad("perspectives", "repeats a name", "list each perspective once")
            if self.golden not in persp:
                bad("golden", "is not among the perspectives", f"choose one of {persp}")
        if self.protocol not in ("equal_questions", "equal_rows"):
            bad("protocol", "is unknown", "choose equal_questions (the paper's) or equal_rows (compute-matched)")
        if self.pack not in (None, True, False):
            bad("pack", "must be true, false or null (auto)", "fix the value")
        if self.ta_target not in TA_TARGETS:
            bad("ta_target", "is unknown", f"choose one of {list(TA_TARGETS)}")
        for name in ("steps", "questions_per_step", "accum", "max_len", "pack_len", "ta_accum_scale", "ta_hidden",
                     "ta_heads", "ta_score_heads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be a positive int", "fix the value")
        for name in ("lr", "tau", "tau_s", "ta_lr_scale"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0", "fix the value")
        if not 0.0 <= self.beta <= 1.0:
            bad("beta", "must be in [0, 1]", "use e.g. 0.7")
        if not 0.0 <= self.momentum < 1.0:
            bad("momentum", "must be in [0, 1)", "use e.g. 0.9")
        if not isinstance(self.lora_r, int) or self.lora_r < 0:
            bad("lora_r", "must be an int >= 0", "use 0 (full fine-tune) or a LoRA rank such as 16")
        if self.lam < 0 or self.warmup_steps < 0 or self.ta_warmup_steps < 0:
            bad("lam", "and warmup steps must be >= 0", "fix the value")
        if self.ta_hidden % self.ta_heads:
            bad("ta_hidden", f"is not divisible by ta_heads={self.ta_heads}", "pick a multiple")
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"config has unknown keys {unknown}; known keys: {sorted(names)}")
        return cls(**d)


PRESETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_config(path, **overrides) -> TrainConfig:
    """A YAML file, or the name of a packaged preset (`demo`, `study`: mindcore/configs/NAME.yaml)."""
    import yaml
    preset = os.path.join(PRESETS, f"{path}.yaml")
    if not os.path.exists(path) and os.path.exists(preset):
        path = preset
    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist; pass --config demo, --config study (packaged presets) or a YAML file")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of keys to values")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(raw)
