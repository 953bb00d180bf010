"""Peak-memory measurement for the benchmark scripts: kept as an import path for them; the
implementation (and its notes on glibc's mmap threshold) is frsengine.bench.memory."""
from frsengine.bench.memory import CHILD_ENV, peak_growth_mib, rss_kib, run_child  # noqa: F401
