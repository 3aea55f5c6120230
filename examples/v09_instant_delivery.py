"""V0.9: an online recipient sees a message the moment it arrives; an offline one finds it later.

Case A (maria online): the directory knows her live sessions and the message is pushed to them.
Case B (pedro offline): it is only written to the database, and shows up when he logs in.
Run it with ``python examples/v09_instant_delivery.py``.
"""

import os
import tempfile

from chatactors import Chat

DATABASE = os.environ.get("CHATACTORS_DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/chat.db"

with Chat(DATABASE) as chat:
    juan = chat.crear("juan", "secreto123")
    maria = chat.crear("maria", "secreto456")
    chat.register("pedro", "secreto789")  # exists, but not logged in

    # What maria's "open conversation" does with each message that arrives (a REPL just prints it).
    maria.on_message(lambda message: print(f"maria's screen: {message}"))

    a = juan.enviar_mensaje("maria", "¿estás ahí?")
    print(f"case A: status {a.status}")  # 'entregado': it reached a live session

    b = juan.enviar_mensaje("pedro", "te escribo para cuando vuelvas")
    print(f"case B: status {b.status}")  # 'enviado': stored only

    pedro = chat.login("pedro", "secreto789")
    print(f"pedro logs in and finds: {[m.body for m in pedro.inbox]}")
