"""The allocator lever (`embtune.allocator`): in a task process, large allocations made by a
run's thread come from the heap and stay there while the run lasts, and the release after a run
gives them back to the OS.

Each case runs in a fresh interpreter: the settings are process-wide and must be made before
threads allocate, which is exactly what is being tested.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from embtune.config import Settings

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="the allocator settings exist only in glibc",
)

BLOCK_MB = 64
BLOCKS = 4

# Allocates BLOCKS x BLOCK_MB on a new thread (as a worker's run does), filled so the pages are
# resident, and reports the bytes glibc holds in mmapped chunks while they live and the resident set
# while they live, after they are freed and after the release.
PROBE = f"""
import ctypes, json, sys, threading
from embtune import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

if sys.argv[1] == "retain":
    allocator.retain_freed_memory()
report = {{"mode": allocator.mode()}}

def run():
    # Medium blocks a thread would otherwise take from an arena of its own ...
    medium = [b"\\x01" * (4 << 20) for _ in range(4)]
    blocks = [b"\\x01" * ({BLOCK_MB} << 20) for _ in range({BLOCKS})]
    report["mmapped_mb"] = libc.mallinfo2().hblkhd / (1 << 20)
    report["rss_held"] = rss_mb()
    del blocks
    report["rss_freed"] = rss_mb()

thread = threading.Thread(target=run)
thread.start()
thread.join()
report["released"] = allocator.release_freed_memory()
report["rss_released"] = rss_mb()
print(json.dumps(report))
sys.stdout.flush()
libc.malloc_stats()  # ... one "Arena N:" section per arena, on stderr
"""


def probe(mode: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return {**json.loads(done.stdout), "arenas": done.stderr.count("Arena ")}


def test_by_default_glibc_maps_and_unmaps_every_large_block() -> None:
    """The behaviour the lever removes: each block is its own mapping, unmapped on free."""
    report = probe("default")
    assert report["mode"] == "system"
    assert report["arenas"] > 1  # the thread allocated from an arena of its own
    assert report["mmapped_mb"] >= BLOCKS * BLOCK_MB
    assert report["rss_freed"] < report["rss_held"] - 0.75 * BLOCKS * BLOCK_MB


def test_retained_heap_keeps_freed_blocks_until_released() -> None:
    report = probe("retain")
    assert report["mode"] == "retain-heap"
    assert report["mmapped_mb"] < BLOCK_MB  # served from the heap, even on a new thread
    assert report["arenas"] == 1  # whose allocations share the heap the settings apply to
    # Freed memory stays with the process while a run lasts (the next step reuses it) ...
    assert report["rss_freed"] > report["rss_held"] - 0.25 * BLOCKS * BLOCK_MB
    # ... and the release after the run gives it back.
    assert report["released"] is True
    assert report["rss_released"] < report["rss_held"] - 0.75 * BLOCKS * BLOCK_MB


@pytest.mark.parametrize(("tune", "expected"), [(True, "retain-heap"), (False, "system")])
def test_task_processes_follow_the_setting(tune: bool, expected: str) -> None:
    script = (
        "from embtune import allocator\n"
        "from embtune.config import Settings\n"
        "from embtune.runtime import prepare_task_process\n"
        f"prepare_task_process(Settings(tune_allocator={tune}))\n"
        "print(allocator.mode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == expected


@pytest.mark.parametrize(
    ("broker", "embedded_worker", "requested", "expected"),
    [
        ("embedded", True, None, True),
        ("embedded", False, None, False),
        ("redis://127.0.0.1:6379/0", True, None, False),
        ("redis://127.0.0.1:6379/0", True, True, True),
        ("embedded", True, False, False),
    ],
)
def test_which_api_processes_run_tasks(
    broker: str, embedded_worker: bool, requested: bool | None, expected: bool
) -> None:
    settings = Settings(broker_url=broker, embedded_worker=embedded_worker)
    assert settings.runs_worker_in_api(requested) is expected
