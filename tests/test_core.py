"""The pure core, with no actor system, no database and no sleeps: time is a FakeClock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from helpers import Addr

from chatactors.core.clock import FakeClock, MonotonicClock
from chatactors.core.idle import IdlePolicy
from chatactors.core.model import ENTREGADO, ENVIADO, LEIDO, STATUSES, Message, Receipt, Status, advance
from chatactors.core.registry import Approve, Deny, Forward, Registry, Start
from chatactors.core.rules import (
    HISTORY_MAX,
    MAX_BODY,
    MAX_ID,
    check_body,
    check_client_id,
    check_id,
    check_key,
    check_limit,
    check_password,
    check_text,
    check_user_ref,
    check_username,
)
from chatactors.core.throttle import LOCAL, HashSlots, LoginPolicy, LoginThrottle, client_key
from chatactors.errors import InvalidMessage

JUAN = ("user", 1)
MARIA = ("user", 2)


def msg(ident: int, status: Status = ENVIADO, body: str = "hola") -> Message:
    return Message(
        id=ident,
        sender_id=1,
        sender="juan",
        recipient_id=2,
        room=None,
        body=body,
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        status=status,
        recipient="maria",
    )


def live_registry(key: tuple[str, int] = JUAN, address: Addr | None = None) -> tuple[Registry, Addr]:
    registry = Registry()
    address = address or Addr("a1")
    assert registry.route(key, "first") == [Start(key)]
    assert registry.started(key, address) == [Forward(key, address, "first")]
    return registry, address


# -- Registry: location -----------------------------------------------------------------------------
class TestRegistryRouting:
    def test_first_message_starts_an_activation_and_is_buffered(self) -> None:
        registry = Registry()
        assert registry.route(JUAN, "m1") == [Start(JUAN)]
        assert registry.route(JUAN, "m2") == []  # already activating: buffered, no second Start
        assert registry.address(JUAN) is None
        assert registry.live("user") == 1 and registry.activations == 1

    def test_started_forwards_the_buffer_in_order_then_routes_straight(self) -> None:
        registry = Registry()
        registry.route(JUAN, "m1")
        registry.route(JUAN, "m2")
        a1 = Addr("a1")
        assert registry.started(JUAN, a1) == [Forward(JUAN, a1, "m1"), Forward(JUAN, a1, "m2")]
        assert registry.route(JUAN, "m3") == [Forward(JUAN, a1, "m3")]
        assert registry.address(JUAN) == a1

    def test_keys_are_independent_and_counted_by_kind(self) -> None:
        registry = Registry()
        registry.route(JUAN, "x")
        registry.route(MARIA, "y")
        registry.route(("room", 1), "z")
        assert registry.live("user") == 2
        assert registry.live("room") == 1
        assert registry.live() == 3
        assert registry.activations == 3


class TestRetireHandshake:
    def test_approve_then_buffer_then_exit_without_work_forgets_the_actor(self) -> None:
        registry, a1 = live_registry()
        assert registry.retire_request(JUAN, a1, 1) == [Approve(a1)]
        assert registry.live("user") == 1  # still running until its exit is confirmed
        assert registry.address(JUAN) is None  # nothing is sent to an address that may vanish
        assert registry.exited(JUAN, a1) == []
        assert registry.live("user") == 0
        assert registry.retirements == 1 and registry.crashes == 0
        # Hibernated: the next message activates it again.
        assert registry.route(JUAN, "later") == [Start(JUAN)]
        assert registry.activations == 2

    def test_messages_arriving_while_retiring_go_to_a_fresh_activation(self) -> None:
        registry, a1 = live_registry()
        registry.retire_request(JUAN, a1, 1)
        assert registry.route(JUAN, "m1") == []
        assert registry.route(JUAN, "m2") == []
        assert registry.exited(JUAN, a1) == [Start(JUAN)]
        a2 = Addr("a2")
        assert registry.started(JUAN, a2) == [Forward(JUAN, a2, "m1"), Forward(JUAN, a2, "m2")]
        assert registry.retirements == 1 and registry.crashes == 0
        assert registry.activations == 2

    def test_deny_a_retire_request_from_a_stale_or_unknown_address(self) -> None:
        registry, a1 = live_registry()
        old = Addr("old")
        assert registry.retire_request(JUAN, old, 1) == [Deny(old)]
        assert registry.retire_request(MARIA, a1, 1) == [Deny(a1)]  # no such activation
        assert registry.route(JUAN, "still live") == [Forward(JUAN, a1, "still live")]

    def test_deny_while_activating(self) -> None:
        registry = Registry()
        registry.route(JUAN, "m1")
        a1 = Addr("a1")
        assert registry.retire_request(JUAN, a1, 1) == [Deny(a1)]

    def test_deny_a_second_request_while_already_retiring(self) -> None:
        registry, a1 = live_registry()
        assert registry.retire_request(JUAN, a1, 1) == [Approve(a1)]
        assert registry.retire_request(JUAN, a1, 1) == [Deny(a1)]

    def test_cancel_keeps_the_actor_and_hands_it_what_was_buffered(self) -> None:
        registry, a1 = live_registry()
        registry.retire_request(JUAN, a1, 1)
        registry.route(JUAN, "m1")
        assert registry.cancel_retire(JUAN, a1) == [Forward(JUAN, a1, "m1")]
        assert registry.address(JUAN) == a1
        assert registry.route(JUAN, "m2") == [Forward(JUAN, a1, "m2")]
        assert registry.retirements == 0 and registry.activations == 1

    def test_cancel_from_a_stale_address_or_when_not_retiring_is_ignored(self) -> None:
        registry, a1 = live_registry()
        assert registry.cancel_retire(JUAN, a1) == []  # not retiring
        registry.retire_request(JUAN, a1, 1)
        assert registry.cancel_retire(JUAN, Addr("other")) == []
        assert registry.address(JUAN) is None  # still retiring

    def test_deny_while_a_forward_is_on_its_way_then_approve_once_it_arrived(self) -> None:
        # multiprocTCPBase: the actor asked before "m2" reached it (or the approval would overtake
        # "m2"); approving then would let it exit with "m2" acked by its socket and lost.
        registry, a1 = live_registry()
        assert [f.seq for f in registry.route(JUAN, "m2")] == [2]
        assert registry.retire_request(JUAN, a1, received=1) == [Deny(a1)]
        assert registry.address(JUAN) == a1  # still live: "m3" goes straight to it
        assert [f.seq for f in registry.route(JUAN, "m3")] == [3]
        assert registry.retire_request(JUAN, a1, received=2) == [Deny(a1)]
        assert registry.retire_request(JUAN, a1, received=3) == [Approve(a1)]
        assert registry.route(JUAN, "m4") == []  # buffered from here on

    def test_forwards_are_numbered_per_activation(self) -> None:
        registry, a1 = live_registry()
        registry.route(JUAN, "m2")
        registry.retire_request(JUAN, a1, received=2)
        registry.route(JUAN, "waits")
        registry.exited(JUAN, a1)
        a2 = Addr("a2")
        assert [f.seq for f in registry.started(JUAN, a2)] == [1]  # a new address counts from one
        assert registry.retire_request(JUAN, a2, received=1) == [Approve(a2)]

    def test_a_cancelled_retire_keeps_counting(self) -> None:
        registry, a1 = live_registry()
        registry.retire_request(JUAN, a1, received=1)
        registry.route(JUAN, "m2")
        assert [f.seq for f in registry.cancel_retire(JUAN, a1)] == [2]
        assert registry.retire_request(JUAN, a1, received=1) == [Deny(a1)]
        assert registry.retire_request(JUAN, a1, received=2) == [Approve(a1)]

    def test_an_offline_notice_goes_only_to_a_live_actor_and_is_counted(self) -> None:
        registry = Registry()
        assert registry.notify(JUAN, "offline") == []  # nothing runs: nothing starts for it
        assert registry.live() == 0
        registry, a1 = live_registry()
        assert [(f.message, f.seq) for f in registry.notify(JUAN, "offline")] == [("offline", 2)]
        assert registry.retire_request(JUAN, a1, received=1) == [Deny(a1)]
        registry.retire_request(JUAN, a1, received=2)
        assert registry.notify(JUAN, "offline") == []  # retiring: it would be sent nowhere safe

    def test_an_adopted_actor_is_counted_from_the_adoption(self) -> None:
        registry = Registry()  # a restarted directory: its own forwards only
        a1 = Addr("a1")
        assert registry.adopt(JUAN, a1)
        assert registry.retire_request(JUAN, a1, received=0) == [Approve(a1)]

    def test_addresses_are_compared_by_str_not_identity(self) -> None:
        registry, _ = live_registry(address=Addr("a1"))
        same = Addr("a1")  # another object for the same actor, as after unpickling
        assert registry.retire_request(JUAN, same, 1) == [Approve(same)]
        assert registry.exited(JUAN, Addr("a1")) == []
        assert registry.retirements == 1


class TestCrashes:
    def test_an_unapproved_exit_of_an_online_user_restarts_it_at_once(self) -> None:
        registry, a1 = live_registry()
        registry.attach(JUAN, "sink", 1)
        assert registry.exited(JUAN, a1) == [Start(JUAN)]
        assert registry.crashes == 1 and registry.retirements == 0
        assert registry.route(JUAN, "m") == []  # buffered for the restart
        a2 = Addr("a2")
        assert registry.started(JUAN, a2) == [Forward(JUAN, a2, "m")]

    def test_an_offline_user_that_crashed_comes_back_on_demand(self) -> None:
        registry, a1 = live_registry()
        assert registry.exited(JUAN, a1) == []
        assert registry.crashes == 1
        assert registry.live("user") == 0
        assert registry.route(JUAN, "m") == [Start(JUAN)]

    def test_a_dead_letter_then_reroute_restarts_with_the_message_buffered(self) -> None:
        # What the directory does on DeadEnvelope: forget the dead address, then route again.
        registry, a1 = live_registry()
        assert registry.exited(JUAN, a1) == []
        assert registry.route(JUAN, "lost in flight") == [Start(JUAN)]
        a2 = Addr("a2")
        assert registry.started(JUAN, a2) == [Forward(JUAN, a2, "lost in flight")]
        # The supervisor's late report of the first exit does not touch the new activation.
        assert registry.exited(JUAN, a1) == []
        assert registry.address(JUAN) == a2
        assert registry.crashes == 1

    def test_an_exit_of_an_old_activation_is_ignored(self) -> None:
        registry, a1 = live_registry()
        registry.retire_request(JUAN, a1, 1)
        registry.route(JUAN, "m")
        registry.exited(JUAN, a1)
        a2 = Addr("a2")
        registry.started(JUAN, a2)
        assert registry.exited(JUAN, a1) == []  # e.g. multiprocTCPBase reports each exit twice
        assert registry.address(JUAN) == a2
        assert registry.retirements == 1 and registry.crashes == 0


class TestIdleDetection:
    """The directory's single timer asks ``idle(timeout)`` which live actors nothing was routed to."""

    def test_an_actor_is_idle_after_timeout_without_traffic(self) -> None:
        clock = FakeClock()
        registry = Registry(clock)
        a1 = Addr("a1")
        registry.route(JUAN, "m")
        registry.started(JUAN, a1)
        clock.advance(9.0)
        assert registry.idle(10.0) == []
        registry.route(JUAN, "more")  # traffic restarts the count
        clock.advance(9.0)
        assert registry.idle(10.0) == []
        clock.advance(1.0)
        assert registry.idle(10.0) == [(JUAN, a1)]

    def test_each_idle_actor_is_reported_once_per_timeout(self) -> None:
        clock = FakeClock()
        registry = Registry(clock)
        registry.route(JUAN, "m")
        registry.started(JUAN, Addr("a1"))
        clock.advance(10.0)
        assert len(registry.idle(10.0)) == 1
        assert registry.idle(10.0) == []  # it declined, or is retiring: asked again later
        clock.advance(10.0)
        assert len(registry.idle(10.0)) == 1

    def test_only_live_actors_are_reported(self) -> None:
        clock = FakeClock()
        registry = Registry(clock)
        registry.route(JUAN, "m")  # activating
        registry.route(MARIA, "m")
        a2 = Addr("a2")
        registry.started(MARIA, a2)
        registry.retire_request(MARIA, a2, 1)  # retiring
        clock.advance(100.0)
        assert registry.idle(10.0) == []


