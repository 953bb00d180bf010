"""frsengine.bench runs: suite names, a tiny degrade suite end to end (table + JSON, ratios against
the baseline of the same run), child processes."""
import json
import subprocess
import sys

import pytest

from frsengine.bench import runner
from frsengine.bench.child import ChildFailed, run_in_child
from frsengine.errors import FrsError


def test_suite_names():
    assert runner.parse_suites(None) == runner.SUITES
    assert runner.parse_suites("degrade, search,degrade") == ("degrade", "search")
    with pytest.raises(FrsError, match="unknown suite 'serch'.*search, degrade, inference"):
        runner.parse_suites("serch")
    with pytest.raises(FrsError, match="peak memory is a column"):
        runner.parse_suites("memory")
    with pytest.raises(FrsError, match="empty"):
        runner.parse_suites(",")


def _bench_parser():
    import argparse

    from frsengine.cli import bench

    parser = argparse.ArgumentParser(prog="frsengine")
    bench.add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_bad_suite_is_a_clear_error(capsys):
    from frsengine.bench.__main__ import main

    assert main(["--suites", "inference,gpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'gpu'" in err and "search, degrade, inference" in err
    args = _bench_parser().parse_args(["bench", "--quick", "--suites", "degrade", "--rounds", "2"])
    assert args.quick and args.suites == "degrade" and args.rounds == 2
    from frsengine.cli import COMMANDS, main as cli_main

    if "bench" in COMMANDS:  # registered by the lead in frsengine/cli/__init__.py
        assert cli_main(["bench", "--suites", "nope"]) == 2
        assert "unknown suite 'nope'" in capsys.readouterr().err


def test_plans_skip_with_reasons():
    quick = runner.plan(runner.Options(quick=True), __import__("pathlib").Path("/tmp"))
    skipped = {case: reason for g in quick for case, reason in g.skipped.items()}
    assert "compile-fp32" in skipped and "--quick" in skipped["compile-fp32"]
    assert all(g.baseline in g.cases for g in quick if g.cases)
    full = runner.plan(runner.Options(), __import__("pathlib").Path("/tmp"))
    assert any("mfpsnet (paper size)" in g.skipped for g in full)   # on a CPU: said why


def test_cuda_graph_paths_only_in_the_cuda_search_suite():
    cpu = runner.plan_search(runner.Options(quick=True))
    cuda = runner.plan_search(runner.Options(quick=True, device="cuda"))
    assert all(not c.endswith("-graph") for g in cpu for c in g.cases)
    assert all({"fused-graph", "reference-graph"} <= set(g.cases) for g in cuda if g.cases)


def test_bf16_adds_the_autocast_paths_to_the_search_suite():
    from frsengine.bench.search import make_step, precision_of, split_path

    plain = runner.plan_search(runner.Options(quick=True))
    bf16 = runner.plan_search(runner.Options(quick=True, bf16=True))
    assert all("-bf16" not in c for g in plain for c in g.cases)
    for g in (g for g in bf16 if g.cases):
        assert g.cases[:3] == ["reference", "fused", "fused-recompute"] and "fused-recompute-bf16" in g.cases
        assert [g.precision(c) for c in ("reference", "fused-bf16")] == ["fp32", "bf16"]
    assert split_path("fused-recompute-bf16w") == ("fused-recompute", True, False)
    assert precision_of("reference-bf16") == "bf16"
    with pytest.raises(ValueError, match="unknown path 'fused-fp8'"):
        make_step("frsnet-tiny", 1, "fused-fp8")


def _tiny(groups):
    for g in groups:
        g.cases = [c for c in g.cases if c in ("opencv-cpu", "torch-cpu")]
        g.payload.update(batch=4, cases=g.cases, size=32)
        g.batch = 4


def test_tiny_degrade_suite_table_and_json(tmp_path):
    lines = []
    opts = runner.Options(quick=True, suites=("degrade",), rounds=2, threads=1)
    doc = runner.run_bench(opts, out=lines.append, groups_hook=_tiny)
    table = "\n".join(lines)
    assert "opencv-cpu *" in table and "torch-cpu" in table and "faces/s" in table and "wall time" in table
    path = runner.write_json(doc, tmp_path / "bench.json")
    data = json.loads(path.read_text())
    assert data["machine"]["cpu"] and data["machine"]["peak"]["cpu"]["method"]
    rows = [r for r in data["rows"] if r["status"] == "ok"]
    assert {r["case"] for r in rows} == {"opencv-cpu", "torch-cpu"}, data["rows"]
    base = next(r for r in rows if r["is_baseline"])
    assert base["case"] == "opencv-cpu" and base["ratio"] == 1.0 and base["memory_ratio"] == 1.0
    other = next(r for r in rows if not r["is_baseline"])
    assert other["ratio"] == pytest.approx(other["faces_per_s"] / base["faces_per_s"])
    assert other["memory_ratio"] == pytest.approx(other["peak_mib"] / base["peak_mib"])
    for r in rows:
        assert r["value"] > 0 and r["unit"] == "faces/s" and r["details"]["rounds"] == 2
        assert r["peak_mib"] > 0 and r["flops_per_face"] is None and r["peak_fraction"] is None  # not meaningful
    assert data["child_start"] == "spawn"   # pytest's process has run torch ops: no fork


def test_child_failures_are_reported():
    with pytest.raises(ChildFailed, match="KeyError: .*unknown network 'nosuch'"):
        run_in_child("frsengine.bench.search:build_model", "nosuch", method="spawn", timeout=1800)
    with pytest.raises(ChildFailed, match=r"died \(exit status 3\)"):
        run_in_child("os:_exit", 3, method="spawn", timeout=1800)


def greedy_group(payload: dict) -> dict:
    """A time_group whose case "big" takes the process down (as the kernel's OOM killer would)."""
    import os
    import signal

    if "big" in payload["paths"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"paths": {p: {"seconds": 1.0, "together": len(payload["paths"])} for p in payload["paths"]},
            "flops_per_face": 7.0 if payload.get("flops", True) else None}


def test_a_case_that_kills_the_shared_child_costs_only_its_own_row():
    from frsengine.bench.child import ChildDied, run_group_in_child

    func = "tests.bench.test_bench_runner:greedy_group"
    out = run_group_in_child(func, {"paths": ["a", "big", "b"]}, "paths", timeout=1800, method="spawn")
    assert "killed by SIGKILL (out of memory?)" in out["paths"]["big"]["error"]
    for case in ("a", "b"):
        assert out["paths"][case]["seconds"] == 1.0 and out["paths"][case]["together"] == 1
        assert out["paths"][case]["alone"].startswith("timed alone: the group's shared child died")
    assert out["flops_per_face"] == 7.0
    together = run_group_in_child(func, {"paths": ["a", "b"]}, "paths", timeout=1800, method="spawn")
    assert together["paths"]["a"] == {"seconds": 1.0, "together": 2}   # no death: one child, no note
    with pytest.raises(ChildDied):
        run_group_in_child(func, {"paths": ["big"]}, "paths", timeout=1800, method="spawn")
    # the same through the runner: one failed row, ratios for the others, a note under the table
    group = runner.Group("search", "greedy", "a", ["a", "big", "b"], func, {"paths": ["a", "big", "b"]},
                         unit="s/step", flops=False)
    rows = runner.measure_group(group, runner.Options(memory=False), {}, "spawn")
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"] and rows[2]["ratio"] == 1.0
    assert "note: timed alone: the group's shared child died" in runner.format_group("greedy", rows)


def test_quick_degrade_command(tmp_path):
    """The command itself (fresh process, children forked): --quick --suites degrade."""
    out = tmp_path / "q.json"
    proc = subprocess.run([sys.executable, "-m", "frsengine.bench", "--quick", "--suites", "degrade", "--rounds", "1",
                           "--no-memory", "--json", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "opencv-cpu *" in proc.stdout and "wall time" in proc.stdout
    data = json.loads(out.read_text())
    assert data["child_start"] == "fork" and data["mode"] == "quick"
    assert any(r["is_baseline"] and r["ratio"] == 1.0 for r in data["rows"])
