"""Interleaved timing: one call of every case per round, so that all cases of a comparison see
the same background load (steadier ratios on a shared machine than timing them one after another)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(runs: dict[str, Callable[[], object]], rounds: int, budget_s: float | None = None) -> dict:
    """``{case: {"times": [...], "seconds": median, "rounds": n}}`` after ``rounds`` rounds, or fewer
    (at least one) once ``budget_s`` seconds of rounds have passed. Each ``run`` must wait for
    its work to finish (synchronise CUDA)."""
    times: dict[str, list[float]] = {case: [] for case in runs}
    start = time.perf_counter()
    for _ in range(rounds):
        for case, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[case].append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return {case: {"times": t, "seconds": statistics.median(t), "rounds": len(t)} for case, t in times.items()}
