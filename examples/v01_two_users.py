"""V0.1: two users, each a live actor, send each other messages.

The roadmap's verbs: ``crear`` (register if new, then log in), ``enviar_mensaje`` and
``leer_mensajes``. Run it with ``python examples/v01_two_users.py``.
"""

import os
import tempfile

from chatactors import Chat

# A fresh SQLite file for every run, unless CHATACTORS_DATABASE_URL names another (empty) database.
DATABASE = os.environ.get("CHATACTORS_DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/chat.db"

# echo=True prints each message the moment it reaches a logged-in user, as a REPL does by default.
with Chat(DATABASE, echo=True) as chat:
    juan = chat.crear("juan", "secreto123")  # prints "usuario logeado"
    maria = chat.crear("maria", "secreto456")

    juan.enviar_mensaje("maria", "hola maria")  # by username...
    maria.enviar_mensaje(juan, "hola juan, ¿cómo estás?")  # ...or by Session (or by user id)

    # leer_mensajes returns the unread messages, oldest first, and marks them read.
    for message in maria.leer_mensajes():
        print(f"maria read: {message.body!r} from {message.sender} ({message.status})")
    for message in juan.leer_mensajes():
        print(f"juan read: {message.body!r} from {message.sender} ({message.status})")
    print("maria reads again:", maria.leer_mensajes())  # nothing is returned twice
