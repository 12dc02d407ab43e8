"""The allocator policy of ``consumer.memory`` (glibc, as on the service's images)."""

from __future__ import annotations

import subprocess
import sys

from consumer.memory import fix_mmap_threshold


def test_the_threshold_is_fixed_on_glibc():
    # in a child, so this test process keeps glibc's defaults
    code = "from consumer.memory import fix_mmap_threshold; raise SystemExit(0 if fix_mmap_threshold({}) else 1)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"mallopt(M_MMAP_THRESHOLD) was not applied: {result.stderr}"


def test_an_operators_own_threshold_is_left_alone():
    assert fix_mmap_threshold({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False
