"""The public API: exactly these names, each importable, and type information shipped with them.

Adding a name here is a decision (it must then keep working); removing one breaks users.
"""

from __future__ import annotations

import configparser
import importlib
from importlib import resources
from pathlib import Path

import pytest

import chatactors
from chatactors import errors

PUBLIC = [
    "Chat",
    "ChatSettings",
    "Session",
    "connect",
    "connect_async",
    "Client",
    "ClientSession",
    "AsyncClient",
    "AsyncSession",
    "Message",
    "Receipt",
    "ReadEvent",
    "RoomSummary",
    "SearchResults",
    "Pid",
    "LoginPolicy",
    "Status",
    "ENVIADO",
    "ENTREGADO",
    "LEIDO",
    "ChatError",
    "AuthenticationError",
    "TooManyAttempts",
    "SessionEnded",
    "NotLoggedIn",
    "UserNotFound",
    "UsernameTaken",
    "RoomNotFound",
    "RoomExists",
    "NotAMember",
    "InvalidMessage",
    "MessageNotFound",
    "Unavailable",
    "StorageUnavailable",
    "Restarting",
    "ChatTimeout",
    "Busy",
    "RateLimited",
    "ChatClosed",
    "AdminPortInUse",
    "DatabaseInUse",
    "ClusterNeedsPostgres",
    "ClusterNeedsSecret",
    "InternalError",
]


def test_the_package_exports_exactly_the_public_names() -> None:
    assert chatactors.__all__ == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_importable_from_the_package(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from chatactors import {name}", namespace)
    assert namespace[name] is getattr(chatactors, name)


def test_star_import_gives_the_public_names_and_nothing_else() -> None:
    namespace: dict[str, object] = {}
    exec("from chatactors import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC)


def test_every_error_of_the_tree_is_public() -> None:
    assert set(errors.__all__) <= set(PUBLIC)


@pytest.mark.parametrize(
    "module",
    [
        "chatactors.errors",
        "chatactors.gateway",
        "chatactors.client",
        "chatactors.ports",
        "chatactors.messages",
    ],
)
def test_every_module_all_names_exist(module: str) -> None:
    loaded = importlib.import_module(module)
    assert [name for name in loaded.__all__ if not hasattr(loaded, name)] == []


def test_the_package_ships_its_type_information() -> None:
    assert resources.files("chatactors").joinpath("py.typed").is_file()
    setup = configparser.ConfigParser()
    setup.read(Path(chatactors.__file__).parent.parent / "setup.cfg")
    shipped = [p.strip() for p in setup["options.package_data"]["chatactors"].split(",")]
    assert "py.typed" in shipped


def test_every_folder_of_the_package_is_a_package_setuptools_ships() -> None:
    """A folder without ``__init__.py`` (the web page's ``static``) that setuptools' discovery misses
    ships anyway, but with ~45 lines of "Package would be ignored" warnings at every install."""
    setupcfg = pytest.importorskip("setuptools.config.setupcfg")
    root = Path(chatactors.__file__).parent
    options = setupcfg.read_configuration(root.parent / "setup.cfg")["options"]
    folders = {".".join(p.relative_to(root.parent).parts) for p in root.rglob("*") if p.is_dir()}
    assert set(options["packages"]) == {"chatactors"} | {f for f in folders if "__pycache__" not in f}
    assert "static/*" in options["package_data"]["chatactors"]
