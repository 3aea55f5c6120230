"""V0.8: user actors start on demand, hibernate when idle, and come back when needed.

The supervisor starts a user's actor the first time something is addressed to that user id; the
directory (the Registry of the roadmap, keyed by database id) knows where it lives. After
``idle_timeout`` seconds without work an actor retires; the next message starts it again, with its
state reloaded from the database. Run it with ``python examples/v08_supervisor_hibernation.py``.
"""

import os
import tempfile
import time

from chatactors import Chat

DATABASE = os.environ.get("CHATACTORS_DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/chat.db"

# One second of idleness instead of the default five minutes, to see it happen.
with Chat(DATABASE, idle_timeout=1.0) as chat:
    juan = chat.crear("juan", "secreto123")
    maria = chat.crear("maria", "secreto456")
    s = chat.stats()
    print(f"after login: {s.live_users} live user actors, {s.online_users} users online")

    print("doing nothing for a while...")
    deadline = time.monotonic() + 10
    while chat.stats().live_users and time.monotonic() < deadline:
        time.sleep(0.1)
    s = chat.stats()
    print(
        f"hibernated: {s.live_users} live user actors, {s.retirements} retirements, still {s.online_users} online"
    )

    # A message to a hibernated user starts her actor again; she is online, so it is pushed at once.
    m = juan.enviar_mensaje("maria", "¡despierta!")
    s = chat.stats()
    print(f"after a message to maria ({m.status}): {s.activations} activations in all")
    print(f"maria's actor lives again at {chat.whereis(maria.user_id)}")
