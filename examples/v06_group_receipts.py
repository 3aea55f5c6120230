"""V0.6.2: read receipts in a group: who has read it, and 'leido' once every member has.

Run: python examples/v06_group_receipts.py
"""

import tempfile

from chatactors import Chat

with tempfile.TemporaryDirectory() as tmp, Chat(database_url=f"sqlite:///{tmp}/chat.db") as chat:
    juan = chat.crear("juan", "secreto123")
    maria = chat.crear("maria", "secreto456")
    pedro = chat.crear("pedro", "secreto789")
    juan.create_room("general")
    maria.join("general")
    pedro.join("general")
    juan.on_receipt(lambda receipt: print("juan is told:", receipt))

    m = juan.send_room("general", "hola a todos")
    maria.read_messages()
    print("read by:", juan.read_by(m.id), "status:", juan.status(m.id))  # ['maria'] entregado
    pedro.read_messages()
    print("read by:", juan.read_by(m.id), "status:", juan.status(m.id))  # ['maria', 'pedro'] leido
