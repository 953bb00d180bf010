"""Model packages: a derived network's genotype, weights and metadata, loadable without pickle.

A package is a folder::

    MODEL/model.json            metadata (format, version, network, preset, input size, notes, hashes)
    MODEL/genotype.json         the genotype (frsengine.nas.genotype schema)
    MODEL/weights.safetensors   the state dict (float32), BatchNorm folded or not (``bn_folded``)

or a single ``.safetensors`` file whose header metadata holds ``model.json`` and ``genotype.json``
under the keys ``frsengine.model`` / ``frsengine.genotype``. :func:`load_package` checks everything
(format and version, missing files, hashes, genotype vs weights tensor names and shapes) and
raises :class:`PackageError`, one line that says what is wrong and how to fix it.

Hashes identify what an engine was built from (``frsengine.export.tensorrt`` keys its cache on them):
``genotype_hash`` is the SHA-256 of the genotype's canonical JSON (key order and whitespace do not
matter), ``weights_hash`` the SHA-256 of every tensor's name, dtype, shape and bytes in name order
(the container does not matter).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from frsengine.errors import FrsError
from frsengine.io import write_bytes_atomic
from frsengine.nas.genotype import Genotype, GenotypeError, genotype_from_dict

FORMAT = "frsengine.model"
VERSION = 1
META_FILE, GENOTYPE_FILE, WEIGHTS_FILE = "model.json", "genotype.json", "weights.safetensors"
_META_KEY, _GENOTYPE_KEY = "frsengine.model", "frsengine.genotype"
ENV_DEFAULT_MODEL = "FRSENGINE_MODEL"


class PackageError(FrsError):
    """A model package is missing, malformed or inconsistent."""


def genotype_hash(genotype: Genotype) -> str:
    """SHA-256 of the genotype's canonical JSON (``meta`` included: it records provenance)."""
    text = json.dumps(genotype.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class ModelPackage:
    """A loaded, validated package: build the network with :meth:`build`."""

    path: Path
    genotype: Genotype
    meta: dict[str, Any]
    state: dict[str, torch.Tensor] = field(repr=False)

    @property
    def network(self) -> str:
        return self.genotype.network

    @property
    def preset(self) -> str:
        return self.meta["preset"]

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self.meta["input_size"]
        return int(h), int(w)

    @property
    def genotype_hash(self) -> str:
        return self.meta["genotype_sha256"]

    @property
    def weights_hash(self) -> str:
        return self.meta["weights_sha256"]

    def build(self, fold: bool = True) -> nn.Module:
        """The network with the package's weights, in eval mode on the CPU (BatchNorm folded
        into the convolutions when ``fold``, which inference wants)."""
        model = _empty_network(self.genotype, self.preset, self.meta.get("bn_folded", False))
        model.load_state_dict(self.state, strict=True)
        if fold:
            from frsengine.models import fold_bn

            fold_bn(model)
        return model.eval()

    def describe(self) -> str:
        h, w = self.input_size
        return (f"{self.network} ({self.preset} preset, {h}x{w}) from {self.path} "
                f"[genotype {self.genotype_hash[:12]}, weights {self.weights_hash[:12]}]")


def _empty_network(genotype: Genotype, preset: str, folded: bool) -> nn.Module:
    from frsengine.models import build_derived, fold_bn

    try:
        model = build_derived(genotype, preset)
    except KeyError as exc:  # unknown preset
        raise PackageError(f"cannot build the network: {exc.args[0]}") from None
    return fold_bn(model) if folded else model


def save_package(model: nn.Module, path: str | os.PathLike, *, preset: str, input_size: int | tuple[int, int] = 128,
                 training_data: str = "", note: str = "", face_template=None, overwrite: bool = False) -> Path:
    """Write ``model`` (a derived FRSNet/MFPSNet built with ``preset``) as a package at ``path``:
    a folder, or one file when ``path`` ends in ``.safetensors``. ``training_data`` says what the
    weights were trained on ("untrained (random initialisation)" for fresh networks).
    ``face_template``: the 5 alignment points (eye centres, nose tip, mouth corners; x, y in
    input-size pixels) of the training crops, for whole-image restoration; default: FFHQ's, scaled."""
    from safetensors.torch import save

    genotype = getattr(model, "genotype", None)
    if not isinstance(genotype, Genotype):
        raise PackageError(f"save_package needs a derived network with a .genotype (from "
                           f"frsengine.models.build_derived), got {type(model).__name__}")
    folded = not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    reference = _empty_network(genotype, preset, folded)
    if reference.cfg != model.cfg:
        raise PackageError(f"the model was not built with preset {preset!r} (its sizes differ): pass the "
                           "preset it was built with")
    _check_weights(reference, state, "the model")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    meta = {
        "format": FORMAT, "version": VERSION, "network": genotype.network, "preset": preset,
        "input_size": list(size), "channels": model.cfg.in_channels, "value_range": [0.0, 1.0],
        "bn_folded": folded, "training_data": training_data or "not stated", "note": note,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "frsengine_version": _version(), "genotype_sha256": genotype_hash(genotype),
        "weights_sha256": weights_hash(state),
    }
    if face_template is not None:
        points = [[float(v) for v in p] for p in face_template]
        if len(points) != 5 or any(len(p) != 2 for p in points):
            raise PackageError("face_template must be 5 (x, y) points: eye centres, nose tip, mouth corners")
        meta["face_template"] = points
    if genotype.network == "mfpsnet":
        meta["priors"] = [{"name": p.name, "channels": p.channels, "mode": p.mode} for p in model.cfg.priors]
        meta["passes"] = model.cfg.passes
    path = Path(path)
    if path.exists() and not overwrite:
        raise PackageError(f"{path} already exists: pass overwrite=True or choose another path")
    if path.suffix == ".safetensors":
        data = save(state, metadata={_META_KEY: json.dumps(meta), _GENOTYPE_KEY: genotype.to_json()})
        return write_bytes_atomic(path, data)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_bytes_atomic(tmp / GENOTYPE_FILE, genotype.to_json().encode())
        write_bytes_atomic(tmp / WEIGHTS_FILE, save(state))
        write_bytes_atomic(tmp / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_package(path: str | os.PathLike | None) -> ModelPackage:
    """Read and validate a package (folder or ``.safetensors`` file). ``None`` uses the
    ``FRSENGINE_MODEL`` environment variable; there is no built-in default model yet."""
    if path is None:
        path = os.environ.get(ENV_DEFAULT_MODEL)
        if not path:
            raise PackageError(
                "no model given and no default model is installed yet: pass model='path/to/package' (a "
                f"folder or .safetensors file written by frsengine.export.save_package) or set {ENV_DEFAULT_MODEL}")
    path = Path(path)
    if not path.exists():
        raise PackageError(f"{path}: no such model package: check the path")
    if path.is_dir():
        meta, genotype_dict, state = _read_folder(path)
    else:
        meta, genotype_dict, state = _read_file(path)
    _check_meta(path, meta)
    try:
        genotype = genotype_from_dict(genotype_dict, f"{path}: genotype")
    except GenotypeError as exc:
        raise PackageError(str(exc)) from None
    if genotype.network != meta["network"]:
        raise PackageError(f"{path}: metadata says network {meta['network']!r} but the genotype is "
                           f"{genotype.network!r}: re-create the package")
    if genotype_hash(genotype) != meta["genotype_sha256"]:
        raise PackageError(f"{path}: genotype hash does not match {META_FILE} (genotype edited after the package "
                           "was made?): re-create the package with save_package")
    if weights_hash(state) != meta["weights_sha256"]:
        raise PackageError(f"{path}: weights hash does not match {META_FILE} (weights changed or corrupt): "
                           "re-create the package with save_package")
    reference = _empty_network(genotype, meta["preset"], bool(meta.get("bn_folded", False)))
    _check_weights(reference, state, f"{path}: weights")
    return ModelPackage(path, genotype, meta, state)


def package_from_files(genotype_path: str | os.PathLike, weights_path: str | os.PathLike, preset: str = "default",
                       input_size: int = 128) -> ModelPackage:
    """An in-memory package from a genotype JSON file and a plain safetensors state dict (the
    ``--genotype G --weights W`` form of ``frsengine build-engine``), validated like a package."""
    from frsengine.nas.genotype import load_genotype

    try:
        genotype = load_genotype(genotype_path)
    except GenotypeError as exc:
        raise PackageError(str(exc)) from None
    state, _ = _load_tensors(Path(weights_path))
    folded = not any(k.endswith("running_mean") for k in state)
    reference = _empty_network(genotype, preset, folded)
    _check_weights(reference, state, f"{weights_path}")
    meta = {"format": FORMAT, "version": VERSION, "network": genotype.network, "preset": preset,
            "input_size": [input_size, input_size], "bn_folded": folded,
            "genotype_sha256": genotype_hash(genotype), "weights_sha256": weights_hash(state)}
    _check_meta(Path(weights_path), meta)
    return ModelPackage(Path(weights_path), genotype, meta, state)


def _version() -> str:
    from frsengine import __version__

    return __version__


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise PackageError(f"{path.parent}: missing {path.name}: not a complete model package (it needs "
                           f"{META_FILE}, {GENOTYPE_FILE} and {WEIGHTS_FILE})")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path}: cannot read ({exc}): check the file") from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}): re-create the package") from None


