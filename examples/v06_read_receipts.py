"""V0.6.1: reading a message sends a confirmation back to its sender, who sees it turn 'leido'.

Run it with ``python examples/v06_read_receipts.py``.
"""

import os
import tempfile

from chatactors import Chat

DATABASE = os.environ.get("CHATACTORS_DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/chat.db"

with Chat(DATABASE) as chat:
    juan = chat.crear("juan", "secreto123")
    maria = chat.crear("maria", "secreto456")

    # Receipts are pushed to the sender's sessions the moment the reader confirms.
    juan.on_receipt(lambda receipt: print(f"juan is told: {receipt.by} read {list(receipt.message_ids)}"))

    m = juan.enviar_mensaje("maria", "¿leíste esto?")
    print(f"after sending: {juan.status(m.id)}")  # maria is online: 'entregado'

    read = maria.leer_mensajes()  # returns the unread messages and confirms them
    print(f"maria read {[x.body for x in read]}")
    print(f"after reading: {juan.status(m.id)}")  # recorded in the database: 'leido'
