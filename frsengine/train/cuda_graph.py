"""A whole training step captured into one CUDA graph and replayed.

A search step of the supernets launches tens of thousands of small kernels; on a GPU it is bound by
the host launching them, not by the GPU running them (at 128x128 on an H200 it took as long as the
same step's host work alone takes a CPU, measured there at 16x16). A replay launches the captured
step as one graph: no Python, no dispatcher, no per-kernel launch on the host.

What a captured step must be (torch.cuda.graph's rules): the same tensors on every call (new data is
copied into them), no host synchronisation inside (``.item()``, ``float(t)``, printing, shapes that
depend on data), optimizers that keep their step count on the device (``capturable=True`` for Adam),
no autocast weight cache (``cache_enabled=False``). Gradients are set to None before the capture, so
the captured backward allocates them from the graph's private pool and every replay rewrites them.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch


def capture_step(step: Callable[[], None], optimizers: Iterable[torch.optim.Optimizer] = (),
                 warmup: int = 3) -> Callable[[], None]:
    """Run ``step`` ``warmup`` times eagerly (cuDNN algorithm choice, optimizer state, lazy
    initialisation), capture one more call into a CUDA graph and return the graph's replay.

    The warm-up and the capture share one side stream (library handles and workspaces are made per
    stream, before the capture). The captured call itself changes nothing: the first replay runs it.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA graphs need a CUDA device: run the step eagerly on CPU")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    return graph.replay
