"""V0.3: every message is written to the table ``mensajes`` (sender, recipient, body, status).

Run it with ``python examples/v03_persisted_messages.py``.
"""

import os
import tempfile

from playhouse.db_url import connect

from chatactors import Chat

DATABASE = os.environ.get("CHATACTORS_DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/chat.db"

with Chat(DATABASE) as chat:
    juan = chat.crear("juan", "secreto123")
    maria = chat.crear("maria", "secreto456")
    # A message is acknowledged only after its row is committed.
    first = juan.enviar_mensaje("maria", "hola maria")
    juan.enviar_mensaje(maria.user_id, "¿vienes mañana?")
    maria.enviar_mensaje("juan", "sí, allí estaré")
    print(f"juan sent message {first.id} at {first.sent_at:%H:%M:%S} UTC, status {first.status}")

# The chat is shut down; the rows are still there. Read them with plain SQL.
db = connect(DATABASE)
rows = db.execute_sql(
    "SELECT m.id, s.username, r.username, m.body, m.status FROM mensajes m "
    "JOIN users s ON s.id = m.sender_id JOIN users r ON r.id = m.recipient_id ORDER BY m.id"
)
print("table mensajes:")
for ident, sender, recipient, body, status in rows:
    print(f"  {ident}: {sender} -> {recipient}: {body!r} ({status})")
db.close()
