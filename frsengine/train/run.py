"""What search and retrain share: the run folder, logging, stop signals, progress, TensorBoard,
checkpoint files and the learning-rate schedule.

Run folder layout::

    RUN/config.yaml                 the resolved config
    RUN/run.log                     the log (rank 0)
    RUN/checkpoints/last.safetensors, step-NNNNNNN.safetensors (the newest `output.keep`), best.safetensors
    RUN/tb/                         TensorBoard events
"""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from frsengine.errors import FrsError
from frsengine.io import write_bytes_atomic
from frsengine.train import distributed
from frsengine.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from frsengine.train.config import RunConfig, differences
from frsengine.train.distributed import DistInfo
from frsengine.train.precision import check_precision

log = logging.getLogger("frsengine.train")


def cosine_lr(step: int, total: int, lr: float, lr_min: float) -> float:
    """Cosine decay from ``lr`` at step 0 to ``lr_min`` at ``total``."""
    t = min(step, total) / max(total, 1)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * t))


def set_deterministic(mode: bool, warn_only: bool = False) -> None:
    """torch.use_deterministic_algorithms without its import of torch._inductor.

    That import (for inductor's own flag) pulls dynamo and sympy in: seconds of start-up for every
    run on a 2-core machine, and training never compiles. Inductor's flag is still set when inductor
    is already loaded."""
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = mode
    torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


