"""Wall-clock and CPU time of named functions, for the benchmarks (not a test).

The cores are shared with other jobs, so the CPU time of this process (time.process_time: all
its threads) is the figure to compare; wall time is printed beside it with the load average."""

from __future__ import annotations

import functools
import os
import time


class Timer:
    def __init__(self):
        self.parts: dict[str, list[float]] = {}  # name -> [wall, cpu]

    def wrap(self, module, name: str, label: str | None = None) -> None:
        """Replace module.name by a wrapper that adds its time to `label` (default: name)."""
        inner = getattr(module, name)
        label = label or name

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                part = self.parts.setdefault(label, [0.0, 0.0])
                part[0] += time.perf_counter() - wall
                part[1] += time.process_time() - cpu

        setattr(module, name, timed)

    def report(self) -> str:
        rows = [f"  {k}: wall {w:.1f} s, cpu {c:.1f} s" for k, (w, c) in self.parts.items()]
        return "\n".join(rows + [f"  load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"])
