"""V0.2: register and log in against the database; a session's ``pid`` is its user actor.

Here every actor is its own OS process (``multiprocTCPBase``), so the "Process ID" of the roadmap is
both an actor address and a real process. Run it with ``python examples/v02_register_login.py``.
"""

import os
import tempfile

from chatactors import AuthenticationError, Chat, UsernameTaken

DATABASE = os.environ.get("CHATACTORS_DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/chat.db"

# The admin listens on a free port of 127.0.0.1 (never Thespian's shared default, 1900).
with Chat(DATABASE, system="multiprocTCPBase") as chat:
    uid = chat.register("juan", "secreto123")  # the password is stored as an argon2id hash
    print(f"registered juan with id {uid}")

    juan = chat.login("juan", "secreto123")  # prints "usuario logeado"
    print(f"juan's pid (actor address): {juan.pid}")  # #PID<user:1 @127.0.0.1:PORT>: its own socket
    print(f"juan's actor runs in OS process {chat.os_pid(juan.pid)}; this script is {os.getpid()}")

    # A wrong password and an unknown user fail the same way: nobody learns which names exist.
    for user, password in [("juan", "incorrecta"), ("nadie", "incorrecta")]:
        try:
            chat.login(user, password)
        except AuthenticationError as error:
            print(f"login({user!r}) -> AuthenticationError: {error}")

    try:
        chat.register("juan", "otra-clave-123")
    except UsernameTaken as error:
        print(f"register('juan') again -> UsernameTaken: {error}")

    # The session token logs in again without the password (it is stored hashed, with an expiry).
    again = chat.login(token=juan.token)
    print(f"logged in again with the token as {again.username} (id {again.user_id})")
