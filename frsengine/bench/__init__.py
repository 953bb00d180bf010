"""The benchmark suite behind ``frsengine bench`` (and the scripts in benchmarks/): machine
description and peak-FLOP/s estimate (:mod:`.machine`), FLOP counting (:mod:`.flops`), peak memory
(:mod:`.memory`), child processes (:mod:`.child`), and the measurements: the search step
(:mod:`.search`), degradation (:mod:`.degrade`) and inference backends (:mod:`.inference`), put
together by :mod:`.runner`. docs/benchmarks.md says what every figure means.

Importing this package imports no torch; the measuring modules do.
"""
from frsengine.bench.runner import SUITES, Options, parse_suites, run_bench, write_json

__all__ = ["SUITES", "Options", "parse_suites", "run_bench", "write_json"]