class TestPresence:
    def test_attach_detach_counts_sessions_per_sink(self) -> None:
        registry = Registry()
        sink = Addr("bridge")
        registry.attach(JUAN, sink, 1)
        registry.attach(JUAN, Addr("bridge"), 2)  # a second session through the same sink
        assert registry.is_online(JUAN) and registry.online() == 1
        assert registry.sinks(JUAN) == (sink,)
        registry.detach(JUAN, sink, 1)
        assert registry.is_online(JUAN)  # one session left
        registry.detach(JUAN, sink, 2)
        assert not registry.is_online(JUAN) and registry.online() == 0
        assert registry.sinks(JUAN) == ()

    def test_a_session_told_twice_is_one_session(self) -> None:
        """An Attach and a Reattach that crossed it during a ring change both name session 1: after
        its logout the user is offline, not online with a session that does not exist."""
        registry = Registry()
        sink = Addr("bridge")
        registry.attach(JUAN, sink, 1)  # the Attach, routed to the new owner
        registry.attach(JUAN, sink, 1)  # the Reattach from the node that holds the socket
        registry.attach(JUAN, sink, 2)
        registry.detach(JUAN, sink, 1)
        assert registry.is_online(JUAN)  # session 2 is still there
        registry.detach(JUAN, sink, 2)
        assert not registry.is_online(JUAN)
        registry.detach(JUAN, sink, 2)  # a repeated Detach changes nothing
        assert registry.online() == 0

    def test_several_sinks_for_one_user(self) -> None:
        registry = Registry()
        b1, b2 = Addr("b1"), Addr("b2")
        registry.attach(JUAN, b1, 1)
        registry.attach(JUAN, b2, 1)  # numbers are per sink: the same number elsewhere is another session
        assert sorted(str(s) for s in registry.sinks(JUAN)) == ["Addr(b1)", "Addr(b2)"]
        registry.detach(JUAN, b1, 1)
        assert registry.sinks(JUAN) == (b2,)

    def test_detach_of_unknown_user_sink_or_session_is_harmless(self) -> None:
        registry = Registry()
        registry.detach(JUAN, Addr("nobody"), 1)
        registry.attach(JUAN, Addr("b1"), 1)
        registry.detach(JUAN, Addr("b2"), 1)
        registry.detach(JUAN, Addr("b1"), 9)
        assert registry.is_online(JUAN)

    def test_drop_sink_takes_every_session_it_held_offline(self) -> None:
        registry = Registry()
        gone, other = Addr("gone"), Addr("other")
        registry.attach(JUAN, gone, 1)
        registry.attach(JUAN, gone, 2)
        registry.attach(MARIA, gone, 3)
        registry.attach(MARIA, other, 1)
        assert sorted(registry.drop_sink(gone)) == [JUAN, MARIA]  # whose presence changed
        assert not registry.is_online(JUAN)
        assert registry.sinks(MARIA) == (other,)
        assert registry.online() == 1

    def test_presence_does_not_start_actors(self) -> None:
        registry = Registry()
        registry.attach(JUAN, Addr("b1"), 1)
        assert registry.live() == 0 and registry.activations == 0


