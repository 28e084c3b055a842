"""Training configuration: one dataclass, loaded from YAML, validated before anything is built."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Optional

# "ce" is the paper's (MIND.md section 4); the others are ablations (ta.TATarget says what each ranks by)
TA_TARGETS = ("ce", "perspective_normalised", "answer_span", "loss_improvement")
MODES = ("single", "uniform", "consistency", "mind", "mind-no-inertia", "mind-no-synergy")
TA_MODES = ("mind", "mind-no-inertia", "mind-no-synergy")
CONS_MODES = ("consistency", "mind", "mind-no-inertia", "mind-no-synergy")


class ConfigError(ValueError):
    """A bad config value; ``field`` names the key so load_config can add the file and line."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


# Upper bounds far above any real run: a value past one is a typo (an extra zero), not a plan.
_INT_MAX = dict(steps=10**8, questions_per_step=4096, accum=4096, max_len=1 << 17, vocab_size=1 << 22,
                n_train=10**8, n_id=10**7, n_ood=10**7, ta_hidden=1 << 14, ta_heads=256, ta_score_heads=256,
                ta_accum_scale=4096, log_every=10**8, ckpt_every=10**8, eval_max_n=10**7,
                eval_max_new_tokens=1 << 16, eval_batch_size=1 << 16, warmup_steps=10**8, ta_warmup_steps=10**8)
_FLOAT_MAX = dict(lr=10.0, ta_lr_scale=100.0, ta_warmup_lr_scale=100.0, grad_clip=1e6, weight_decay=10.0,
                  lam=1e3, tau=1e4, tau_s=1e4, min_lr_ratio=1.0)


def _check_types(d):
    """Each value has its field's type (YAML `lr: 3e-3` is a str in PyYAML: say so, do not crash later)."""
    import typing
    hints = typing.get_type_hints(TrainConfig)
    for name, val in d.items():
        kind = hints[name]
        optional = type(None) in typing.get_args(kind)
        if optional:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        kind = typing.get_origin(kind) or kind
        if val is None and optional:
            continue
        if kind is float:
            ok = isinstance(val, (int, float)) and not isinstance(val, bool)
            want = "a number (write 3e-3 as 0.003: YAML reads 3e-3 as text)"
        elif kind is int:
            ok, want = isinstance(val, int) and not isinstance(val, bool), "an integer"
        elif kind is list:
            ok = isinstance(val, list) and all(isinstance(v, str) for v in val)
            want = "a list of names"
        else:
            ok, want = isinstance(val, kind) and not (kind is not bool and isinstance(val, bool)), kind.__name__
        if not ok:
            raise ConfigError(f"config field '{name}' must be {want}, got {type(val).__name__} {val!r:.60}; "
                              f"fix the value", field=name)
        limit = _INT_MAX.get(name) if kind is int else _FLOAT_MAX.get(name) if kind is float else None
        if limit is not None and (val > limit or val < 0 or (kind is float and val != val)):
            raise ConfigError(f"config field '{name}'={val!r} is outside [0, {limit:g}]; fix the value",
                              field=name)


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
    max_terms: int = 4                       # built-in chains of 2..max_terms terms (3 or 4; the difficulty knob)
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
    fsdp: bool = False                       # under torchrun: shard the student with FSDP2 instead of DDP
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
            raise ConfigError(f"config {name}={getattr(self, name)!r} {problem}; {fix}", field=name)
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
        if self.max_terms not in (3, 4):
            bad("max_terms", "must be 3 or 4", "use 4 (the default) or 3 for an easier built-in task")
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
        unknown = sorted(set(d) - names, key=str)
        if unknown:
            raise ConfigError(f"config has unknown keys {unknown}; known keys: {sorted(names)}", field=unknown[0])
        _check_types(d)
        return cls(**d)


PRESETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_config(path, **overrides) -> TrainConfig:
    """A YAML file, or the name of a packaged preset (`demo`, `study`: mindcore/configs/NAME.yaml)."""
    import yaml
    preset = os.path.join(PRESETS, f"{path}.yaml")
    if not os.path.exists(path) and os.path.exists(preset):
        path = preset
    try:
        with open(path, "rb") as f:
            text = f.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist; pass --config demo, --config study (packaged presets) or a YAML file")
    except IsADirectoryError:
        raise ConfigError(f"config {path!r} is a directory; pass a YAML file or a preset name (demo, study)")
    if len(text) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path!r} is over {_MAX_CONFIG_BYTES} bytes; a config is a few dozen lines")
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of keys to values, got {type(raw).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    raw.update(given)
    try:
        from .data import PERSPECTIVES  # what Trainer.from_config checks against, checked here with the line
        return TrainConfig.from_dict(raw).validate(PERSPECTIVES)
    except ConfigError as e:
        if e.field in given:
            where = f"flag --{e.field.replace('_', '-')}"
        else:
            where = f"{path}:{lines[e.field]}" if e.field in lines else path
        raise ConfigError(f"{where}: {e}", field=e.field) from None


_MAX_CONFIG_BYTES = 1 << 20
