"""The bound on concurrent password hashes (hub.api.sessions.HashSlots)."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from hub.api.sessions import Busy, HashSlots


def test_no_more_than_n_run_at_once_and_a_login_that_waits_too_long_is_busy():
    slots = HashSlots(2, wait_s=0.3)
    running, peak, lock = [0], [0], threading.Lock()

    def hash_once(hold: float) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(hold)
        with lock:
            running[0] -= 1
        return "done"

    async def main() -> list[object]:
        results: list[object] = []

        async def one(hold: float) -> None:
            try:
                results.append(await slots.run(hash_once, hold))
            except Busy:
                results.append("busy")

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(one, 1.0)  # both slots taken for a second
            await anyio.sleep(0.05)
            tg.start_soon(one, 0.0)  # waits 0.3 s, then gives up
        async with anyio.create_task_group() as tg:  # free again: runs at once
            tg.start_soon(one, 0.0)
        return results

    results = anyio.run(main)
    assert sorted(map(str, results)) == ["busy", "done", "done", "done"]
    assert peak[0] == 2


def test_a_failing_hash_frees_its_slot():
    slots = HashSlots(1, wait_s=0.5)

    def boom() -> None:
        raise ValueError("bad hash")

    async def main() -> str:
        with pytest.raises(ValueError):
            await slots.run(boom)
        return await slots.run(lambda: "next one ran")

    assert anyio.run(main) == "next one ran"
