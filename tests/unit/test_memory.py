"""The allocator policy of ``consumer.memory`` (glibc, as on the service's images)."""

from __future__ import annotations

import os
import subprocess
import sys

from consumer.memory import tune_allocator


def _in_a_child(code: str) -> subprocess.CompletedProcess[str]:
    # in a child with no MALLOC_* environment, so this test process keeps glibc's defaults
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )


def test_the_policy_is_applied_on_glibc():
    result = _in_a_child("from consumer.memory import tune_allocator; raise SystemExit(0 if tune_allocator({}) else 1)")
    assert result.returncode == 0, f"mallopt refused the policy: {result.stderr}"


def test_freed_memory_goes_back_to_the_system_after_a_job():
    # 512 MiB served from the heap (under the policy's mmap threshold), freed, then trimmed
    code = """
import numpy as np
from consumer.memory import release_free_memory, tune_allocator
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
assert tune_allocator({})
before = rss()
block = np.ones(512 * 1024**2, dtype=np.uint8)
del block
kept = rss() - before
release_free_memory()
released = rss() - before
print(kept, released)
"""
    result = _in_a_child(code)
    assert result.returncode == 0, result.stderr
    kept, released = map(int, result.stdout.split())
    assert kept > 400 * 1024**2, "the freed block should stay in the heap until the job ends"
    assert released < 64 * 1024**2, f"{released / 1024**2:.0f} MiB still held after release_free_memory"


def test_an_operators_own_malloc_settings_are_left_alone():
    assert tune_allocator({"MALLOC_ARENA_MAX": "2"}) is False
    assert tune_allocator({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) is False
