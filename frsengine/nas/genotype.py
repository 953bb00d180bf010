"""Genotype: the searched architecture of a network, stored as a versioned JSON file.

Schema (``version`` 1)::

    {
      "format": "frsengine.genotype",
      "version": 1,
      "network": "frsnet" | "mfpsnet",
      "meta": {...},                      # free-form provenance: source, note, seed, ...
      "spaces": {
        "<name>": {                       # frsnet: "upsample"; mfpsnet: "upsample", one per prior
          "kind": "upsample" | "prior" | "fusion",     #   (e.g. "parsing"), and "fusion"
          "op_set": "default",            # registry name of the candidate ops (frsengine.nas.ops)
          "levels": 4,                    # grid levels; level k = rate 2^k (up- or downsampling)
          "block_multiplier": 3,          # last block outputs concatenated into the cell output
          "path": [1, 2, 2, 3, 3, 3],     # level of the node chosen at each layer (len = layers);
                                          #   the stem before layer 0 is at level 0
          "cell": [                       # exactly two edges per block, blocks 0..B-1
            {"block": 0, "input": 1, "op": "conv_3x3"},   # input 0 = H_{l-2}, 1 = H_{l-1},
            ...                                           #   2+j = block j
          ]
        }
      }
    }

:func:`load_genotype` validates everything and raises :class:`GenotypeError` (one line, says what
is wrong and where) for unknown ops, wrong edge counts, paths jumping two levels, version mismatch...
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frsengine.errors import FrsError
from frsengine.nas.grid import path_problem
from frsengine.nas.ops import OP_SETS
from frsengine.nas.space import SPACE_KINDS

FORMAT = "frsengine.genotype"
VERSION = 1
NETWORKS = ("frsnet", "mfpsnet")


class GenotypeError(FrsError):
    """A genotype file or object is malformed."""


class GenotypeVersionError(GenotypeError):
    """A genotype file was written for another schema version."""


@dataclass(frozen=True)
class SpaceGenotype:
    """Decoded architecture of one search space: its network path and its cell edges."""

    kind: str
    path: tuple[int, ...]
    cell: tuple[tuple[int, int, str], ...]   # (block, input, op), sorted
    block_multiplier: int = 3
    op_set: str = "default"
    levels: int = 4

    @property
    def layers(self) -> int:
        return len(self.path)

    @property
    def steps(self) -> int:
        return 1 + max(b for b, _, _ in self.cell)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "op_set": self.op_set, "levels": self.levels,
            "block_multiplier": self.block_multiplier, "path": list(self.path),
            "cell": [{"block": b, "input": i, "op": op} for b, i, op in self.cell],
        }


@dataclass
class Genotype:
    """Every searched part of one network (FRSNet or MFPSNet)."""

    network: str
    spaces: dict[str, SpaceGenotype]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "network": self.network, "meta": self.meta,
                "spaces": {name: sp.to_dict() for name, sp in self.spaces.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        validate_genotype(self)
        Path(path).write_text(self.to_json())


def _fail(where: str, msg: str, cls=GenotypeError):
    raise cls(f"{where}: {msg}")


def _expect(cond: bool, where: str, msg: str) -> None:
    if not cond:
        _fail(where, msg)


def validate_space(sp: SpaceGenotype, where: str = "space") -> None:
    """Raise GenotypeError if ``sp`` is not a buildable space genotype."""
    _expect(sp.kind in SPACE_KINDS, where, f"unknown space kind {sp.kind!r} (known: {', '.join(SPACE_KINDS)})")
    _expect(sp.op_set in OP_SETS, where, f"unknown op set {sp.op_set!r} (known: {', '.join(sorted(OP_SETS))})")
    _expect(isinstance(sp.levels, int) and sp.levels >= 2, where, f"levels must be an integer >= 2, got {sp.levels!r}")
    _expect(len(sp.path) >= 1, where, "path is empty")
    problem = path_problem(list(sp.path), sp.levels)
    _expect(problem is None, where, f"bad path {list(sp.path)}: {problem}")
    _expect(len(sp.cell) >= 2, where, "cell has no edges")
    op_set = OP_SETS[sp.op_set]
    blocks: dict[int, list[int]] = {}
    for b, i, op in sp.cell:
        _expect(isinstance(b, int) and b >= 0, where, f"block must be an integer >= 0, got {b!r}")
        _expect(isinstance(i, int) and 0 <= i < 2 + b, where,
                f"block {b}: input {i!r} out of range 0..{1 + b} (0=H_l-2, 1=H_l-1, 2+j=block j)")
        _expect(op in op_set.names and op not in op_set.zero_ops, where,
                f"block {b}: unknown op {op!r} for op set {sp.op_set!r} "
                f"(known: {', '.join(n for n in op_set.names if n not in op_set.zero_ops)})")
        blocks.setdefault(b, []).append(i)
    steps = 1 + max(blocks)
    for b in range(steps):
        inputs = blocks.get(b, [])
        _expect(len(inputs) == 2, where, f"block {b} has {len(inputs)} edges, expected exactly 2")
        _expect(inputs[0] != inputs[1], where, f"block {b} uses input {inputs[0]} twice")
    _expect(isinstance(sp.block_multiplier, int) and 1 <= sp.block_multiplier <= steps, where,
            f"block_multiplier must be in 1..{steps}, got {sp.block_multiplier!r}")


def validate_genotype(g: Genotype) -> None:
    """Raise GenotypeError if ``g`` is not a valid genotype of its network."""
    _expect(g.network in NETWORKS, "genotype", f"unknown network {g.network!r} (known: {', '.join(NETWORKS)})")
    kinds = {name: sp.kind for name, sp in g.spaces.items()}
    if g.network == "frsnet":
        _expect(kinds == {"upsample": "upsample"}, "genotype",
                f"frsnet needs exactly one space 'upsample' of kind upsample, got {kinds}")
    else:
        _expect(kinds.get("upsample") == "upsample" and kinds.get("fusion") == "fusion"
                and any(k == "prior" for k in kinds.values())
                and all(k == "prior" for n, k in kinds.items() if n not in ("upsample", "fusion")),
                "genotype", "mfpsnet needs spaces 'upsample' (upsample), 'fusion' (fusion) and at least "
                f"one prior space (kind prior), got {kinds}")
    for name, sp in g.spaces.items():
        validate_space(sp, f"space {name!r}")


def _space_from_dict(d: Any, where: str) -> SpaceGenotype:
    _expect(isinstance(d, dict), where, "must be an object")
    required = {"kind", "path", "cell"}
    missing = required - set(d)
    _expect(not missing, where, f"missing field(s) {', '.join(sorted(missing))}")
    allowed = required | {"op_set", "levels", "block_multiplier"}
    extra = set(d) - allowed
    _expect(not extra, where, f"unknown field(s) {', '.join(sorted(extra))}")
    _expect(isinstance(d["path"], list), where, "path must be a list of levels")
    _expect(isinstance(d["cell"], list), where, "cell must be a list of {block, input, op} edges")
    edges = []
    for n, e in enumerate(d["cell"]):
        _expect(isinstance(e, dict) and set(e) == {"block", "input", "op"}, where,
                f"cell edge {n} must be an object with exactly block, input, op")
        edges.append((e["block"], e["input"], e["op"]))
    _expect(all(isinstance(b, int) and isinstance(i, int) for b, i, _ in edges), where,
            "cell edge block/input must be integers")
    return SpaceGenotype(kind=d["kind"], path=tuple(d["path"]), cell=tuple(sorted(edges)),
                         block_multiplier=d.get("block_multiplier", 3), op_set=d.get("op_set", "default"),
                         levels=d.get("levels", 4))


def genotype_from_dict(d: Any, source: str = "genotype") -> Genotype:
    """Build and validate a Genotype from parsed JSON; errors name ``source``."""
    try:
        _expect(isinstance(d, dict), source, "top level must be a JSON object")
        _expect(d.get("format") == FORMAT, source, f"not a genotype file (format {d.get('format')!r}, expected {FORMAT!r})")
        if d.get("version") != VERSION:
            _fail(source, f"genotype version {d.get('version')!r} is not supported (this frsengine reads "
                          f"version {VERSION})", GenotypeVersionError)
        _expect(isinstance(d.get("spaces"), dict) and d["spaces"], source, "'spaces' must be a non-empty object")
        meta = d.get("meta", {})
        _expect(isinstance(meta, dict), source, "'meta' must be an object")
        spaces = {name: _space_from_dict(sd, f"{source}: space {name!r}") for name, sd in d["spaces"].items()}
        g = Genotype(network=d.get("network"), spaces=spaces, meta=meta)
        validate_genotype(g)
    except GenotypeError as exc:
        msg = str(exc)
        if not msg.startswith(source):
            raise type(exc)(f"{source}: {msg}") from None
        raise
    return g


def load_genotype(path: str | Path) -> Genotype:
    """Read and validate a genotype JSON file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GenotypeError(f"{path}: cannot read genotype file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenotypeError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return genotype_from_dict(data, str(path))
