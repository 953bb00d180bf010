"""Face data: a dataset over an image folder, a loader that yields degraded batches, and a
fixed, reproducible evaluation set written to disk.

    from frsengine.data import FaceFolder, DegradedLoader
    from frsengine.degrade import Degrader
    loader = DegradedLoader(FaceFolder("faces/", 128), Degrader("paper", "torch"),
                            batch_size=32, seed=0, num_workers=2)
    for epoch in range(n):
        loader.set_epoch(epoch)
        for hq, lq_full, lq_singles, params in loader: ...
"""
from frsengine.data.evalset import EvalSetSummary, build_eval_set, output_dirs, output_names
from frsengine.data.folder import DegradedLoader, FaceFolder, read_list_file, resolve_files

__all__ = [
    "DegradedLoader", "EvalSetSummary", "FaceFolder", "build_eval_set", "output_dirs",
    "output_names", "read_list_file", "resolve_files",
]
