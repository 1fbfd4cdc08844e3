"""Collector settings of the batch processes."""

from __future__ import annotations

import subprocess
import sys

from hub.runtime import GC_THRESHOLDS


def test_tune_gc_raises_the_thresholds_and_freezes_the_start_up_heap_once() -> None:
    code = (
        "import gc; from hub.runtime import tune_gc; before = gc.get_freeze_count(); "
        "tune_gc(); frozen = gc.get_freeze_count(); tune_gc(); "
        "print(gc.get_threshold(), before == 0 < frozen == gc.get_freeze_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [*f"{GC_THRESHOLDS}".split(), "True"]
