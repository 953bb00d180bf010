"""`frsengine genotype`: show, draw, measure and decode genotypes (searched architectures)."""
from __future__ import annotations

from pathlib import Path

from frsengine.errors import FrsError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("genotype", help="show, draw, measure or decode genotype files",
                              description="Inspect searched architectures (genotype JSON files).")
    sub = p.add_subparsers(dest="genotype_command", metavar="ACTION", required=True)

    show = sub.add_parser("show", help="print a genotype (and draw it to PNG)")
    show.add_argument("file", type=Path, help="genotype JSON file")
    show.add_argument("--png", type=Path, metavar="OUT", help="also draw paths and cells to this PNG")
    show.set_defaults(run=run_show)

    stats = sub.add_parser("stats", help="parameters and FLOPs of a derived network or a supernet")
    src = stats.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", type=Path, help="genotype JSON file (derived network)")
    src.add_argument("--supernet", choices=("frsnet", "mfpsnet"), help="measure a supernet instead")
    stats.add_argument("--preset", default="default", help="channel sizes preset (default, reference, small, tiny)")
    stats.add_argument("--size", type=int, default=128, help="input height = width (default 128)")
    stats.set_defaults(run=run_stats)

    dec = sub.add_parser("decode", help="decode a supernet's alpha/beta into a genotype file")
    dec.add_argument("--supernet", choices=("frsnet", "mfpsnet"), required=True)
    dec.add_argument("--preset", default="default")
    arch = dec.add_mutually_exclusive_group(required=True)
    arch.add_argument("--arch", type=Path, metavar="FILE",
                      help="safetensors file holding the supernet's *.alphas / *.betas tensors")
    arch.add_argument("--seed", type=int, help="draw alpha/beta from N(0, 1) with this seed "
                      "(an example architecture, NOT a search result)")
    dec.add_argument("--ranking", default="strongest", choices=("strongest", "strongest_non_skip"),
                     help="edge ranking rule (DARTS 'strongest' or the authors' 'strongest_non_skip')")
    dec.add_argument("--note", default="", help="text stored in the genotype's meta.note")
    dec.add_argument("-o", "--output", type=Path, required=True, help="genotype JSON to write")
    dec.set_defaults(run=run_decode)


def format_genotype(g) -> str:
    lines = [f"network: {g.network}"]
    for key, value in g.meta.items():
        lines.append(f"meta.{key}: {value}")
    for name, sp in g.spaces.items():
        word = "up" if sp.kind == "upsample" else "down"
        rates = " -> ".join(f"x{2 ** k}" for k in (0, *sp.path))
        lines.append(f"space {name} ({sp.kind}, op set {sp.op_set}, {sp.layers} layers, {sp.steps} blocks, "
                     f"concat last {sp.block_multiplier})")
        lines.append(f"  path (levels): {list(sp.path)}   {word}sampling rates: {rates}")
        for b in range(sp.steps):
            edges = ", ".join(f"{_input_name(i)} --{op}-->" for bb, i, op in sp.cell if bb == b)
            lines.append(f"  block {b}: {edges}")
    return "\n".join(lines)


def _input_name(i: int) -> str:
    return {0: "H(l-2)", 1: "H(l-1)"}.get(i, f"block {i - 2}")


def run_show(args) -> int:
    from frsengine.nas.genotype import load_genotype
    g = load_genotype(args.file)
    print(format_genotype(g))
    if args.png:
        from frsengine.nas.draw import draw_genotype
        print(f"drawn to {draw_genotype(g, args.png)}")
    return 0


def _meta_model(network: str, preset: str, genotype=None):
    import torch
    from frsengine.models import build_derived, build_supernet
    try:
        with torch.device("meta"):
            return build_derived(genotype, preset) if genotype else build_supernet(network, preset)
    except KeyError as exc:
        raise FrsError(str(exc).strip("'\"")) from None


def run_stats(args) -> int:
    from frsengine.models.stats import count_stats, example_inputs
    if args.size % 8:
        raise FrsError(f"--size must be divisible by 8, got {args.size}")
    if args.file:
        from frsengine.nas.genotype import load_genotype
        g = load_genotype(args.file)
        model, what = _meta_model(g.network, args.preset, g), f"derived {g.network} from {args.file}"
    else:
        model, what = _meta_model(args.supernet, args.preset), f"{args.supernet} supernet"
    inputs, kwargs = example_inputs(model, args.size)
    s = count_stats(model, inputs, kwargs)
    passes = f", {model.cfg.passes} passes" if model.network_name == "mfpsnet" else ""
    print(f"{what} (preset {args.preset}, {args.size}x{args.size}{passes})")
    print(f"  weights: {s.params:,} parameters ({s.params / 1e6:.2f} M)")
    if s.arch_params:
        print(f"  architecture: {s.arch_params:,} alpha/beta entries")
    print(f"  forward: {s.gflops_per_image:.2f} GFLOPs per image ({s.gmacs_per_image:.2f} GMACs; "
          f"convolutions and matmuls)")
    per_space = {name: sum(p.numel() for p in sp.parameters()) - sum(
        p.numel() for p in getattr(sp, "arch_parameters", lambda: [])())
        for name, sp in model.search_spaces().items()}
    print("  searched parts: " + ", ".join(f"{n} {c / 1e6:.2f} M" for n, c in per_space.items()))
    return 0


def _load_arch(model, path: Path) -> None:
    """Replace the supernet's alpha/beta by the same-named tensors of a safetensors file."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise FrsError(f"{path}: cannot read safetensors file ({exc})") from None
    names = [n for n, _ in model.named_parameters() if n.endswith((".alphas", ".betas"))]
    for name in names:
        if name not in tensors:
            raise FrsError(f"{path}: no tensor {name!r} (needs: {', '.join(names)})")
        owner, attr = name.rsplit(".", 1)
        module = model.get_submodule(owner)
        want = tuple(getattr(module, attr).shape)
        if tuple(tensors[name].shape) != want:
            raise FrsError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, expected {want}")
        setattr(module, attr, torch.nn.Parameter(tensors[name].float()))


def _seed_arch(model, seed: int) -> None:
    import torch
    gen = torch.Generator().manual_seed(seed)
    for sp in model.search_spaces().values():
        for attr in ("alphas", "betas"):
            shape = getattr(sp, attr).shape
            setattr(sp, attr, torch.nn.Parameter(torch.randn(shape, generator=gen)))


def run_decode(args) -> int:
    from frsengine.nas.decode import decode
    model = _meta_model(args.supernet, args.preset)   # weights stay on meta: only alpha/beta matter
    if args.arch:
        _load_arch(model, args.arch)
        meta = {"source": f"decoded from {args.arch.name}"}
    else:
        _seed_arch(model, args.seed)
        meta = {"source": f"decoded from N(0,1) alpha/beta drawn with seed {args.seed}",
                "searched": False,
                "warning": "example architecture for tests and demos, NOT the result of a search"}
    meta["supernet_preset"] = args.preset
    if args.note:
        meta["note"] = args.note
    g = decode(model, ranking=args.ranking, meta=meta)
    g.save(args.output)
    print(format_genotype(g))
    print(f"written to {args.output}")
    return 0
