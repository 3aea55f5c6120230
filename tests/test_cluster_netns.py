"""Cluster nodes on three simulated hosts: network namespaces on a bridge, as root.

Each host is a namespace with a veth pair on a bridge the test creates (addresses 10.213.x.0/24, used
only inside them); each runs a node (tests/cluster_node_peer.py) bound to its own address. PostgreSQL
is reached through a relay the test runs on the bridge's address (tests/netns_hosts.py builds them;
the ``hosts`` fixture is in conftest.py). This is how a cut network looks to a node: taking a host's
link down answers nothing, not even a reset, unlike a killed process whose host refuses the
connection at once.

Without root or ``ip netns`` these tests cannot build hosts; with CI=true that fails them (CI runs as
root), else they are skipped. Every namespace, link and process the test made is removed afterwards,
and checked to be gone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netns_hosts import Hosts
from test_cluster_node import Process


def start(hosts: Hosts, url: str, name: str, started: list[Process]) -> Process:
    node = Process(
        name,
        url,
        wrap=hosts.wrap(name),
        env={"THESPIAN_BASE_IPADDR": hosts.addresses[name]},
    )
    started.append(node)
    return node


@pytest.fixture
def nodes(hosts: tuple[Hosts, str]) -> Iterator[list[Process]]:
    """Killed before the hosts are removed (this fixture needs them), so that removal finds no process."""
    started: list[Process] = []
    yield started
    for node in started:
        node.kill()


def test_three_hosts_form_one_ring_and_talk(hosts: tuple[Hosts, str], nodes: list[Process]) -> None:
    made, url = hosts
    n1, n2, n3 = (start(made, url, name, nodes) for name in ("n1", "n2", "n3"))
    for node in (n1, n2, n3):
        node.ring("n1", "n2", "n3")
    n1.send("n3", "across hosts")
    assert n3.got() == ("n1", "across hosts")


def test_a_host_cut_off_is_dropped_and_the_others_keep_talking(
    hosts: tuple[Hosts, str], nodes: list[Process]
) -> None:
    made, url = hosts
    n1, n2, n3 = (start(made, url, name, nodes) for name in ("n1", "n2", "n3"))
    for node in (n1, n2, n3):
        node.ring("n1", "n2", "n3")
    made.cut("n2")  # no reset, no answer: a black hole
    n1.send("n2", "into the hole")
    n1.send("n3", "meanwhile")  # n2's stuck queue must not hold n3's up
    assert n3.got() == ("n1", "meanwhile")
    n1.ring("n1", "n3")  # missed heartbeats, or the link's unanswered batch, whichever is first
    n3.ring("n1", "n3")
    assert n1.line("UNDELIVERED") == 'n2 ["into the hole"]'  # handed back, for the node to route again
    n3.send("n1", "still here")
    assert n1.got() == ("n3", "still here")
