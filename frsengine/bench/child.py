"""Run one measurement in a child process: a crash, an out-of-memory kill or a hang costs one row,
and time and memory are measured in different processes (:mod:`frsengine.bench.memory`).

Two ways to start the child:

- ``fork`` (CPU runs with a CPU-only torch, from the ``frsengine bench`` command): the child is
  a copy of this process, so torch and frsengine are already imported (no 2-5 s start-up per
  child). The parent must not have run a parallel torch op or touched CUDA (GNU OpenMP and CUDA do
  not survive a fork: a child forked after one matmul hung here), so only a caller that knows it
  has not (the command: its process only imports) allows it.
- ``spawn`` (otherwise, or ``FRSENGINE_BENCH_START=spawn``): a fresh
  ``python -m frsengine.bench.child`` process.

The measured function is named ``"module:function"``, takes one JSON-able dict and returns one.
Its output (warnings, progress bars) goes to a temporary log whose tail becomes the failure reason.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

MARKER = "FRSENGINE-BENCH-RESULT "


class ChildFailed(RuntimeError):
    """The child raised, crashed, or ran out of time; the message says which."""


class ChildDied(ChildFailed):
    """The child ended without a result: killed (on Linux, out of memory is a SIGKILL) or crashed."""


def start_method(device: str = "cpu", allow_fork: bool = False) -> str:
    """``fork`` where the caller vouches that this process has run no torch op (``allow_fork``), the
    device is the CPU and torch is a CPU-only build; ``spawn`` otherwise."""
    forced = os.environ.get("FRSENGINE_BENCH_START")
    if forced in ("fork", "spawn"):
        return forced
    if not allow_fork or device != "cpu" or not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return "spawn"
    import torch

    cuda_build = torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None
    return "spawn" if cuda_build else "fork"


def execute(func: str, payload: dict, memory: bool) -> dict:
    """What the child runs (in the child)."""
    if memory:
        from frsengine.bench.memory import pin_allocator

        pin_allocator()
    module, _, name = func.partition(":")
    return getattr(importlib.import_module(module), name)(payload)


def _tail(text: str, lines: int = 6) -> str:
    useful = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(useful[-lines:])[-1500:]


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "no exit status"
    if status < 0:
        sig = -status
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"killed by {name}" + (" (out of memory?)" if sig == signal.SIGKILL else "")
    return f"exit status {status}"


def run_in_child(func: str, payload: dict, *, memory: bool = False, timeout: float = 600,
                 method: str = "fork") -> dict:
    """``func(payload)`` in a child process; its result, or :class:`ChildFailed`."""
    if method == "fork":
        return _run_forked(func, payload, memory, timeout)
    return _run_spawned(func, payload, memory, timeout)


def run_group_in_child(func: str, payload: dict, key: str, *, timeout: float | Callable[[], float] = 600,
                       method: str = "fork") -> dict:
    """``func(payload)`` for the cases ``payload[key]`` in one child (rounds interleaved), or, when
    that child dies (one case out of memory takes the process and every row with it), each case in
    a child of its own, not interleaved: a case that does not fit then costs its own row only.

    ``func`` returns ``{key: {case: row}, ...}``; rows timed alone get ``"alone"``, the reason.
    ``timeout``: seconds per child, or a function giving them (for deadlines)."""
    limit = timeout if callable(timeout) else (lambda: timeout)
    try:
        return run_in_child(func, payload, timeout=limit(), method=method)
    except ChildDied as exc:
        if len(payload[key]) < 2:
            raise
        shared = str(exc)
    merged: dict = {key: {}}
    for case in payload[key]:
        one = {**payload, key: [case]} | ({"flops": False} if "flops_per_face" in merged else {})  # counted once
        try:
            result = run_in_child(func, one, timeout=limit(), method=method)
        except ChildFailed as exc:
            merged[key][case] = {"error": str(exc)}
            continue
        rows = result.pop(key, {})
        merged = {**result, **merged}
        merged[key][case] = {**rows.get(case, {"error": "not measured"}),
                             "alone": f"timed alone: the group's shared child died ({shared[:200]})"}
    return merged


def _run_forked(func: str, payload: dict, memory: bool, timeout: float) -> dict:
    log = tempfile.TemporaryFile()
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 0
        try:
            os.close(read_fd)
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                data = json.dumps({"result": execute(func, payload, memory)})
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as the row's reason
                import traceback

                traceback.print_exc()
                data = json.dumps({"error": f"{type(exc).__name__}: {exc}".strip()})
            with os.fdopen(write_fd, "w") as f:
                f.write(data)
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks, deadline, timed_out = [], time.monotonic() + timeout, False
    with os.fdopen(read_fd, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([pipe], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(pipe.fileno(), 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, wait_status = os.waitpid(pid, 0)
    log.seek(0)
    output = log.read().decode(errors="replace")
    log.close()
    if timed_out:
        raise ChildFailed(f"timed out after {timeout:.0f} s")
    return _parse(b"".join(chunks).decode(errors="replace"), output,
                  os.waitstatus_to_exitcode(wait_status))


def _run_spawned(func: str, payload: dict, memory: bool, timeout: float) -> dict:
    from frsengine.bench.memory import CHILD_ENV

    env = dict(os.environ, **(CHILD_ENV if memory else {}))
    cmd = [sys.executable, "-m", "frsengine.bench.child", func, json.dumps(payload)] + (["--memory"] if memory else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"timed out after {timeout:.0f} s") from None
    lines = proc.stdout.splitlines()
    data = next((line[len(MARKER):] for line in reversed(lines) if line.startswith(MARKER)), "")
    return _parse(data, proc.stdout + proc.stderr, proc.returncode)


def _parse(data: str, output: str, status: int) -> dict:
    if data:
        message = json.loads(data)
        if "error" in message:
            raise ChildFailed(message["error"])
        return message["result"]
    raise ChildDied(f"child process died ({_describe_exit(status)})" + (f": {_tail(output)}" if output.strip() else ""))


def main(argv: list[str]) -> int:
    func, payload = argv[0], json.loads(argv[1])
    try:
        data = json.dumps({"result": execute(func, payload, "--memory" in argv[2:])})
    except Exception as exc:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        data = json.dumps({"error": f"{type(exc).__name__}: {exc}".strip()})
    sys.stdout.flush()
    print("\n" + MARKER + data, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
