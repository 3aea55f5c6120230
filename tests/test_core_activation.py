"""One activation of a virtual actor (``core/activation.py``) with no actor system: loading and the
stash, the two-phase retire handshake, what a restarted core actor means for it, and a hand-over
to another node. The same cases
run end to end in test_lifecycle.py and test_supervision.py."""

from __future__ import annotations

from chatactors.core.activation import (
    Activation,
    AskRetire,
    CancelRetire,
    Crash,
    Exit,
    FailOutstanding,
    Load,
    Redeliver,
    Reroute,
    Serve,
)
from chatactors.core.clock import FakeClock
from chatactors.core.replies import Refuse
from chatactors.errors import Restarting, UserNotFound

IDLE = 10.0


def started() -> tuple[Activation, FakeClock]:
    clock = FakeClock()
    activation = Activation(clock)
    assert activation.start(IDLE) == [Load()]
    return activation, clock


def live() -> tuple[Activation, FakeClock]:
    activation, clock = started()
    assert activation.loaded() == []
    return activation, clock


class TestLoading:
    def test_messages_wait_in_the_stash_until_the_state_is_in_then_come_again_in_order(self) -> None:
        activation, _ = started()
        assert activation.arrived("m1") == [] and activation.arrived("m2") == []
        assert not activation.ready and activation.stash == ["m1", "m2"]
        assert activation.loaded() == [Redeliver("m1"), Redeliver("m2")]
        assert activation.ready and activation.stash == []
        assert activation.arrived("m3") == [Serve("m3")]

    def test_a_stash_kept_from_before_init_is_not_lost(self) -> None:
        activation = Activation(FakeClock())
        activation.arrived("early")
        activation.start(IDLE)
        assert activation.loaded() == [Redeliver("early")]

    def test_it_never_asks_to_retire_while_loading(self) -> None:
        activation, clock = started()
        clock.advance(IDLE * 2)
        assert activation.check_retire(may_retire=True) == []
        assert activation.idle.outstanding == 1  # the load is a reply owed to it

    def test_a_failed_load_refuses_the_stash_and_asks_to_retire(self) -> None:
        activation, _ = started()
        activation.arrived("m1")
        activation.arrived("m2")
        error = UserNotFound("no user 7")
        assert activation.load_failed(error) == [Refuse("m1", error), Refuse("m2", error), AskRetire()]
        assert activation.retiring and activation.idle.outstanding == 0
        assert activation.approved(may_retire=False) == [Exit()]  # never loaded: nothing to stay for


class TestRetire:
    def test_an_idle_check_asks_once_until_the_directory_answers(self) -> None:
        activation, _ = live()
        assert activation.check_retire(may_retire=True) == [AskRetire()]
        assert activation.check_retire(may_retire=True) == []

    def test_it_does_not_ask_while_the_actor_says_it_may_not_retire(self) -> None:
        activation, _ = live()
        assert activation.check_retire(may_retire=False) == []
        assert not activation.retiring

    def test_approved_with_nothing_new_exits(self) -> None:
        activation, _ = live()
        activation.check_retire(may_retire=True)
        assert activation.approved(may_retire=True) == [Exit()]

    def test_approved_but_a_reply_became_owed_meanwhile_cancels_and_stays(self) -> None:
        activation, _ = live()
        activation.check_retire(may_retire=True)
        activation.idle.started()  # work came in between asking and the approval
        assert activation.approved(may_retire=True) == [CancelRetire()]
        assert not activation.retiring
        assert activation.arrived("m") == [Serve("m")]

    def test_approved_but_no_longer_idle_cancels(self) -> None:
        activation, _ = live()
        activation.check_retire(may_retire=True)
        assert activation.approved(may_retire=False) == [CancelRetire()]

    def test_denied_stays_and_the_next_idle_check_asks_again(self) -> None:
        activation, _ = live()
        activation.check_retire(may_retire=True)
        assert activation.denied() == []
        assert not activation.retiring and activation.arrived("m") == [Serve("m")]
        assert activation.check_retire(may_retire=True) == [AskRetire()]

    def test_activity_restarts_the_idle_count(self) -> None:
        activation, clock = live()
        clock.advance(IDLE - 1)
        activation.arrived("m")
        clock.advance(2)
        assert not activation.idle.should_retire()
        clock.advance(IDLE)
        assert activation.idle.should_retire()


class TestCoreRestarts:
    def test_a_restarted_directory_means_the_retire_request_is_asked_again(self) -> None:
        activation, _ = live()
        activation.check_retire(may_retire=True)
        assert activation.roles_changed(("directory",)) == []  # nothing owed: it keeps serving
        assert not activation.retiring
        assert activation.check_retire(may_retire=True) == [AskRetire()]

    def test_a_restart_while_a_reply_is_owed_answers_what_waits_and_crashes(self) -> None:
        for role in ("persistence", "directory"):
            activation, _ = live()
            activation.idle.started()
            effects = activation.roles_changed((role,))
            assert [type(e) for e in effects] == [FailOutstanding, Crash]
            error = effects[0].error  # type: ignore[union-attr]
            assert isinstance(error, Restarting) and role in str(error)

    def test_a_restart_while_loading_refuses_the_stash_and_crashes(self) -> None:
        activation, _ = started()
        activation.arrived("m1")
        effects = activation.roles_changed(("persistence",))
        assert [type(e) for e in effects] == [Refuse, FailOutstanding, Crash]
        assert effects[0] == Refuse("m1", effects[1].error)  # type: ignore[union-attr]
        assert activation.stash == []

    def test_a_restarted_login_or_supervisor_changes_nothing(self) -> None:
        activation, _ = started()
        activation.arrived("m1")
        assert activation.roles_changed(("login", "supervisor")) == []
        assert activation.stash == ["m1"]


class TestHandOver:
    def test_a_loading_activation_sends_its_stash_back_to_be_routed_and_exits(self) -> None:
        activation, _ = started()
        activation.arrived("m1")
        activation.arrived("m2")
        effects = activation.handed_over()
        assert effects[:2] == [Reroute("m1"), Reroute("m2")]  # in arrival order, none refused
        assert [type(e) for e in effects[2:]] == [FailOutstanding, Exit]
        error = effects[2].error  # type: ignore[union-attr]
        assert isinstance(error, Restarting) and "another node" in str(error)
        assert activation.stash == [] and activation.retiring

    def test_a_live_activation_tells_whoever_waits_for_a_reply_to_retry_and_exits(self) -> None:
        activation, _ = live()
        activation.idle.started()  # a reply owed to it
        assert [type(e) for e in activation.handed_over()] == [FailOutstanding, Exit]
        assert activation.check_retire(may_retire=True) == []  # it is going already