# -- LoginThrottle ----------------------------------------------------------------------------------
ATTACKER, OWNER = "203.0.113.9", "198.51.100.4"


def throttle_with(clock: FakeClock, **policy: Any) -> LoginThrottle:
    return LoginThrottle(clock, LoginPolicy(**policy))


class TestLoginThrottle:
    def test_free_attempts_then_delays_that_double_up_to_a_cap(self) -> None:
        clock = FakeClock()
        throttle = throttle_with(clock, account_attempts=3, base_delay=1.0, max_delay=5.0)
        for _ in range(2):
            throttle.failed("juan", ATTACKER)
            assert throttle.retry_after("juan", ATTACKER) == 0
        throttle.failed("juan", ATTACKER)  # the third failure brings the first delay
        assert throttle.retry_after("juan", ATTACKER) == 1.0
        clock.advance(0.5)
        assert throttle.retry_after("juan", ATTACKER) == 0.5
        clock.advance(0.5)
        assert throttle.retry_after("juan", ATTACKER) == 0
        delays = []
        for _ in range(4):
            throttle.failed("juan", ATTACKER)
            delays.append(throttle.retry_after("juan", ATTACKER))
            clock.advance(delays[-1])
        assert delays == [2.0, 4.0, 5.0, 5.0]  # doubling, capped at max_delay

    def test_the_owner_on_another_address_is_not_delayed_by_an_attackers_failures(self) -> None:
        clock = FakeClock()
        throttle = throttle_with(clock, account_attempts=5)
        for _ in range(10):
            throttle.failed("user:1", ATTACKER)
        assert throttle.retry_after("user:1", ATTACKER) > 0
        assert throttle.retry_after("user:1", OWNER) == 0

    def test_a_success_resets_only_its_own_account_and_address(self) -> None:
        clock = FakeClock()
        throttle = throttle_with(clock, account_attempts=5, address_attempts=100)
        for _ in range(5):
            throttle.failed("user:1", ATTACKER)
        waiting = throttle.retry_after("user:1", ATTACKER)
        throttle.succeeded("user:1", OWNER)  # the owner logs in meanwhile
        assert throttle.retry_after("user:1", ATTACKER) == waiting  # no fresh guesses for the attacker
        clock.advance(waiting)
        throttle.failed("user:1", ATTACKER)
        assert throttle.retry_after("user:1", ATTACKER) == 2.0  # the count went on

    def test_a_success_from_the_same_address_starts_that_pair_over(self) -> None:
        clock = FakeClock()
        throttle = throttle_with(clock, account_attempts=2)
        throttle.failed("user:1", OWNER)
        throttle.succeeded("user:1", OWNER)
        throttle.failed("user:1", OWNER)
        assert throttle.retry_after("user:1", OWNER) == 0

    def test_an_address_guessing_many_accounts_is_delayed_for_all_of_them(self) -> None:
        clock = FakeClock()
        throttle = throttle_with(clock, account_attempts=5, address_attempts=4)
        for n in range(4):
            throttle.failed(f"unknown:name{n}", ATTACKER)  # unknown names count against the address
        assert throttle.retry_after("user:1", ATTACKER) == 1.0  # an account it never tried
        assert throttle.retry_after("user:1", OWNER) == 0
        throttle.succeeded("user:1", ATTACKER)  # a success does not clear the address's count
        assert throttle.retry_after("user:2", ATTACKER) == 1.0

    def test_counters_are_forgotten_after_a_quiet_period(self) -> None:
        clock = FakeClock()
        throttle = throttle_with(clock, account_attempts=1, forget_after=60.0)
        throttle.failed("user:1", ATTACKER)
        assert len(throttle) == 2  # (account, address) and address
        clock.advance(60.0)
        assert throttle.retry_after("user:1", ATTACKER) == 0
        throttle.failed("user:1", ATTACKER)
        assert throttle.retry_after("user:1", ATTACKER) == 1.0  # counting started over

    def test_memory_is_bounded(self) -> None:
        clock = FakeClock()
        throttle = throttle_with(clock, max_records=10)
        for n in range(100):
            throttle.failed("user:1", f"10.0.0.{n}")
            clock.advance(1.0)
        assert len(throttle) == 10

    def test_defaults_allow_five_failures_per_account_and_twenty_per_address(self) -> None:
        throttle = LoginThrottle(FakeClock())
        for _ in range(4):
            throttle.failed("x", ATTACKER)
        assert throttle.retry_after("x", ATTACKER) == 0
        throttle.failed("x", ATTACKER)
        assert throttle.retry_after("x", ATTACKER) == 1.0
        for n in range(19):
            throttle.failed(f"unknown:y{n}", OWNER)  # one failure each: no account is delayed
        assert throttle.retry_after("user:1", OWNER) == 0
        throttle.failed("unknown:y19", OWNER)  # the address's twentieth
        assert throttle.retry_after("user:1", OWNER) == 1.0


