"""A bot on a running server: ``chatactors.connect(url)`` gives the embedded API over the WebSocket.

The bot and juan are two sessions of one client, each its own socket, as two browsers would be; a
browser or a terminal on the same server sees the same messages live. To be self-contained this
starts a server (``python -m chatactors serve --port 0``) and stops it at the end; against yours,
``chatactors.connect("ws://127.0.0.1:8765")`` is all it takes. Run it with
``python examples/remote_bot.py``.
"""

import queue
import signal
import subprocess
import sys

import chatactors

server = subprocess.Popen(
    [sys.executable, "-m", "chatactors", "serve", "--port", "0", "--log-level", "WARNING"],
    stdout=subprocess.PIPE,
    text=True,
)
assert server.stdout is not None
url = next(line.split("--url", 1)[1].strip() for line in server.stdout if "--url" in line)
try:
    with chatactors.connect(url, echo=False, announce_login=False) as chat:
        bot = chat.crear("echobot", "secreto-bot")
        juan = chat.crear("juan", "secreto123")

        # The bot answers every message; its callback may call the client again (a thread of its own).
        bot.on_message(lambda m: bot.send_message(m.sender, f"eco: {m.body}"))
        answers: queue.Queue[chatactors.Message] = queue.Queue()
        juan.on_message(answers.put)

        sent = juan.send_message("echobot", "hola bot")
        print(f"juan sent {sent.body!r} to the bot over {url}: {sent.status}")
        print(f"juan's screen: {answers.get(timeout=10)}")
        print(f"the bot's inbox on the server: {[m.body for m in bot.inbox]}")
finally:
    server.send_signal(signal.SIGINT)
    server.communicate(timeout=30)
