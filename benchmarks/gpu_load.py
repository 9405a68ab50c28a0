"""GPU utilisation sampled in a background thread while a benchmark runs (NVML through ``nvidia-ml-py``).

NVML's utilisation is the share of its last sample period (1/6 s to 1 s by GPU) during which a kernel ran; the
sampler reads it every ``interval`` seconds with the wall-clock time, and :meth:`UtilisationSampler.mean` averages
the samples inside a window (a benchmark's timed epochs). Without a GPU or NVML there are no samples and the mean is
``None``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


def nvml_reader() -> Callable[[], float] | None:
    """A function returning GPU 0's utilisation in percent, or ``None`` where NVML or a GPU is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlDeviceGetUtilizationRates(handle)
    except Exception:  # no package, no driver or no device: all mean "nothing to sample"
        return None
    return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)


class UtilisationSampler:
    """Context manager sampling ``read()`` (default: :func:`nvml_reader`) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05, read: Callable[[], float] | None = None):
        self.interval = interval
        self.read = read if read is not None else nvml_reader()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.read()))
            self._stop.wait(self.interval)

    def __enter__(self) -> UtilisationSampler:
        if self.read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean(self, start: float, stop: float) -> float | None:
        """Mean utilisation (percent) of the samples taken between wall-clock times ``start`` and ``stop``."""
        inside = [value for when, value in list(self.samples) if start <= when <= stop]
        return sum(inside) / len(inside) if inside else None