class TestClientKey:
    def test_addresses_are_normalised(self) -> None:
        assert client_key("127.0.0.1") == "127.0.0.1"
        assert client_key("::ffff:10.1.2.3") == "10.1.2.3"
        assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
        assert client_key(None) == client_key("") == LOCAL == "local"


class TestHashSlots:
    def test_the_pool_and_each_address_have_a_bounded_share(self) -> None:
        slots = HashSlots(LoginPolicy(hash_workers=1, hash_queue=2, hash_reserved=0, hashes_per_address=2))
        assert slots.take(ATTACKER) and slots.take(ATTACKER)
        assert not slots.free(ATTACKER) and not slots.take(ATTACKER)  # this address's share is full
        assert slots.take(OWNER)  # others still get in
        assert not slots.take("192.0.2.1")  # the pool is full: refused at once
        slots.release(ATTACKER)
        assert slots.take("192.0.2.1")
        assert slots.in_use == 3

    def test_reserved_slots_are_for_known_logins_only(self) -> None:
        slots = HashSlots(LoginPolicy(hash_workers=1, hash_queue=2, hash_reserved=1))
        assert slots.take("10.0.0.1") and slots.take("10.0.0.2")
        assert not slots.free("10.0.0.3")  # the storm fills what is not reserved
        assert slots.take(OWNER, known=True)  # the owner, at a known address, still gets in
        assert not slots.take("10.0.0.4", known=True)  # and then the pool is full for everyone

    def test_an_account_is_known_where_it_logged_in(self) -> None:
        throttle = LoginThrottle(FakeClock(), LoginPolicy(max_records=2))
        throttle.succeeded("user:1", OWNER, "name:juan")
        assert throttle.known("user:1", OWNER) and throttle.known("name:juan", OWNER)
        assert not throttle.known("user:1", ATTACKER)
        throttle.failed("user:1", OWNER)  # failures do not forget it
        assert throttle.known("name:juan", OWNER)
        throttle.succeeded("user:2", OWNER, "name:maria")  # memory is bounded: the oldest go
        assert not throttle.known("user:1", OWNER) and throttle.known("name:maria", OWNER)


