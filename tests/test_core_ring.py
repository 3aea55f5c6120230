"""Ownership by rendezvous hashing: stable across processes, even, and minimal movement."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from chatactors.core.registry import Key
from chatactors.core.ring import Node, Ring, moved, newest, owner, score

KEYS: list[Key] = [("user", i) for i in range(1, 5001)] + [("room", i) for i in range(1, 5001)]


def ring_of(count: int) -> Ring:
    return Ring(frozenset(Node(f"node-{i}", 1) for i in range(1, count + 1)))


def shares(ring: Ring) -> Counter[str]:
    return Counter(ring.owner(key).node_id for key in KEYS)


class TestOwner:
    def test_owner_is_one_of_the_nodes_and_the_same_for_any_order(self) -> None:
        nodes = [Node("a", 1), Node("b", 1), Node("c", 1)]
        for key in KEYS[:200]:
            found = owner(key, nodes)
            assert found in {"a", "b", "c"}
            assert owner(key, reversed(nodes)) == found

    def test_a_user_and_a_room_with_the_same_number_are_different_keys(self) -> None:
        assert score(("user", 7), "a") != score(("room", 7), "a")

    def test_the_hash_is_the_same_in_another_process(self) -> None:
        # Python salts str hashes per process: a ring built on hash() would disagree between nodes.
        code = "from chatactors.core.ring import score; print(score(('user', 7), 'node-1'))"
        env = {**os.environ, "PYTHONHASHSEED": "12345"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert int(out.stdout) == score(("user", 7), "node-1")

    def test_an_empty_ring_owns_nothing(self) -> None:
        with pytest.raises(ValueError, match="empty ring"):
            Ring().owner(("user", 1))
        assert not Ring().owns(Node("a", 1), ("user", 1))


class TestEpochs:
    def test_only_the_newest_epoch_of_a_node_id_is_a_member(self) -> None:
        assert newest([Node("a", 1), Node("a", 3), Node("b", 2), Node("a", 2)]) == {
            Node("a", 3),
            Node("b", 2),
        }
        assert Ring(frozenset({Node("a", 1), Node("a", 3)})).members == {Node("a", 3)}

    def test_a_stale_epoch_never_owns(self) -> None:
        ring = Ring(frozenset({Node("a", 2), Node("b", 1)}))
        mine = [key for key in KEYS[:500] if ring.owner(key).node_id == "a"]
        assert mine  # "a" owns some keys...
        assert all(ring.owns(Node("a", 2), key) for key in mine)
        assert not any(ring.owns(Node("a", 1), key) for key in mine)  # ...but not its old incarnation

    def test_a_returning_node_gets_its_own_keys_back(self) -> None:
        before = Ring(frozenset({Node("a", 1), Node("b", 1), Node("c", 1)}))
        after = Ring(frozenset({Node("a", 2), Node("b", 1), Node("c", 1)}))
        assert moved(KEYS, before, after) == {}
        assert before != after  # yet the ring changed: the old incarnation is fenced


class TestSpreadAndMovement:
    @pytest.mark.parametrize("count", [3, 4, 5])
    def test_keys_spread_within_a_few_percent_of_even(self, count: int) -> None:
        even = len(KEYS) / count
        counts = shares(ring_of(count))
        assert len(counts) == count
        assert all(abs(n - even) / even < 0.05 for n in counts.values()), counts

    @pytest.mark.parametrize("count", [3, 4])
    def test_a_join_moves_only_the_keys_the_new_node_takes(self, count: int) -> None:
        before = ring_of(count)
        after = before.with_node(Node("node-new", 1))
        changes = moved(KEYS, before, after)
        assert {new for _, new in changes.values()} == {"node-new"}  # nothing moves between old nodes
        assert len(changes) == shares(after)["node-new"]
        assert abs(len(changes) - len(KEYS) / (count + 1)) / (len(KEYS) / (count + 1)) < 0.05

    @pytest.mark.parametrize("count", [4, 5])
    def test_a_leave_moves_only_the_keys_the_node_held_and_spreads_them(self, count: int) -> None:
        before = ring_of(count)
        after = before.without("node-2")
        changes = moved(KEYS, before, after)
        assert {old for old, _ in changes.values()} == {"node-2"}
        assert len(changes) == shares(before)["node-2"]
        heirs = Counter(new for _, new in changes.values())
        assert set(heirs) == set(after.node_ids)  # every survivor takes a share, not one neighbour
        even = len(changes) / (count - 1)
        assert all(abs(n - even) / even < 0.15 for n in heirs.values()), heirs

    def test_a_key_moves_to_or_from_an_empty_ring_as_none(self) -> None:
        assert moved([("user", 1)], Ring(), ring_of(1)) == {("user", 1): (None, "node-1")}
        assert moved([("user", 1)], ring_of(1), Ring()) == {("user", 1): ("node-1", None)}
