"""Shared benchmark reporting: every benchmark states how many items one call handles and
whether it is its group's baseline; the summary prints items/s and the ratio to the
baseline measured in the same run, with the machine."""
from __future__ import annotations

import pytest


def machine_description() -> str:
    """One line: CPU, cores, torch threads, GPU, torch (frsengine.bench.machine)."""
    from frsengine.bench.machine import describe_machine, summary_line

    return summary_line(describe_machine())


def pytest_benchmark_update_machine_info(config, machine_info):
    from frsengine.bench.machine import describe_machine, summary_line

    details = describe_machine()
    machine_info["frsengine_machine"] = summary_line(details)
    machine_info["frsengine_machine_details"] = details


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for bench in session.benchmarks:
        groups.setdefault(bench.group or "", []).append(bench)
    tr = terminalreporter
    tr.section("throughput vs baseline (same run)")
    tr.write_line(f"machine: {machine_description()}")
    for group, benches in groups.items():
        base = next((b for b in benches if b.extra_info.get("baseline")), None)
        tr.write_line(f"\n{group}")
        for b in benches:
            items = b.extra_info.get("items", 1)
            rate = items / b.stats.median
            ratio = f"{(base.stats.median / b.stats.median):6.2f}x" if base is not None else "   n/a"
            mem = b.extra_info.get("peak_mib")
            mem_txt = f"  peak {mem:.0f} MiB" if mem is not None else ""
            tr.write_line(f"  {b.name:<55} {rate:10.1f} items/s  {ratio} vs baseline{mem_txt}")


@pytest.fixture
def report():
    """Set `items` per call and `baseline` on a benchmark: report(benchmark, items=64, baseline=True)."""
    def _report(benchmark, items: int, baseline: bool = False, **extra):
        benchmark.extra_info.update(items=items, baseline=baseline, **extra)
    return _report