# -- IdlePolicy -------------------------------------------------------------------------------------
class TestIdlePolicy:
    def test_retires_after_the_timeout_without_activity(self) -> None:
        clock = FakeClock(100.0)
        idle = IdlePolicy(clock, timeout=10.0)
        assert not idle.should_retire()
        clock.advance(9.0)
        assert not idle.should_retire()
        clock.advance(1.0)
        assert idle.should_retire()

    def test_activity_restarts_the_count(self) -> None:
        clock = FakeClock()
        idle = IdlePolicy(clock, timeout=10.0)
        clock.advance(8.0)
        idle.touch()
        clock.advance(8.0)
        assert not idle.should_retire()
        clock.advance(2.0)
        assert idle.should_retire()

    def test_never_while_owed_a_reply(self) -> None:
        clock = FakeClock()
        idle = IdlePolicy(clock, timeout=1.0)
        idle.started()
        idle.started()
        clock.advance(50.0)
        assert not idle.should_retire()
        idle.finished()
        clock.advance(50.0)
        assert not idle.should_retire()
        idle.finished()
        assert not idle.should_retire()  # finishing is activity too
        clock.advance(1.0)
        assert idle.should_retire()
        idle.finished()  # an extra reply never drives the count negative
        assert idle.outstanding == 0

    def test_clocks(self) -> None:
        fake = FakeClock(3.0)
        fake.advance(2.5)
        assert fake.now() == 5.5
        real = MonotonicClock()
        assert real.now() <= real.now()


