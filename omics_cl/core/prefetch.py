"""Batches built ahead of the step in a background thread: :class:`Prefetch`.

A worker thread turns each item (e.g. a minibatch's cell indices) into a batch with ``make`` and puts it on
the device (``jax.device_put``) while the step runs on the previous one; at most ``depth`` finished batches
wait in a bounded queue, so memory stays bounded. Batches come out in item order. An exception in ``make`` is
raised in the consumer; leaving the ``with`` block early (an exception in the step, early stopping) stops
the worker and joins it. ``input_wait`` adds up the seconds the consumer waited on an empty queue; with
``settle`` (e.g. block until the step in flight has finished, as jax dispatches asynchronously) called first,
that is the time the step waited for its input.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax

_DONE = object()
_POLL_SECONDS = 0.05


class Prefetch:
    """``with Prefetch(items, make, depth) as batches: for batch in batches: ...``; ``depth=0`` builds each batch
    inline when it is needed (no thread, no ``device_put``, no ``input_wait``: it stays 0)."""

    def __init__(self, items: Iterable, make: Callable[[Any], Any], depth: int,
                 settle: Callable[[], None] | None = None):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self.items, self.make, self.depth, self.settle = items, make, depth, settle
        self.input_wait = 0.0
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _put(self, entry) -> bool:
        """Put ``entry`` unless stopped first; whether it was put."""
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for item in self.items:
                if self.stop.is_set() or not self._put((True, jax.device_put(self.make(item)))):
                    return
            self._put((True, _DONE))
        except BaseException as err:  # handed to the consumer, which re-raises it
            self._put((False, err))

    def __enter__(self) -> Iterator:
        if self.depth == 0:
            return (self.make(item) for item in self.items)
        self.thread = threading.Thread(target=self._work, name="omics_cl-prefetch", daemon=True)
        self.thread.start()
        return self._consume()

    def _next(self) -> tuple[bool, Any]:
        """The next queue entry; a wait on an empty queue (after ``settle``) is added to ``input_wait``."""
        try:
            return self.queue.get_nowait()
        except queue.Empty:
            if self.settle is not None:
                self.settle()
            started = time.perf_counter()
            entry = self.queue.get()
            self.input_wait += time.perf_counter() - started
            return entry

    def _consume(self) -> Iterator:
        while True:
            ok, value = self._next()
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker and wait for it (it finishes the batch it is building)."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
