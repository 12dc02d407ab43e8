"""The local stack's ports stay clear of the ports the kernel hands out by itself."""

from __future__ import annotations

from pathlib import Path

from tests.support import local_dev

stack = local_dev.load("stack")

LINUX_EPHEMERAL_START = 32768  # net.ipv4.ip_local_port_range's default lower bound


def _ports(base: int) -> set[int]:
    """Every port an instance with this base listens on, as the stack derives them."""
    ports = stack.Ports(base)
    return {*ports.of("minio"), *ports.of("kafka")}


def test_every_default_port_is_below_the_ephemeral_range():
    """Outgoing connections and port-0 listeners take ports from the ephemeral range; a fixed
    port there is now and then held by another socket."""
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


def test_the_service_ports_lie_below_every_stacks_ports():
    """What ``free_port`` hands out (the shim, a consumer's probes beside a stack) is neither a
    stack's port nor one the kernel hands out by itself."""
    bases = [*stack.NAMED_PORT_BASES.values(), *stack.HASHED_PORT_BASES]
    assert stack.SERVICE_PORTS.stop <= min(min(_ports(base)) for base in bases)
    assert stack.SERVICE_PORTS.stop <= LINUX_EPHEMERAL_START
    assert stack.free_port() in stack.SERVICE_PORTS