# -- rules ------------------------------------------------------------------------------------------
class TestRules:
    @pytest.mark.parametrize("name", ["abc", "juan", "Maria_2", "a.b-c", "x" * 32, "123"])
    def test_good_usernames(self, name: str) -> None:
        assert check_username(name) == name

    @pytest.mark.parametrize(
        "name",
        ["", "ab", "x" * 33, "juan perez", "juan!", "ñandú", "juan\n", "\njuan", "ju\x00an", None, 42],
    )
    def test_bad_usernames(self, name: object) -> None:
        with pytest.raises(InvalidMessage):
            check_username(name)

    @pytest.mark.parametrize("body", ["a", "hola", "x" * MAX_BODY, " padded "])
    def test_good_bodies(self, body: str) -> None:
        assert MAX_BODY == 4096
        assert check_body(body) == body

    @pytest.mark.parametrize("body", ["", "   ", "\n\t", "x" * (MAX_BODY + 1), None, 12, b"bytes"])
    def test_bad_bodies(self, body: object) -> None:
        with pytest.raises(InvalidMessage):
            check_body(body)

    @pytest.mark.parametrize("password", ["12345678", "x" * 1024])
    def test_good_passwords(self, password: str) -> None:
        assert check_password(password) == password

    @pytest.mark.parametrize("password", ["", "1234567", "x" * 1025, None, 12345678])
    def test_bad_passwords(self, password: object) -> None:
        with pytest.raises(InvalidMessage):
            check_password(password)

    @pytest.mark.parametrize("limit", [1, 10, HISTORY_MAX])
    def test_good_limits(self, limit: int) -> None:
        assert check_limit(limit) == limit

    @pytest.mark.parametrize("limit", [0, -1, HISTORY_MAX + 1, True, 1.5, "10", None])
    def test_bad_limits(self, limit: object) -> None:
        with pytest.raises(InvalidMessage):
            check_limit(limit)

    def test_limit_with_a_custom_maximum(self) -> None:
        assert check_limit(5, maximum=5) == 5
        with pytest.raises(InvalidMessage):
            check_limit(6, maximum=5)

    @pytest.mark.parametrize("value", [1, 42, MAX_ID])
    def test_good_ids(self, value: int) -> None:
        assert MAX_ID == 2**63 - 1  # what a signed 64-bit column holds, on SQLite and PostgreSQL
        assert check_id(value) == value

    @pytest.mark.parametrize("value", [0, -1, MAX_ID + 1, 2**64, 10**100, True, False, 1.0, "1", None])
    def test_bad_ids(self, value: object) -> None:
        with pytest.raises(InvalidMessage, match="positive integer below 2"):
            check_id(value)

    @pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "\udc80" * 3, b"bytes", None, 7])
    def test_text_must_encode_as_utf8(self, value: object) -> None:
        with pytest.raises(InvalidMessage, match="^body "):
            check_text(value, "body")
        with pytest.raises(InvalidMessage):
            check_body(value)

    def test_text_may_hold_any_valid_character(self) -> None:
        text = "hola \U0001f600 ñ \u200b \t \ufffd"
        assert check_text(text, "body") == text

    @pytest.mark.parametrize("value", ["a\x00b", "\x00", "\ud800"])
    def test_keys_refuse_nul_and_lone_surrogates(self, value: str) -> None:
        with pytest.raises(InvalidMessage, match="^room "):
            check_key(value, "room")

    def test_passwords_must_encode_as_utf8(self) -> None:
        with pytest.raises(InvalidMessage, match="password is not valid Unicode"):
            check_password("secreto123\ud800")

    @pytest.mark.parametrize("value", ["juan", 7, MAX_ID])
    def test_good_user_refs(self, value: str | int) -> None:
        assert check_user_ref(value) == value

    @pytest.mark.parametrize("value", [0, -3, MAX_ID + 1, True, 1.5, None, ["juan"], "ju\x00an", "\ud800"])
    def test_bad_user_refs(self, value: object) -> None:
        with pytest.raises(InvalidMessage):
            check_user_ref(value)

    @pytest.mark.parametrize("value", [None, "a", "x" * 128, "7f3c-1"])
    def test_good_client_ids(self, value: str | None) -> None:
        assert check_client_id(value) == value

    @pytest.mark.parametrize("value", ["", "x" * 129, 5, ["a"], "a\x00", "\ud800"])
    def test_bad_client_ids(self, value: object) -> None:
        with pytest.raises(InvalidMessage):
            check_client_id(value)


