"""`frsengine priors`: build the teacher cache and component dictionary, train the student prior
network, evaluate it against dlib on degraded faces, and draw the priors of one face.

Only argparse is imported at module level (see cli/degrade.py)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """\
Facial priors that work offline (docs/priors.md):

  build   dlib 68-point teacher on every HQ face (cached per image in OUT's .teacher.npz,
          resumable) and the component dictionary (k-means atoms, safetensors) at --out
  train   the student prior network (parsing + landmark heatmaps) on the teacher's labels,
          with on-the-fly degradation; resumable safetensors checkpoint
  eval    student vs dlib on held-out faces at LQ severities none/moderate/full:
          landmark NME, parsing mIoU, dlib failure rate, faces/s
  show    an overlay picture of one face's priors (parsing, heatmaps, boxes, dictionary)"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("priors", help="facial priors: teacher cache, dictionary, student network, overlays",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="priors_command", metavar="ACTION")
    p.set_defaults(run=lambda args: (p.print_help(), 2)[1])

    b = sub.add_parser("build", help="teacher landmarks (cached, resumable) + component dictionary",
                       description="Run the dlib teacher over the faces of DIR (each face cached in the "
                                   "teacher .npz, so an interrupted run resumes), then build the component "
                                   "dictionary from the faces it labelled.",
                       epilog="example: frsengine priors build --data faces/ --list train.txt --limit 6000 "
                              "--out /tmp/frs_priors/dict.safetensors")
    b.add_argument("--data", required=True, type=Path, metavar="DIR", help="folder of aligned HQ face images")
    b.add_argument("--out", required=True, type=Path, metavar="FILE", help="dictionary file to write (.safetensors)")
    b.add_argument("--cache", type=Path, metavar="FILE", help="teacher cache (default: OUT with .teacher.npz)")
    b.add_argument("--list", dest="list_file", type=Path, metavar="FILE", help="names relative to DIR, one per line")
    b.add_argument("--limit", type=int, metavar="N", help="use a fixed seeded subset of N faces")
    b.add_argument("--size", type=int, default=128, help="working face size in pixels (default: 128)")
    b.add_argument("--atoms", type=int, default=64, metavar="K", help="k-means atoms per component (default: 64)")
    b.add_argument("--channels", type=int, default=64, help="dictionary feature channels (default: 64)")
    b.add_argument("--crop", type=int, default=32, help="component crop side in pixels, a multiple of 4 (default: 32)")
    b.add_argument("--temperature", type=float, default=0.05, help="lookup softmax temperature (default: 0.05)")
    b.add_argument("--seed", type=int, default=0, help="seed of the subset, encoder and k-means (default: 0)")
    b.add_argument("--save-every", type=int, default=500, metavar="N", help="save the teacher cache every N faces")
    b.add_argument("--no-dictionary", action="store_true", help="only run the teacher")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(run=run_build)

    t = sub.add_parser("train", help="train the student prior network (resumable)",
                       description="Train the student on the teacher cache's labels with on-the-fly "
                                   "degradation. Re-running with the same settings resumes from --out.",
                       epilog="example: frsengine priors train --data faces/ --cache /tmp/frs_priors/dict.teacher.npz "
                              "--out /tmp/frs_priors/student.safetensors --steps 1500 --threads 1")
    t.add_argument("--data", required=True, type=Path, metavar="DIR", help="folder the teacher cache was built from")
    t.add_argument("--cache", required=True, type=Path, metavar="FILE", help="teacher cache (.teacher.npz)")
    t.add_argument("--out", required=True, type=Path, metavar="FILE", help="checkpoint to write/resume (.safetensors)")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--clean-fraction", type=float, default=0.2, help="share of each batch left undegraded")
    t.add_argument("--sigma", type=float, default=2.0, help="heatmap Gaussian std in pixels (default: 2)")
    t.add_argument("--preset", default="paper", help="degradation preset (default: paper)")
    t.add_argument("--widths", default="24,40,80,128", help="channels at 1/2,1/4,1/8,1/16 (default: 24,40,80,128)")
    t.add_argument("--limit", type=int, metavar="N", help="train on the first N labelled faces")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=100, metavar="STEPS")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(run=run_train)

    e = sub.add_parser("eval", help="student vs dlib on held-out faces at several LQ severities",
                       description="Teacher = dlib on the HQ face. For each severity, the student and dlib "
                                   "run on the same degraded faces; NME (inter-ocular, outer eye corners), "
                                   "parsing mIoU against the teacher's maps, dlib's failure rate, faces/s.")
    e.add_argument("--data", required=True, type=Path, metavar="DIR")
    e.add_argument("--student", required=True, type=Path, metavar="FILE", help="student checkpoint")
    e.add_argument("--list", dest="list_file", type=Path, metavar="FILE", help="held-out names (e.g. splits/utkface-val.txt)")
    e.add_argument("--limit", type=int, metavar="N", help="first N faces of the list")
    e.add_argument("--severities", default="none,moderate,full", help="comma list of none, moderate, full")
    e.add_argument("--seed", type=int, default=1234, help="degradation seed (default: 1234)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--throughput-faces", type=int, default=256, metavar="N",
                   help="time student vs dlib in 5 alternating rounds on N faces of the last severity (0: skip)")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    e.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(run=run_eval)

    s = sub.add_parser("show", help="draw one face's priors as a PNG",
                       description="Panels: the face, the teacher's parsing + component boxes, its heatmaps "
                                   "and landmarks, the student's (with --student), and the dictionary's "
                                   "nearest atoms pasted at the boxes (with --dictionary).")
    s.add_argument("image", type=Path, metavar="IMAGE", help="an aligned face image")
    s.add_argument("-o", "--output", required=True, type=Path, metavar="PNG")
    s.add_argument("--student", type=Path, metavar="FILE", help="student checkpoint")
    s.add_argument("--dictionary", type=Path, metavar="FILE", help="dictionary file")
    s.add_argument("--degrade", choices=("none", "moderate", "full"), default="none",
                   help="degrade the face first (the teacher still sees the HQ face)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", type=int, default=2, help="panel magnification (default: 2)")
    s.set_defaults(run=run_show)
    return p