class StopRequest:
    """SIGINT / SIGTERM set a flag; the loop checkpoints at the next step boundary and exits."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("got %s: saving a checkpoint at the end of this step", signal.Signals(signum).name)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    @property
    def requested(self) -> bool:
        return self.signum is not None


class Meter:
    """Throughput and the fraction of time spent waiting for data."""

    def __init__(self):
        self.wait = self.busy = 0.0
        self.images = 0
        self._t = time.perf_counter()

    def waited(self) -> None:
        now = time.perf_counter()
        self.wait += now - self._t
        self._t = now

    def worked(self, images: int) -> None:
        now = time.perf_counter()
        self.busy += now - self._t
        self._t = now
        self.images += images

    @property
    def images_per_s(self) -> float:
        total = self.wait + self.busy
        return self.images / total if total > 0 else 0.0

    @property
    def wait_fraction(self) -> float:
        total = self.wait + self.busy
        return self.wait / total if total > 0 else 0.0


class Run:
    """One run of search or retrain: folder, rank, logging, TensorBoard, checkpoints."""

    def __init__(self, cfg: RunConfig, resume: str | None = None, device: str | None = None):
        self.cfg = cfg
        self.info: DistInfo = distributed.setup(device or cfg.device)
        self.device = self.info.device
        slow_precision = check_precision(cfg.model.precision, self.device)
        if cfg.kind == "search" and cfg.arch.precision != "model":
            slow_precision = check_precision(cfg.arch.precision, self.device, "arch.precision") or slow_precision
        self.dir = Path(cfg.output.dir)
        self.ckpt_dir = self.dir / "checkpoints"
        self.resumed: Checkpoint | None = None
        self._handlers: list[logging.Handler] = []
        warnings = [slow_precision] if slow_precision else []  # logged once run.log is open
        if resume:
            path = Path(resume)
            self.resumed = load_checkpoint(path / "checkpoints" / "last.safetensors" if path.is_dir() else path)
            if self.resumed.config.get("kind") != cfg.kind:
                raise FrsError(f"'{self.resumed.path}' is a {self.resumed.config.get('kind')} checkpoint, "
                               f"not {cfg.kind}")
            changed = [k for k in differences(self.resumed.config, cfg.to_dict())
                       if not k.startswith("output.") and k not in ("threads", "device")]
            if changed:
                warnings.append(f"resuming with settings that differ from the checkpoint's ({', '.join(changed)}): "
                                "the run will not match an uninterrupted one")
        elif (self.ckpt_dir / "last.safetensors").exists():
            raise FrsError(f"'{self.dir}' already holds a run: resume it with --resume {self.dir}, or choose "
                           "another output.dir")
        if self.info.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            self._setup_logging()
            for text in warnings:
                log.warning(text)
            import yaml
            write_bytes_atomic(self.dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
        distributed.barrier(self.info)
        self._threads = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self._deterministic = (torch.are_deterministic_algorithms_enabled(),
                               torch.is_deterministic_algorithms_warn_only_enabled())
        if cfg.deterministic:
            set_deterministic(True, warn_only=True)
        self.writer = None
        if self.info.is_main and cfg.output.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.dir / "tb"))
            except ImportError:
                log.warning("TensorBoard logging is off: the tensorboard package is not installed "
                            "(./install.sh installs it)")
        self.meter = Meter()
        self.started = time.perf_counter()

    def _setup_logging(self) -> None:
        root = logging.getLogger("frsengine")
        root.setLevel(logging.INFO)
        if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == (self.dir / "run.log").resolve()
                   for h in root.handlers):
            fh = logging.FileHandler(self.dir / "run.log")
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            root.addHandler(fh)
            self._handlers.append(fh)
        if not any(type(h) is logging.StreamHandler for h in root.handlers):
            sh = logging.StreamHandler(sys.stderr)
            sh.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            sh.setLevel(logging.WARNING)
            root.addHandler(sh)
            self._handlers.append(sh)

    # --- progress -----------------------------------------------------------------------------
    def progress(self, total: int, initial: int, desc: str):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                    disable=not (self.info.is_main and self.cfg.output.progress), file=sys.stderr)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)

    def images(self, step: int, tag: str, lq: torch.Tensor, out: torch.Tensor, gt: torch.Tensor, n: int = 4) -> None:
        """Rows of LQ | output | GT."""
        if self.writer is None:
            return
        rows = [torch.cat([lq[i], out[i], gt[i]], 2).detach() for i in range(min(n, lq.shape[0]))]
        self.writer.add_image(tag, torch.cat(rows, 1).clamp(0, 1).float().cpu(), step)

    # --- checkpoints --------------------------------------------------------------------------
    def restore(self, model, optimizers: dict, position: dict) -> dict:
        """Load the resumed checkpoint (if any) into ``model`` / ``optimizers`` and the RNG; returns the
        position to continue from (``position`` when starting fresh)."""
        if self.resumed is None:
            return position
        self.resumed.restore_model(model)
        for name, opt in optimizers.items():
            self.resumed.restore_optimizer(name, opt)
        self.resumed.restore_rng()
        pos = dict(self.resumed.position)
        log.info("resumed from %s at epoch %d, batch %d (step %d)", self.resumed.path, pos["epoch"], pos["batch"],
                 pos["step"])
        return pos

    def save(self, model, optimizers: dict, position: dict, extra: dict | None = None, best: bool = False) -> None:
        """last.safetensors (+ a step-numbered copy, the newest `keep` kept; + best.safetensors)."""
        if not self.info.is_main:
            return
        last = save_checkpoint(self.ckpt_dir / "last.safetensors", model, optimizers, position, self.cfg.to_dict(), extra)
        data = last.read_bytes()
        if self.cfg.output.keep > 0:
            write_bytes_atomic(self.ckpt_dir / f"step-{position['step']:07d}.safetensors", data)
            steps = sorted(self.ckpt_dir.glob("step-*.safetensors"))
            for old in steps[:-self.cfg.output.keep]:
                old.unlink(missing_ok=True)
        if best:
            write_bytes_atomic(self.ckpt_dir / "best.safetensors", data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        for h in self._handlers:
            logging.getLogger("frsengine").removeHandler(h)
            h.close()
        set_deterministic(self._deterministic[0], warn_only=self._deterministic[1])
        torch.set_num_threads(self._threads)
        distributed.teardown()

    def summary(self, text: str) -> None:
        """The final line: printed (rank 0) and logged."""
        if self.info.is_main:
            log.info(text)
            print(text, flush=True)


@contextlib.contextmanager
def maybe_no_sync(net, skip: bool):
    """DDP's no_sync for all micro-batches but the last (gradients reduced once per step)."""
    if skip and hasattr(net, "no_sync"):
        with net.no_sync():
            yield
    else:
        yield


def execute(cfg: RunConfig, resume: str | None, body) -> dict:
    """``body(run)`` inside a Run that is closed (process group, TensorBoard, log handlers) whatever happens."""
    run = Run(cfg, resume)
    try:
        return body(run)
    finally:
        run.close()
