"""Every message the actors exchange is frozen and survives pickling (multiprocTCPBase pickles them).

The dataclasses are discovered by introspection in every module of the ``messages`` package, so a
message added later is covered without touching this file; sample values are built from each
field's type hints.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pickle
import pkgutil
import types
import typing
from datetime import UTC, datetime
from typing import Any

import pytest
from thespian.actors import ActorAddress
from thespian.system.transport.TCPTransport import TCPv4ActorAddress

import chatactors.errors as errors_module
import chatactors.messages as messages_module
from chatactors.core import model as model_module
from chatactors.errors import ChatError, UserNotFound

# A real multiprocTCPBase address, the kind that crosses processes inside messages.
ADDRESS = ActorAddress(TCPv4ActorAddress("127.0.0.1", 45321, external=True))


def _classes(module: types.ModuleType) -> list[type]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
    ]


MESSAGE_MODULES = [
    importlib.import_module(f"{messages_module.__name__}.{info.name}")
    for info in pkgutil.iter_modules(messages_module.__path__)
]
MESSAGE_CLASSES = [cls for module in MESSAGE_MODULES for cls in _classes(module)] + _classes(model_module)


def sample(tp: Any, depth: int = 0) -> Any:
    """A plausible, picklable value of type ``tp`` (Any, in a message, is mostly an actor address)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is model_module.Address:
        return ADDRESS
    if origin is typing.Literal:
        return typing.get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return next(iter(tp))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return sample(options[0], depth)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            if depth > 2:  # a type that nests itself (Stats.nodes): stop somewhere
                return ()
            return (sample(args[0], depth), sample(args[0], depth))
        return tuple(sample(a, depth) for a in args)
    if origin in (list, dict, set, frozenset):
        return origin()
    if tp is int:
        return 7
    if tp is float:
        return 1.5
    if tp is bool:
        return True
    if tp is str:
        return "hola"
    if tp is bytes:
        return b"\x00nonce"
    if tp is datetime:
        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    if isinstance(tp, type) and issubclass(tp, BaseException):
        return UserNotFound("no user 'pepe'")
    if dataclasses.is_dataclass(tp):
        return build(tp, depth + 1)
    raise TypeError(f"no sample for {tp!r}")


def build(cls: type, depth: int = 0) -> Any:
    hints = typing.get_type_hints(cls, vars(inspect.getmodule(cls)))
    values = {f.name: sample(hints[f.name], depth) for f in dataclasses.fields(cls) if f.init}
    return cls(**values)


def same(a: Any, b: Any) -> bool:
    """Equality that also compares exceptions by type and detail (Exception uses identity)."""
    if isinstance(a, BaseException):
        return type(a) is type(b) and a.args == b.args
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def test_discovery_finds_the_messages() -> None:
    names = {cls.__name__ for cls in MESSAGE_CLASSES}
    # A few that must exist whatever else is added.
    assert {"Deliver", "ConfirmRead", "Reply", "Failed", "Push", "Envelope", "Message", "Receipt"} <= names
    assert len(MESSAGE_CLASSES) >= 40


def test_every_message_is_importable_from_the_package() -> None:
    """The package re-exports every message of its modules, so ``from chatactors.messages import X``
    does not depend on which conversation ``X`` belongs to."""
    defined = {cls.__name__: cls for module in MESSAGE_MODULES for cls in _classes(module)}
    assert sorted(set(defined) - set(messages_module.__all__)) == []
    assert all(getattr(messages_module, name) is cls for name, cls in defined.items())
    assert [n for n in messages_module.__all__ if not hasattr(messages_module, n)] == []


def test_each_message_is_defined_once() -> None:
    names = [cls.__name__ for module in MESSAGE_MODULES for cls in _classes(module)]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_a_status_crosses_processes_as_itself() -> None:
    """A Status in a message unpickles as the same member, not as a plain string."""
    for status in model_module.Status:
        receipt = model_module.Receipt((1,), status, "maria", 2)
        copy = pickle.loads(pickle.dumps(messages_module.Push((1,), receipt))).event
        assert copy.status is status


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_frozen_with_slots(cls: type) -> None:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen, f"{cls.__name__} must be frozen: simpleSystemBase does not copy messages"
    assert "__slots__" in cls.__dict__, (
        f"{cls.__name__} should use slots=True (messages are frozen, slotted dataclasses)"
    )
    instance = build(cls)
    field = dataclasses.fields(cls)[0].name if dataclasses.fields(cls) else None
    if field is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(instance, field, None)


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_pickle_round_trip(cls: type) -> None:
    instance = build(cls)
    for protocol in (pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        copy = pickle.loads(pickle.dumps(instance, protocol=protocol))
        assert same(instance, copy), cls.__name__


def test_nested_messages_round_trip() -> None:
    """A routed request inside an envelope inside a batch: what a directory sends to a UserActor."""
    sender = model_module.UserInfo(1, "juan")
    request = messages_module.Deliver(
        req_id=3, reply_to=ADDRESS, user_id=2, sender=sender, body="hola", client_id="c-1"
    )
    route = messages_module.Route("user", 1, request)
    batch = messages_module.Batch((messages_module.Envelope(route, (ADDRESS,)), route))
    assert same(pickle.loads(pickle.dumps(batch)), batch)


ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors_module, inspect.isclass)
    if issubclass(cls, ChatError) and cls.__module__ == errors_module.__name__
]


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_errors_cross_processes(cls: type[ChatError]) -> None:
    """Errors travel inside Failed replies: type, detail and code survive."""
    error = cls("the detail")
    copy = pickle.loads(pickle.dumps(messages_module.Failed(1, error))).error
    assert type(copy) is cls
    assert copy.detail == "the detail" and str(copy) == "the detail"
    assert copy.code == cls.code


REQUEST_CLASSES = [
    c for c in MESSAGE_CLASSES if issubclass(c, messages_module.Request) and c is not messages_module.Request
]


def test_discovery_finds_the_requests() -> None:
    assert len(REQUEST_CLASSES) >= 30


@pytest.mark.parametrize("cls", REQUEST_CLASSES, ids=lambda c: c.__name__)
def test_stamped_is_replace_for_every_request(cls: type) -> None:
    """The bridge stamps each request with ``stamped``, which copies fields without ``__init__``:
    the same result as ``dataclasses.replace`` as long as no request checks or derives anything."""
    from chatactors.messages.edge import stamped

    assert "__post_init__" not in vars(cls), f"{cls.__name__}: stamped() would skip its __post_init__"
    request = build(cls)
    got = stamped(request, 99, "reply-here")
    assert type(got) is cls and same(got, dataclasses.replace(request, req_id=99, reply_to="reply-here"))
    assert same(request, build(cls))  # the original is left as it was
