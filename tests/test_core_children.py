"""The supervisor's book of children (``core/children.py``) with no actor system, including the race
between a spare's assignment and its exit that once left a room's messages held forever."""

from __future__ import annotations

from helpers import Addr

from chatactors.core.children import Children, Exited


def with_spares(*ports: int, kind: str = "room") -> Children:
    children = Children()
    for port in ports:
        children.add_spare(kind, Addr(str(port)))
    return children


def test_an_assigned_spare_that_exits_is_reported_with_its_key() -> None:
    children = with_spares(1, 2)
    assert children.assigned(("room", 7), Addr("1")) == []
    assert children.spares["room"] == [Addr("2")]
    assert children.exited(Addr("1")) == [Exited(("room", 7), Addr("1"))]
    assert children.serving == []


def test_an_exit_reported_before_its_assignment_is_reported_when_the_assignment_arrives() -> None:
    children = with_spares(1, 2)
    assert children.exited(Addr("1")) == []  # still a spare, as far as the supervisor knows
    assert children.spares["room"] == [Addr("2")]
    assert children.assigned(("room", 7), Addr("1")) == [Exited(("room", 7), Addr("1"))]
    assert children.serving == []  # it is not counted as serving: it is gone
    assert children.assigned(("room", 8), Addr("2")) == []  # others are unaffected


def test_each_exit_is_reported_once_though_thespian_reports_it_twice() -> None:
    children = with_spares(1, kind="user")
    children.assigned(("user", 3), Addr("1"))
    assert children.exited(Addr("1")) == [Exited(("user", 3), Addr("1"))]
    assert children.exited(Addr("1")) == []
    early = with_spares(1, kind="user")
    assert early.exited(Addr("1")) == [] and early.exited(Addr("1")) == []
    assert early.assigned(("user", 3), Addr("1")) == [Exited(("user", 3), Addr("1"))]
    assert early.assigned(("user", 3), Addr("1")) == []  # a repeated Assigned is not a second exit


def test_children_started_on_request_are_reported_on_exit() -> None:
    children = Children()
    children.started(("user", 5), Addr("9"))
    assert children.serving == [("user", 5, Addr("9"))]
    assert children.exited(Addr("9")) == [Exited(("user", 5), Addr("9"))]


def test_missing_spares_counts_what_a_top_up_must_start() -> None:
    children = with_spares(1, 2, kind="user")
    assert children.missing_spares("user", 8) == 6
    assert children.missing_spares("room", 2) == 2
    children.exited(Addr("1"))  # a dead spare no longer counts
    assert children.missing_spares("user", 8) == 7
    assert children.all_spares() == (("user", Addr("2")),)


def test_the_record_of_early_exits_is_bounded() -> None:
    children = with_spares(*range(Children.EARLY_EXITS_KEPT + 10))
    for port in range(Children.EARLY_EXITS_KEPT + 10):
        children.exited(Addr(str(port)))  # spares that died on their own are never assigned
    assert children.assigned(("room", 1), Addr("0")) == []  # the oldest record was dropped
    last = Children.EARLY_EXITS_KEPT + 9
    assert children.assigned(("room", 2), Addr(str(last))) == [Exited(("room", 2), Addr(str(last)))]
