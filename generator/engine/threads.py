"""Independent runs side by side, one per CPU thread.

A circuit evaluation on a model of GPT-2 small's size multiplies matrices of about a hundred
rows (a contrast family's pairs × the positions after their shared prefix). torch splits such
a product poorly over its intra-op threads: two threads ran eight of the e-mail family's
evaluations 1.56 times faster than one. Independent runs (the sizes of a curve, the random
orders, the cells of a transfer matrix) instead run one per thread, each on one intra-op
thread: torch releases the GIL inside its kernels, so two runs keep two cores busy (the same
eight evaluations 1.7 to 2 times faster than on one thread).

Why a thread pool of our own rather than torch's inter-op pool (torch.jit.fork): that pool
runs TorchScript, not the Python of the runner. The thread count while the pool runs is one
per run whatever it was, so every result is computed the same way on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch


def side_by_side(fn: Callable, items: Sequence, device: torch.device | str = "cpu") -> list:
    """[fn(x) for x in items], on torch.get_num_threads() threads of one intra-op thread each
    where the device is the CPU and there is more than one of each; in order."""
    workers = min(torch.get_num_threads(), len(items))
    if workers < 2 or torch.device(device).type != "cpu":
        return [fn(x) for x in items]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return list(pool.map(fn, items))
    finally:
        torch.set_num_threads(threads)
