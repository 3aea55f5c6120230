"""ChatSettings.from_env: arguments win, then the environment, then the defaults; bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatactors import Chat, ChatSettings, LoginPolicy
from chatactors.settings import DEFAULT_DATABASE_URL

ENV = ("CHATACTORS_DATABASE_URL", "CHATACTORS_SYSTEM", "CHATACTORS_ADMIN_PORT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_with_nothing_set() -> None:
    settings = ChatSettings.from_env()
    assert settings == ChatSettings()
    assert settings.database_url == DEFAULT_DATABASE_URL and settings.system == "simpleSystemBase"
    assert settings.admin_port is None and settings.echo is None
    assert settings.login_policy == LoginPolicy()


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATACTORS_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("CHATACTORS_SYSTEM", "multiprocTCPBase")
    monkeypatch.setenv("CHATACTORS_ADMIN_PORT", "41234")
    settings = ChatSettings.from_env()
    assert (settings.database_url, settings.system, settings.admin_port) == (
        "sqlite:///env.db",
        "multiprocTCPBase",
        41234,
    )


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATACTORS_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("CHATACTORS_SYSTEM", "simpleSystemBase")
    monkeypatch.setenv("CHATACTORS_ADMIN_PORT", "41234")
    settings = ChatSettings.from_env(
        "sqlite:///given.db", "multiprocTCPBase", admin_port=42000, idle_timeout=5.0, echo=False
    )
    assert settings.database_url == "sqlite:///given.db" and settings.system == "multiprocTCPBase"
    assert settings.admin_port == 42000 and settings.idle_timeout == 5.0 and settings.echo is False


def test_an_explicit_environment_mapping_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATACTORS_DATABASE_URL", "sqlite:///process.db")
    settings = ChatSettings.from_env(environ={"CHATACTORS_DATABASE_URL": "sqlite:///mapping.db"})
    assert settings.database_url == "sqlite:///mapping.db"


def test_the_admin_port_only_matters_on_multiproc(monkeypatch: pytest.MonkeyPatch) -> None:
    # simpleSystemBase has no admin: a port set for another run is not read, as before.
    monkeypatch.setenv("CHATACTORS_ADMIN_PORT", "not a port")
    assert ChatSettings.from_env(admin_port=5000).admin_port is None
    assert ChatSettings.from_env().admin_port is None


def test_admin_port_zero_leaves_the_choice_to_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATACTORS_ADMIN_PORT", "0")
    assert ChatSettings.from_env(system="multiprocTCPBase").admin_port is None


@pytest.mark.parametrize("system", ["multiproc", "", "simplesystembase"])
def test_an_unknown_system_is_refused(system: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if system:
        with pytest.raises(ValueError, match="system must be one of"):
            ChatSettings.from_env(system=system)
    monkeypatch.setenv("CHATACTORS_SYSTEM", system or "nonsense")
    with pytest.raises(ValueError, match="system must be one of"):
        ChatSettings.from_env()
    with pytest.raises(ValueError, match="system must be one of"):
        ChatSettings(system=system or "nonsense")


@pytest.mark.parametrize("raw", ["abc", "80.5", "-1", "65536", "99999"])
def test_a_bad_admin_port_in_the_environment_is_refused(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATACTORS_ADMIN_PORT", raw)
    with pytest.raises(ValueError, match="CHATACTORS_ADMIN_PORT|admin_port"):
        ChatSettings.from_env(system="multiprocTCPBase")


@pytest.mark.parametrize("port", [-1, 65536, True])
def test_a_bad_admin_port_argument_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="admin_port"):
        ChatSettings.from_env(system="multiprocTCPBase", admin_port=port)
    with pytest.raises(ValueError, match="admin_port"):
        ChatSettings(system="multiprocTCPBase", admin_port=port)


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError):
        ChatSettings.from_env(idle_timeot=5.0)


def test_settings_are_frozen() -> None:
    settings = ChatSettings.from_env()
    with pytest.raises(AttributeError):
        settings.system = "multiprocTCPBase"  # type: ignore[misc]


def test_a_chat_refuses_bad_settings_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATACTORS_SYSTEM", "nonsense")
    with pytest.raises(ValueError, match="system must be one of"):
        Chat(f"sqlite:///{tmp_path}/never.db")
    assert not (tmp_path / "never.db").exists()  # no schema created for a chat that cannot start


def test_a_chat_keeps_the_settings_it_started_with(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with Chat(url, echo=False, idle_timeout=7.0) as chat:
        assert chat.settings == ChatSettings.from_env(url, echo=False, idle_timeout=7.0)
        assert chat.database_url == url and chat.system == "simpleSystemBase" and chat.admin_port is None
        assert chat.config.idle_timeout == 7.0
