"""What a newcomer meets at the server's edges: a busy port and a second server on the same SQLite
file each end in one line that says what is wrong and what to do (exit code 1, no traceback), and a
server killed with -9 leaves no lock behind it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SESSION_MARKER_FD

from chatactors import DatabaseInUse, StorageUnavailable
from chatactors.dblock import DatabaseLock, sqlite_file

ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "chatactors", "serve", "--password-profile", "cheapest"]


def serve(*args: str) -> list[str]:
    return [*SERVE, *args]


def open_files(pid: int | str) -> set[str]:
    """What the process has open; nothing if it is gone or not ours to look into."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    found = set()
    for fd in fds:
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor is)
    return found


def holders(path: Path) -> set[int]:
    """The processes that have ``path`` open."""
    return {int(pid) for pid in os.listdir("/proc") if pid.isdigit() and str(path) in open_files(pid)}


@pytest.fixture(params=["simpleSystemBase"])
def running_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``chatactors serve`` on a free port and ``tmp_path/chat.db``, up once it said how to connect."""
    url = f"sqlite:///{tmp_path}/chat.db"
    argv = serve("--port", "0", "--database-url", url, "--system", request.param)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, pass_fds=(SESSION_MARKER_FD,))
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if "Ctrl-C" in line:
                break
        else:
            raise AssertionError(f"the server did not start (exit code {proc.wait(10)})")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def refusal(argv: list[str]) -> str:
    """The one line a server that cannot start prints, checked to be only that."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- the port ---------------------------------------------------------------------------------------
def test_a_busy_port_is_one_line_that_says_how_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refusal(serve("--port", str(port), "--database-url", f"sqlite:///{tmp_path}/chat.db"))
    assert line.startswith(f"chatactors server could not start: 127.0.0.1:{port} is already in use")
    assert "make run PORT=9000" in line and "--port 9000" in line


def test_make_run_takes_the_port_from_port() -> None:
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    # -n: print what would run, run nothing; -s: leave out make's "Entering directory" lines.
    shown = subprocess.run(
        ["make", "-s", "-n", "-C", str(ROOT), "run", "PORT=9000"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "-m chatactors serve --port 9000" in shown.stdout
    default = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), "run"], capture_output=True, text=True)
    assert "-m chatactors serve --port 8765" in default.stdout


# -- the database -----------------------------------------------------------------------------------
def test_a_second_server_on_the_same_database_is_refused(
    running_server: subprocess.Popen[str], tmp_path: Path
) -> None:
    line = refusal(serve("--port", "0", "--database-url", f"sqlite:///{tmp_path}/chat.db"))
    assert line == (
        f"chatactors server could not start: sqlite:///{tmp_path}/chat.db is in use by another chatactors"
        f" server (pid {running_server.pid}): stop it, or give this one another database with --database-url"
    )
    assert running_server.poll() is None  # the first one serves on, untouched


def test_the_lock_is_per_database_file(running_server: subprocess.Popen[str], tmp_path: Path) -> None:
    with DatabaseLock(f"sqlite:///{tmp_path}/other.db"):  # what a second server would take: free
        pass
    with pytest.raises(DatabaseInUse):
        DatabaseLock(f"sqlite:///{tmp_path}/chat.db").acquire()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///chatactors.db", "chatactors.db"),
        ("sqlite:////var/lib/chat.db", "/var/lib/chat.db"),
        ("sqlite:///data/chat.db?timeout=5", "data/chat.db"),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("postgresql://postgres@127.0.0.1:5432/chat", None),
        ("chatactors.db", None),
    ],
)
def test_which_databases_have_a_file_to_lock(url: str, path: str | None) -> None:
    assert sqlite_file(url) == (None if path is None else Path(path))


def test_one_lock_per_database_released_at_exit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    with DatabaseLock(url) as first:
        assert first.path == tmp_path / "chat.db.lock"
        second = DatabaseLock(url)
        with pytest.raises(
            DatabaseInUse, match=rf"in use by another chatactors server \(pid {os.getpid()}\)"
        ):
            second.acquire()
        first.acquire()  # taking it again from the same holder changes nothing
    with second:  # released: the next one gets it
        pass


def test_a_database_in_a_missing_folder_is_one_line_too(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "chat.db"
    with pytest.raises(StorageUnavailable, match=f"cannot open {missing}.lock: No such file or directory"):
        DatabaseLock(f"sqlite:///{missing}").acquire()
    line = refusal(serve("--port", "0", "--database-url", f"sqlite:///{missing}"))
    assert line == f"chatactors server could not start: cannot open {missing}.lock: No such file or directory"


def test_postgres_and_in_memory_databases_are_not_locked(tmp_path: Path) -> None:
    for url in ("postgresql://postgres@127.0.0.1:5432/chat", "sqlite:///:memory:"):
        with DatabaseLock(url) as first, DatabaseLock(url) as second:
            assert first.path is None and second.path is None


def test_a_server_killed_with_9_leaves_no_lock(tmp_path: Path) -> None:
    """The lock is the kernel's: it ends with the process, however the process ends."""
    url = f"sqlite:///{tmp_path}/chat.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from chatactors.dblock import DatabaseLock; DatabaseLock({url!r}).acquire(); "
            "print('locked', flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(DatabaseInUse, match=f"pid {holder.pid}"):
            DatabaseLock(url).acquire()
    finally:
        holder.kill()
        holder.wait(10)
    assert holder.returncode == -signal.SIGKILL
    with DatabaseLock(url):  # the file is still there, the lock is not
        assert (tmp_path / "chat.db.lock").exists()


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    """Every actor of multiprocTCPBase is a fork: none may keep the server's lock alive after it."""
    with DatabaseLock(f"sqlite:///{tmp_path}/chat.db") as lock:
        child = os.fork()
        if child == 0:  # the child: only look, then leave at once
            try:
                os._exit(1 if str(lock.path) in open_files("self") else 0)
            finally:
                os._exit(2)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert holders(tmp_path / "chat.db.lock") == {os.getpid()}  # and the parent still holds it


@pytest.mark.multiproc
@pytest.mark.parametrize("running_server", ["multiprocTCPBase"], indirect=True)
def test_only_the_server_process_holds_the_lock_not_its_actors(
    running_server: subprocess.Popen[str], tmp_path: Path
) -> None:
    """So a kill -9 of the server frees the database at once, while its actors are still stopping."""
    assert holders(tmp_path / "chat.db.lock") == {running_server.pid}
