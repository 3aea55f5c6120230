"""V0.7: log in by database id and get the last 10 messages received, after a disconnection.

The disconnection is simulated twice: by closing the whole chat (like quitting iex) and by stopping
the user's actor (like GenServer.stop). Run it with ``python examples/v07_login_by_id_inbox.py``.
"""

import os
import tempfile

from chatactors import Chat

DATABASE = os.environ.get("CHATACTORS_DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/chat.db"
# This example logs in several times; the cheapest argon2 parameters keep it quick. Never use them
# for real accounts: the default profile is what makes stolen hashes expensive to crack.
FAST = {"password_profile": "cheapest"}

with Chat(DATABASE, **FAST) as chat:
    juan = chat.crear("juan", "secreto123")
    maria_id = chat.register("maria", "secreto456")  # registered, never logged in: offline
    for i in range(1, 13):
        juan.enviar_mensaje(maria_id, f"mensaje {i}")
    print(f"juan sent 12 messages to user {maria_id} while she was offline")
# The chat is gone, as when the REPL closes.

with Chat(DATABASE, **FAST) as chat:
    maria = chat.login(maria_id, "secreto456")  # by database id
    print("maria's inbox (last 10, newest last):")
    for message in maria.inbox:
        print(f"  {message.id}: {message.sender}: {message.body} ({message.status})")

    chat.stop_actor(maria.user_id)  # GenServer.stop: her state is rebuilt from the database
    print(f"after stop_actor the inbox still ends with {maria.inbox[-1].body!r}")

    older = maria.history(limit=10, before=maria.inbox[0].id)  # page further back
    print(f"older: {[m.body for m in older]}")
