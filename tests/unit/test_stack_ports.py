"""The local stack's ports stay clear of the ports the kernel hands out by itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

STACK_PY = Path(__file__).resolve().parents[2] / "local-dev" / "stack.py"
_spec = importlib.util.spec_from_file_location("local_dev_stack", STACK_PY)
assert _spec is not None and _spec.loader is not None
stack = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = stack  # its dataclasses look their module up there
_spec.loader.exec_module(stack)

LINUX_EPHEMERAL_START = 32768  # net.ipv4.ip_local_port_range's default lower bound


def _ports(base: int) -> set[int]:
    """Every port an instance with this base listens on, as the stack derives them."""
    ports = stack.Ports(base)
    return {*ports.of("minio"), *ports.of("kafka")}


def test_every_default_port_is_below_the_ephemeral_range():
    """Outgoing connections and port-0 listeners (the tests' own servers) take ports from
    the ephemeral range; a fixed port there is now and then held by another socket."""
    limit = LINUX_EPHEMERAL_START
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if range_file.exists():
        limit = min(limit, int(range_file.read_text().split()[0]))
    bases = [*stack.NAMED_PORT_BASES.values(), *stack.HASHED_PORT_BASES]
    assert max(max(_ports(base)) for base in bases) < limit


def test_named_instances_share_no_port_with_each_other_or_with_hashed_ones():
    named = {name: _ports(base) for name, base in stack.NAMED_PORT_BASES.items()}
    hashed = set().union(*(_ports(base) for base in stack.HASHED_PORT_BASES))
    for name, ports in named.items():
        assert not ports & hashed, name
        for other, other_ports in named.items():
            assert other == name or not ports & other_ports, (name, other)


def test_the_two_lanes_of_make_test_use_the_named_bases():
    assert stack.default_port_base("test") == stack.NAMED_PORT_BASES["test"]
    assert stack.default_port_base("test-2") == stack.NAMED_PORT_BASES["test-2"]
    assert stack.default_port_base("someone-else") in stack.HASHED_PORT_BASES
