"""Process-wide settings for the hub's long-running batch loops, and the lifetime of the
child processes they start."""

from __future__ import annotations

import ctypes
import gc

GC_THRESHOLDS = (20_000, 20, 20)
"""Generation thresholds of CPython's cycle collector for batch processes.

A batch holds ten thousand decoded changes (dicts, rows, findings) alive while it is worked
on; with the default thresholds (700, 10, 10) the collector traverses them again and again
and runs full collections over every cache the process keeps (IDs, folded names): 20 % of
the reconciler's decoding time in a measurement with a full ID cache, 4–5 % with these
thresholds. Reference counting frees almost everything the loops allocate; the collector is
only needed for cycles, which these loops do not make in bulk."""

_tuned = False


def tune_gc() -> None:
    """Raise the collector's thresholds and move everything allocated so far (imports,
    config) out of its reach with ``gc.freeze()``. Idempotent; called once the process has
    started, by the reconciler, the connectors and their producer processes."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


_PR_SET_PDEATHSIG = 1


def _libc_prctl():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up once, at import in the parent: ``die_with_parent`` runs as a ``preexec_fn`` in
# a child forked from a process with threads, where loading a library could deadlock.
_PRCTL = _libc_prctl()


def die_with_parent(sig: int) -> None:
    """Ask the kernel (Linux) to send ``sig`` to this child process when its parent dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
