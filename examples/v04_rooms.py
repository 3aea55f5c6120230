"""V0.4: a group room is its own actor, and a message reaches every member, online or not.

Run: python examples/v04_rooms.py
"""

import tempfile

from chatactors import Chat

# A throwaway database so the example starts from nothing; drop database_url to use ./chatactors.db.
with tempfile.TemporaryDirectory() as tmp, Chat(database_url=f"sqlite:///{tmp}/chat.db", echo=True) as chat:
    juan = chat.crear("juan", "secreto123")
    maria = chat.crear("maria", "secreto456")
    pedro = chat.crear("pedro", "secreto789")

    juan.create_room("general")
    maria.join("general")
    pedro.join("general")
    print("room actors running while members are active:", chat.stats().live_rooms)

    pedro.logout()  # pedro is offline now
    juan.send_room("general", "hola a todos")  # maria's session prints it at once

    pedro = chat.login("pedro", "secreto789")  # ...and pedro finds it at login
    print("pedro's inbox:", [str(m) for m in pedro.inbox])
    print("rooms of maria:", maria.rooms())