def _read_folder(path: Path):
    meta = _read_json(path / META_FILE)
    genotype = _read_json(path / GENOTYPE_FILE)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise PackageError(f"{path}: missing {WEIGHTS_FILE}: not a complete model package")
    return meta, genotype, _load_tensors(weights)[0]


def _read_file(path: Path):
    state, header = _load_tensors(path)
    try:
        meta, genotype = json.loads(header[_META_KEY]), json.loads(header[_GENOTYPE_KEY])
    except KeyError:
        raise PackageError(f"{path}: a safetensors file without frsengine metadata is not a model package "
                           "(it holds weights only): make one with frsengine.export.save_package") from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"{path}: package metadata is not valid JSON ({exc.msg})") from None
    return meta, genotype, state


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PackageError(f"{path}: not a readable safetensors file ({detail}): re-create or re-download "
                           "the package") from None
    return state, header


def _check_meta(path: Path, meta: Any) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PackageError(f"{path}: not an frsengine model package ({META_FILE} format "
                           f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise PackageError(f"{path}: package version {meta.get('version')!r} is not supported (this frsengine "
                           f"reads version {VERSION}): upgrade frsengine or re-create the package")
    need = ("network", "preset", "input_size", "genotype_sha256", "weights_sha256")
    missing = [k for k in need if k not in meta]
    if missing:
        raise PackageError(f"{path}: {META_FILE} lacks {', '.join(missing)}: re-create the package")
    size = meta["input_size"]
    if (not isinstance(size, list) or len(size) != 2 or not all(isinstance(s, int) and s > 0 and s % 8 == 0
                                                                   for s in size)):
        raise PackageError(f"{path}: input_size must be [H, W], multiples of 8, got {size!r}")


def _check_weights(reference: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Tensor names and shapes of ``state`` must be exactly those of ``reference``."""
    want = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    wrong = [(k, tuple(state[k].shape), want[k]) for k in sorted(set(want) & set(state))
             if tuple(state[k].shape) != want[k]]
    if not (missing or extra or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    if wrong:
        k, got, exp = wrong[0]
        parts.append(f"{len(wrong)} with the wrong shape (e.g. {k}: {list(got)}, the genotype needs {list(exp)})")
    raise PackageError(f"{what} do not match the genotype and preset: {'; '.join(parts)}: the weights were "
                       "trained for another genotype or preset")