def _names(data: Path, list_file: Path | None) -> list[str]:
    from frsengine.data.folder import resolve_files
    from frsengine.priors.build import relative_names

    return relative_names(data, resolve_files(data, list_file))


def _threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


def run_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from frsengine.errors import FrsError
    from frsengine.priors.build import build_dictionary_file, default_cache_path, run_teacher, sample_names
    from frsengine.priors.dictionary import DictionaryConfig
    from frsengine.priors.rasterize import COMPONENTS

    if args.crop % 4 or args.crop < 8:
        raise FrsError(f"--crop must be a multiple of 4 and at least 8, got {args.crop}")
    if args.limit is not None and args.limit < 1:
        raise FrsError("--limit must be at least 1")
    if args.out.suffix != ".safetensors":
        raise FrsError(f"--out '{args.out}' must end in .safetensors")
    names = sample_names(_names(args.data, args.list_file), args.limit, args.seed)
    cache_path = args.cache or default_cache_path(args.out)
    cache, summary = run_teacher(args.data, names, cache_path, args.size, args.save_every, not args.quiet,
                                 report=lambda m: tqdm.write(m, file=sys.stderr))
    counts = cache.counts()
    print(f"teacher: {summary.total} faces ({summary.done_before} cached before, {summary.labelled} new, "
          f"{len(summary.unreadable)} unreadable) in {summary.seconds:.1f} s; cache {cache_path}: "
          f"{counts['hog']} detected, {counts['fallback']} fallback box, {counts['none']} no landmarks")
    if args.no_dictionary:
        return 0
    config = DictionaryConfig(channels=args.channels, crop=args.crop, atoms=args.atoms,
                              temperature=args.temperature, seed=args.seed)
    path = build_dictionary_file(args.data, cache, args.out, config, progress=not args.quiet)
    print(f"dictionary: {path} ({args.atoms} atoms x {len(COMPONENTS)} components, "
          f"{args.channels} channels)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from frsengine.errors import FrsError
    from frsengine.priors.build import load_faces
    from frsengine.priors.landmarks import TeacherCache
    from frsengine.priors.student import StudentConfig, StudentPriorNet, count_parameters
    from frsengine.priors.train import TrainConfig, train_student

    _threads(args.threads)
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise FrsError(f"--device must be cpu or cuda, got '{args.device}'")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FrsError("--device cuda: no CUDA device is visible to torch here; use --device cpu")
    try:
        widths = tuple(int(v) for v in args.widths.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 4 or min(widths) < 2:
        raise FrsError(f"--widths needs 4 comma-separated channel counts >= 2, got '{args.widths}'")
    cache = TeacherCache.load(args.cache)
    names, points = cache.usable()
    if args.limit is not None:
        names, points = names[:args.limit], points[:args.limit]
    if not names:
        raise FrsError(f"teacher cache '{args.cache}' has no labelled faces: run `frsengine priors build` on more faces")
    faces = load_faces(args.data, names, cache.size, progress=not args.quiet)
    student = StudentConfig(widths=widths, size=cache.size)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, clean_fraction=args.clean_fraction,
                      sigma=args.sigma, preset=args.preset, seed=args.seed, checkpoint_every=args.checkpoint_every)
    print(f"student: {count_parameters(StudentPriorNet(student)):,} parameters; {len(names)} faces")
    path = train_student(faces, points, args.out, cfg, student, {"cache": str(args.cache), "faces": len(names)},
                         progress=not args.quiet, report=lambda m: tqdm.write(m, file=sys.stderr),
                         device=args.device)
    print(f"checkpoint: {path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from frsengine.errors import FrsError
    from frsengine.priors.evaluate import SEVERITIES, evaluate, format_table
    from frsengine.priors.train import load_checkpoint

    _threads(args.threads)
    severities = [s.strip() for s in args.severities.split(",") if s.strip()]
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise FrsError(f"--severities: unknown {bad or severities}; choose from {', '.join(SEVERITIES)}")
    names = _names(args.data, args.list_file)
    if args.limit is not None:
        names = names[:args.limit]
    model, meta, _ = load_checkpoint(args.student)
    result = evaluate(args.data, names, model, severities, seed=args.seed, batch_size=args.batch_size,
                      progress=not args.quiet, throughput_faces=max(args.throughput_faces, 0))
    print(format_table(result))
    if args.json:
        from frsengine.io.images import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps(result, indent=1).encode())
        print(f"figures: {args.json}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from frsengine.priors.viz import show

    path, notes = show(args.image, args.output, student=args.student, dictionary=args.dictionary,
                       severity=args.degrade, seed=args.seed, scale=args.scale)
    for note in notes:
        print(note, file=sys.stderr)
    print(f"overlay: {path}")
    return 0
