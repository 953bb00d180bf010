"""`frsengine bench`: the benchmark suite (search step, degradation, inference backends, peak
memory), a table on stdout and every figure in a JSON file with the machine description.

Only argparse is imported at module level: `frsengine --help` builds every sub-command's parser.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Benchmark this machine: every figure is measured against a baseline in the same run and shown
as a ratio to it, with FLOPs per face, the achieved fraction of the machine's (estimated) peak
and peak memory. Each comparison runs in a child process (rounds interleaved), each case's
memory in another one.

suites:
  search     one search step (weight + architecture step): reference (baseline) vs fused vs
             fused-recompute vs fused-checkpoint vs fused-balanced (+ PATH-graph on a GPU),
             FRSNet/MFPSNet supernets
  degrade    degradation synthesis: opencv per image (baseline) vs torch vs DALI
  inference  restoration backends: eager fp32 NCHW (baseline) vs eager channels-last,
             torch.compile, onnxruntime, TensorRT, per batch size

--quick: tiny/small presets and few rounds (about a minute on a 2-core CPU; the wall time is
printed). Without it, paper-size models where the device can take them (the cases left out on
a CPU are listed with the reason). A case whose package or device is missing is shown as
skipped with the reason, never an error. Times on a busy machine are noisy: compare ratios
within one run."""

EPILOG = """\
examples:
  frsengine bench --quick
  frsengine bench --suites search --rounds 5 --json search.json
  frsengine bench --device cuda
docs: docs/benchmarks.md"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="benchmark search, degradation and inference (table + JSON)",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small models, few rounds: about a minute on a 2-core CPU")
    p.add_argument("--suites", default=None, metavar="LIST",
                   help="comma-separated: search,degrade,inference (default: all)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="where to write the JSON (default: ./frsengine-bench-DATE-TIME.json)")
    p.add_argument("--rounds", type=int, default=None, metavar="N",
                   help="timed rounds per case (default per suite and mode)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory children (faster)")
    p.add_argument("--bf16", action="store_true",
                   help="search suite: also time the bf16 autocast paths (reference-bf16, fused-bf16, "
                        "fused-recompute-bf16, fused-checkpoint-bf16); worth it on CPUs with AMX/AVX512-BF16 and on GPUs")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds per child process before its rows count as failed (default: 120 quick, 1800 full)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from frsengine.bench.runner import Options, default_json_path, parse_suites, run_bench, write_json
    from frsengine.errors import FrsError

    if args.rounds is not None and args.rounds < 1:
        raise FrsError("--rounds must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise FrsError("--threads must be at least 1")
    opts = Options(quick=args.quick, suites=parse_suites(args.suites), device=args.device, rounds=args.rounds,
                   threads=args.threads, memory=not args.no_memory, timeout=args.timeout, bf16=args.bf16)
    path = args.json or default_json_path()
    given = sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv else sys.argv[1:]
    command = " ".join(["frsengine", "bench", *given])
    # This process has imported torch but run no op: its measuring children may be forked from it.
    doc = run_bench(opts, out=lambda text: print(text, flush=True), command=command, allow_fork=True)
    print(f"JSON: {write_json(doc, path)}")
    return 1 if doc["rows"] and all(r["status"] == "failed" for r in doc["rows"]) else 0
