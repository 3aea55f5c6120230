"""Every ``examples/*.py`` runs as a user would run it, on a fresh SQLite file, and says what it shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SESSION_MARKER_FD

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# What these roadmap examples must print (in this order); other examples must just run cleanly.
EXPECTED: dict[str, list[str]] = {
    "v01_two_users.py": [
        "usuario logeado",
        "[juan -> maria] hola maria",
        "maria read: 'hola maria' from juan (leido)",
        "juan read: 'hola juan, ¿cómo estás?' from maria (leido)",
        "maria reads again: []",
    ],
    "v02_register_login.py": [
        "registered juan with id 1",
        "usuario logeado",
        "juan's pid (actor address): #PID<user:1 @127.0.0.1:",
        "login('juan') -> AuthenticationError: ",
        "login('nadie') -> AuthenticationError: ",
        "register('juan') again -> UsernameTaken",
        "logged in again with the token as juan (id 1)",
    ],
    "v03_persisted_messages.py": [
        "juan sent message 1 at ",
        "table mensajes:",
        "1: juan -> maria: 'hola maria' (entregado)",
        "2: juan -> maria: '¿vienes mañana?' (entregado)",
        "3: maria -> juan: 'sí, allí estaré' (entregado)",
    ],
    "v06_read_receipts.py": [
        "after sending: entregado",
        "maria read ['¿leíste esto?']",
        "after reading: leido",
    ],
    "v07_login_by_id_inbox.py": [
        "juan sent 12 messages to user 2 while she was offline",
        "maria's inbox (last 10, newest last):",
        "juan: mensaje 3 (entregado)",
        "juan: mensaje 12 (entregado)",
        "after stop_actor the inbox still ends with 'mensaje 12'",
        "older: ['mensaje 1', 'mensaje 2']",
    ],
    "v08_supervisor_hibernation.py": [
        "2 users online",  # how many actors are still live by then depends on the machine's speed
        "hibernated: 0 live user actors, 2 retirements, still 2 online",
        "after a message to maria (entregado): ",
        "maria's actor lives again at #PID<user:2 @",
    ],
    "remote_bot.py": [
        "juan sent 'hola bot' to the bot over ws://127.0.0.1:",
        "juan's screen: [echobot -> juan] eco: hola bot",
        "the bot's inbox on the server: ['hola bot']",
    ],
    "v09_instant_delivery.py": [
        "maria's screen: [juan -> maria] ¿estás ahí?",
        "case A: status entregado",
        "case B: status enviado",
        "pedro logs in and finds: ['te escribo para cuando vuelvas']",
    ],
}
# Printed from the push thread, so its place among the other lines is not fixed.
ANYWHERE = {"v06_read_receipts.py": ["juan is told: maria read [1]"]}


def test_every_example_with_expected_output_exists() -> None:
    assert set(EXPECTED) <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CHATACTORS_DATABASE_URL": f"sqlite:///{tmp_path}/example.db",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONIOENCODING": "utf-8",
    }
    env.pop("CHATACTORS_SYSTEM", None)  # each example runs on the base it chooses (the default)
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        pass_fds=(SESSION_MARKER_FD,),  # so the session's leftover check can find what it leaves
    )
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{path.name} printed nothing"
    assert "Traceback" not in result.stderr, f"{path.name} logged an error:\n{result.stderr}"
    lines = result.stdout.splitlines()
    position = 0
    for expected in EXPECTED.get(path.name, []):
        for index in range(position, len(lines)):
            if expected in lines[index]:
                position = index + 1
                break
        else:
            raise AssertionError(f"{path.name}: {expected!r} not printed (in order):\n{result.stdout}")
    for expected in ANYWHERE.get(path.name, []):
        assert expected in result.stdout, f"{path.name}: {expected!r} not printed:\n{result.stdout}"
    assert not list(tmp_path.glob("chatactors.db*")), "the example ignored CHATACTORS_DATABASE_URL"
