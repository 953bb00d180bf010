"""Run configuration of `frsengine search` and `frsengine train`: YAML files, checked key by key.

A config file holds sections (``model``, ``data``, ``loss``, ``optim``, ``arch``, ``schedule``,
``val``, ``output``) and a ``seed``; every key missing from the file takes the default below (the
paper's Sec. 4.2 values where it gives them, the authors' code where it is silent). Command-line
overrides are ``section.key=value`` with the value read as YAML (``schedule.epochs=3``,
``data.limit=null``). An unknown section or key, or a value of the wrong type, is an error that
names it and lists what is known.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frsengine.errors import FrsError


class ConfigError(FrsError):
    """A run configuration that cannot be used as written."""


@dataclass
class ModelConfig:
    network: str = "frsnet"            # 'frsnet' / 'mfpsnet'
    preset: str = "default"            # channel sizes (frsengine.models presets)
    genotype: str | None = None        # retrain: the searched architecture (JSON)
    fused: str = "auto"                # search's fused path: auto (= keep)/keep/recompute/checkpoint/balanced/off
    ranking: str = "strongest"         # search: edge ranking when decoding ('strongest_non_skip': authors)
    precision: str = "fp32"            # 'fp32' / 'bf16': forward passes and loss under bf16 autocast
    # MFPSNet: the prior network (frsengine priors train / build): student checkpoint + dictionary.
    prior_student: str | None = None
    prior_dictionary: str | None = None


@dataclass
class DataConfig:
    root: str = "../shared/data/faces-hq/utkface-aligned"
    list: str | None = None            # list file of names under root (e.g. splits/utkface-train.txt)
    limit: int | None = None           # use the first N faces of a seeded shuffle of the list
    size: int = 128
    degradation: str = "paper"         # degradation preset ('paper', 'reference')
    overrides: dict = field(default_factory=dict)  # degradation preset overrides ({'noise.sigma': [5, 10]})
    backend: str = "torch"             # degradation backend ('torch', 'opencv', 'dali')
    workers: int = 0
    disentangle: bool = True           # Sec. 3.1.2: full + single degradations of the same faces per batch
    arch_fraction: float = 0.5         # search: share of the faces in D_B (architecture); the rest is D_A


@dataclass
class LossConfig:
    l1: float = 1.0
    perceptual: float = 0.001          # lambda_per of Eq. 9 (used only with vgg_weights)
    vgg_weights: str | None = None     # VGG-19 weights (safetensors, torchvision names); none: term off
    vgg_layer: str = "conv5_4"


@dataclass
class OptimConfig:
    """Network weights. Search (paper): SGD momentum 0.9, cosine 0.025 -> 0.001. Retrain (authors'
    code; the paper is silent): Adam 1e-3, weight decay 1e-3; cosine to lr_min."""

    name: str = "sgd"                  # 'sgd' / 'adam'
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0


@dataclass
class ArchConfig:
    """alpha / beta of the search (paper): Adam lr 1e-4, weight decay 1e-3, frozen for 10 epochs."""

    lr: float = 1e-4
    weight_decay: float = 1e-3
    betas: tuple = (0.5, 0.999)
    start_epoch: int = 10
    # The architecture step's forward pass: 'model' follows model.precision; 'fp32' keeps alpha/beta
    # steps in float32 under a bf16 model.precision (see docs/training.md, Mixed precision).
    precision: str = "model"

    def resolved_precision(self, model_precision: str) -> str:
        return model_precision if self.precision == "model" else self.precision


@dataclass
class ScheduleConfig:
    epochs: int = 50
    batch_size: int = 4                # faces per step and rank (x5 images with disentangle)
    micro_batches: int = 1             # split each step's batch, accumulating gradients (less memory)
    cuda_graph: bool = False           # search: replay weight + alpha/beta steps as one CUDA graph (CUDA, 1 process)
    max_steps: int | None = None       # stop after this many steps in all (None: every epoch)
    prior_start_epoch: int = 50        # retrain MFPSNet: priors switched in after this many epochs


@dataclass
class ValConfig:
    list: str | None = None            # list file under data.root; None: no validation
    limit: int | None = 64
    seed: int = 1234
    batch_size: int = 16
    every: int = 1                     # epochs


@dataclass
class OutputConfig:
    dir: str = "runs/run"
    checkpoint_every: int = 500        # steps; also at every epoch end and on SIGINT/SIGTERM
    keep: int = 2                      # step checkpoints kept besides last/best
    log_every: int = 10                # steps between TensorBoard scalars
    image_every: int = 500             # steps between image grids (0: off)
    tensorboard: bool = True
    progress: bool = True


@dataclass
class RunConfig:
    kind: str = "search"               # 'search' / 'train'
    seed: int = 0
    device: str = "auto"               # 'auto' (CUDA when present), 'cpu', 'cuda'
    threads: int | None = None         # torch CPU threads (None: torch's default). On a CPU shared with
                                       # other jobs use 1: spinning threads on a busy core cost up to 15x
    deterministic: bool = True         # torch deterministic algorithms (bit-exact resume on CPU)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    val: ValConfig = field(default_factory=ValConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_config(kind: str) -> RunConfig:
    """The defaults of a search or a retrain run (they differ in the weights' optimiser: retraining
    uses the authors' Adam 1e-3, weight decay 1e-3, cosine to 1e-6, no clipping)."""
    if kind not in ("search", "train"):
        raise ConfigError(f"kind must be 'search' or 'train', got {kind!r}")
    cfg = RunConfig(kind=kind)
    if kind == "train":
        cfg.optim = OptimConfig(name="adam", lr=1e-3, lr_min=1e-6, weight_decay=1e-3, grad_clip=None)
    return cfg


CHOICES = {
    ("", "kind"): ("search", "train"),
    ("model", "network"): ("frsnet", "mfpsnet"),
    ("model", "fused"): ("auto", "keep", "recompute", "checkpoint", "balanced", "off"),
    ("model", "ranking"): ("strongest", "strongest_non_skip"),
    ("model", "precision"): ("fp32", "bf16"),
    ("arch", "precision"): ("model", "fp32", "bf16"),
    ("data", "backend"): ("torch", "opencv", "dali"),
    ("optim", "name"): ("sgd", "adam"),
}


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _check_type(value, opt, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {hint}, got {value!r}")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _apply(obj: Any, values: dict, prefix: str, source: str) -> None:
    hints = typing.get_type_hints(type(obj))
    known = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown key '{where}' in {source} (known{' in ' + prefix[:-1] if prefix else ''}: "
                              f"{', '.join(known)})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}' in {source} must be a section (mapping), got {value!r}")
            _apply(current, value, where + ".", source)
            continue
        if value is False and "off" in CHOICES.get((prefix[:-1], key), ()):
            value = "off"   # YAML 1.1 reads a bare `off` as false
        value = _check_type(value, hints[key], f"'{where}' in {source}")
        choices = CHOICES.get((prefix[:-1], key))
        if choices and value not in choices:
            raise ConfigError(f"'{where}' in {source} must be one of {', '.join(choices)}, got {value!r}")
        setattr(obj, key, value)


def _yaml():
    try:
        import yaml
    except ImportError:
        from frsengine.errors import MissingDependencyError
        raise MissingDependencyError("PyYAML", "reading run configs") from None
    return yaml


def parse_overrides(items: list[str]) -> dict:
    """``['optim.lr=0.01', 'schedule.epochs=2']`` -> nested dict (values parsed as YAML)."""
    yaml = _yaml()
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            hint = " — a config file goes after --config" if item.endswith((".yaml", ".yml")) else ""
            raise ConfigError(f"override '{item}' is not KEY=VALUE (e.g. schedule.epochs=3){hint}")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return out


def load_config(path: str | os.PathLike | None, overrides: list[str] | dict | None = None,
                kind: str | None = None, base: dict | None = None) -> RunConfig:
    """The config of file ``path`` (or of the mapping ``base``, e.g. a checkpoint's, or the defaults)
    with ``overrides`` applied, checked. Relative paths are taken relative to the current directory."""
    values: dict = dict(base or {})
    source = "the checkpoint's config"
    if path is not None:
        source = f"config '{path}'"
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config '{path}' ({exc.strerror}): check the path") from None
        yaml = _yaml()
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config '{path}' must be a mapping of sections, got {type(values).__name__}")
    cfg = default_config(values.get("kind", kind or "search"))
    if values:
        _apply(cfg, values, "", source)
    if overrides:
        _apply(cfg, parse_overrides(overrides) if isinstance(overrides, list) else overrides, "", "overrides")
    if kind is not None and cfg.kind != kind:
        raise ConfigError(f"this is a '{cfg.kind}' config; use `frsengine {'search' if cfg.kind == 'search' else 'train'}` "
                          f"with it, or set kind: {kind}")
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Cross-field checks (one line each)."""
    if cfg.schedule.epochs < 1 or cfg.schedule.batch_size < 1:
        raise ConfigError("schedule.epochs and schedule.batch_size must be >= 1")
    if cfg.schedule.micro_batches < 1 or cfg.schedule.batch_size % cfg.schedule.micro_batches:
        raise ConfigError(f"schedule.micro_batches ({cfg.schedule.micro_batches}) must divide schedule.batch_size "
                          f"({cfg.schedule.batch_size})")
    if not 0.0 < cfg.data.arch_fraction < 1.0:
        raise ConfigError(f"data.arch_fraction must be in (0, 1), got {cfg.data.arch_fraction}")
    if cfg.kind == "train" and cfg.schedule.cuda_graph:
        raise ConfigError("schedule.cuda_graph is for search runs (frsengine search); set it to false here")
    if cfg.kind == "train" and not cfg.model.genotype:
        raise ConfigError("retraining needs model.genotype (the JSON file `frsengine search` wrote): "
                          "pass --genotype FILE or set it in the config")
    if cfg.model.network == "mfpsnet" and not (cfg.model.prior_student and cfg.model.prior_dictionary):
        raise ConfigError("MFPSNet needs its prior network: set model.prior_student and model.prior_dictionary "
                          "(files from `frsengine priors train` / `frsengine priors build`)")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads must be >= 1 or null, got {cfg.threads}")
    if cfg.output.checkpoint_every < 1 or cfg.output.log_every < 1:
        raise ConfigError("output.checkpoint_every and output.log_every must be >= 1")


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two config dicts (``section.key``)."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, f"{prefix}{k}.")
        elif va != vb and not (isinstance(va, (list, tuple)) and isinstance(vb, (list, tuple)) and list(va) == list(vb)):
            out.append(f"{prefix}{k}")
    return out