# -- model ------------------------------------------------------------------------------------------
class TestModel:
    @pytest.mark.parametrize(
        ("current", "new", "expected"),
        [
            (ENVIADO, ENTREGADO, ENTREGADO),
            (ENVIADO, LEIDO, LEIDO),
            (ENTREGADO, LEIDO, LEIDO),
            (ENTREGADO, ENVIADO, ENTREGADO),
            (LEIDO, ENTREGADO, LEIDO),  # a late 'entregado' never undoes 'leido'
            (LEIDO, ENVIADO, LEIDO),
            (ENTREGADO, ENTREGADO, ENTREGADO),
        ],
    )
    def test_advance_only_moves_forward(self, current: Status, new: Status, expected: Status) -> None:
        assert advance(current, new) == expected

    def test_with_status_returns_a_new_message(self) -> None:
        m = msg(1)
        read = m.with_status(LEIDO)
        assert m.status == ENVIADO and read.status == LEIDO
        assert read.with_status(ENTREGADO).status == LEIDO

    def test_str_is_what_a_repl_prints(self) -> None:
        assert str(msg(1, body="hola")) == "[juan -> maria] hola"
        receipt = Receipt((1, 2), LEIDO, "maria", 2)
        assert str(receipt) == "[maria leido: 1, 2]"

    def test_the_statuses_keep_their_stored_values_and_their_old_names(self) -> None:
        assert [s.value for s in Status] == ["enviado", "entregado", "leido"]  # in the order they advance
        assert (ENVIADO, ENTREGADO, LEIDO) == (Status.ENVIADO, Status.ENTREGADO, Status.LEIDO)
        assert STATUSES == tuple(Status) == ("enviado", "entregado", "leido")
        assert Status("leido") is LEIDO

    def test_a_status_reads_as_its_value_everywhere(self) -> None:
        """A Status is the str it stores: equal to it, hashed like it, printed and shown like it."""
        assert LEIDO == "leido" and {"leido": 1}[LEIDO] == 1
        assert (str(LEIDO), f"{LEIDO}", repr(LEIDO)) == ("leido", "leido", "'leido'")
        assert repr(msg(1, status=LEIDO)).endswith(" leido>")

    def test_a_message_repr_is_one_short_line(self) -> None:
        """What a REPL prints for a list of messages: who, to whom, the body, the status; no timestamp."""
        assert repr(msg(12, ENTREGADO)) == '<Message #12 juan→maria "hola" entregado>'
        room = replace(msg(3, LEIDO, "hola a todos"), recipient_id=None, recipient=None, room="general")
        assert repr(room) == '<Message #3 juan→#general "hola a todos" leido>'
        unnamed = replace(msg(4), recipient=None)
        assert repr(unnamed) == '<Message #4 juan→user:2 "hola" enviado>'
        lines = msg(5, body='dijo "sí"\nadiós\t\x00')
        assert repr(lines) == '<Message #5 juan→maria "dijo "sí"\\nadiós\\t\\x00" enviado>'

    @pytest.mark.parametrize(
        "fields",
        [
            {"body": "x" * 4096},
            {"body": "\n" * 4096},
            {"id": 2**63 - 1, "sender": "s" * 32, "recipient": "r" * 32, "body": "ñ" * 200},
            {"id": 2**63 - 1, "sender": "s" * 32, "recipient_id": None, "room": "\n" * 128, "body": "x" * 99},
        ],
        ids=["long body", "newlines", "longest names", "longest room"],
    )
    def test_a_message_repr_fits_a_terminal_line_whatever_it_holds(self, fields: dict[str, Any]) -> None:
        shown = repr(replace(msg(1, ENTREGADO), **fields))
        assert len(shown) <= 100 and "\n" not in shown, shown
        assert shown.startswith("<Message #") and shown.endswith('…" entregado>')
