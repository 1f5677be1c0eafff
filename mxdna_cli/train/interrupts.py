"""Interrupts during training: Ctrl-C or SIGTERM (kill, SLURM, timeout) is held while an optimiser
step changes the weights, so that it lands before or after the step, never inside it, and the
checkpoint written at the interrupt is always a whole state.

The signals are blocked at the OS level (`pthread_sigmask`) for the few milliseconds of the step;
a signal sent meanwhile stays pending and is delivered, as usual, when the step is done. Where the
call does not exist (Windows) or off the main thread, nothing is held.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

HELD = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a pending signal is delivered here
