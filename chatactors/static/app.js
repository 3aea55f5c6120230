// chatactors chat page: one WebSocket, the JSON protocol of docs/protocol.md, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const TICKS = { pending: "…", enviado: "✓", entregado: "✓✓", leido: "✓✓", failed: "!" };
const RANK = { failed: 0, pending: 0, enviado: 1, entregado: 2, leido: 3 };
const state = {
  ws: null, me: null, token: localStorage.getItem("chatactors.token"), retry: 0,
  convs: new Map(),      // "@maria" or "#general" -> {key, title, room, peerId, msgs, unread (ids), online}
  byId: new Map(),       // message id -> message (receipts update them in place)
  pending: new Map(),    // client_id -> message not yet acknowledged (resent after a reconnect)
  current: null,
  presenceTimer: 0,
};

// -- connection -----------------------------------------------------------------------------------
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`);
  state.ws = ws;
  ws.onopen = () => {
    setConn(true);
    if (state.token) send({ type: "login", token: state.token });
    else showLogin();
  };
  ws.onmessage = (event) => onFrame(JSON.parse(event.data));
  ws.onclose = (event) => {
    setConn(false);
    if (state.ws !== ws) return;
    state.ws = null;
    if (event.code === 1008 || event.code === 1009) $("chat-error").textContent = `closed: ${event.reason}`;
    const wait = Math.min(30000, 500 * 2 ** state.retry++);  // back off, then resume with the token
    setTimeout(connect, wait);
  };
}

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
}

function setConn(online) {
  $("conn").textContent = online ? "online" : "offline";
  $("conn").classList.toggle("online", online);
}

// -- frames from the server -------------------------------------------------------------------------
const handlers = {
  logged_in(f) {
    state.retry = 0;
    state.me = { id: f.user_id, name: f.username };
    state.token = f.token;
    localStorage.setItem("chatactors.token", f.token);
    $("me").textContent = f.username;
    showChat();
    f.inbox.forEach(addMessage);
    send({ type: "history", limit: 200 });
    send({ type: "rooms" });
    for (const [clientId, m] of state.pending) sendPending(clientId, m);  // same client_id: stored once
  },
  logged_out() { forget(); showLogin(); },
  message(f) {
    const fresh = !state.byId.has(f.id);
    const c = addMessage(f);
    if (fresh && f.sender_id !== state.me.id) {
      c.unread.add(f.id);
      if (c === state.current && document.visibilityState === "visible") markRead(c);
    }
    render();
  },
  sent(f) {
    const m = state.pending.get(f.client_id);
    state.pending.delete(f.client_id);
    if (!m) { addMessage(f.message); render(); return; }
    const c = conv(convKey(m));
    if (state.byId.has(f.id)) c.msgs = c.msgs.filter((x) => x !== m);  // a push got here first
    else { Object.assign(m, f.message, { mine: true }); state.byId.set(m.id, m); }
    c.msgs.sort(byId);
    render();
  },
  receipt(f) {                                          // entregado, then leido: the ticks move on
    const m = state.byId.get(f.id);
    if (m) { advance(m, f.status); render(); }
  },
  marked_read(f) {                                      // only what this read named was marked
    for (const m of f.messages) {
      const c = state.convs.get(convKey(m));
      if (c) c.unread.delete(m.id);
      const known = state.byId.get(m.id);
      if (known) advance(known, m.status);
    }

    if (f.room) {                                       // the room's cursor passed what it counted
      const c = state.convs.get("#" + f.room);
      if (c) c.roomUnread = 0;
    }
    render();
  },
  read_sync(f) {                                        // read on one of my sessions (maybe another device)
    for (const id of f.ids) {
      const known = state.byId.get(id);
      if (!known) continue;
      const c = state.convs.get(convKey(known));
      if (c && c.unread.delete(id) === false && known.room && c.roomUnread) c.roomUnread -= 1;
      advance(known, "leido");
    }
    render();
  },
  history(f) {
    f.messages.forEach(addMessage);
    if (!f.room && !f.with) {                           // the first load: unread direct messages
      for (const m of f.messages) {
        if (m.recipient_id === state.me.id && m.status !== "leido") conv(convKey(m)).unread.add(m.id);
      }
      askPresenceSoon();
    }
    const c = f.room ? state.convs.get("#" + f.room) : f.with ? state.convs.get("@" + f.with) : null;
    if (c && c === state.current && document.visibilityState === "visible") markRead(c);  // now shown
    render();
  },
  rooms(f) {
    for (const r of f.rooms) {
      const c = conv("#" + r.name);
      c.roomUnread = Math.max(0, r.unread - c.unread.size);  // counts only, no ids
    }
    render();
  },
  joined(f) { openConv("#" + f.room); },
  left(f) {
    const c = state.convs.get("#" + f.room);
    state.convs.delete("#" + f.room);
    if (state.current === c) state.current = null;
    render();
  },
  presence(f) {
    const online = new Set(f.online);
    for (const c of state.convs.values()) if (c.peerId) c.online = online.has(c.peerId);
    render();
  },
  pong() {},
  error(f) {
    if (f.request === "login" && state.token && f.code === "auth_failed") { forget(); showLogin(); return; }
    if (f.request === "join" && f.code === "room_not_found") { send({ type: "create_room", room: f.room }); return; }
    if (f.client_id && state.pending.has(f.client_id)) state.pending.get(f.client_id).status = "failed";
    if (f.request === "history" && f.with) state.convs.delete("@" + f.with);
    const target = state.me ? "chat-error" : "login-error";
    $(target).textContent = f.detail || f.code;
    render();
  },
};

function onFrame(f) {
  (handlers[f.type] || (() => {}))(f);
}

// -- the model --------------------------------------------------------------------------------------
function convKey(m) {
  if (m.room) return "#" + m.room;
  return "@" + (m.sender_id === state.me.id ? m.recipient : m.sender);
}

function conv(key) {
  if (!state.convs.has(key)) {
    state.convs.set(key, { key, title: key.startsWith("#") ? key : key.slice(1), room: key.startsWith("#") ? key.slice(1) : null,
      peerId: null, msgs: [], unread: new Set(), roomUnread: 0, online: false });
  }
  return state.convs.get(key);
}

function addMessage(m) {
  const c = conv(convKey(m));
  if (!c.room && !c.peerId) {
    c.peerId = m.sender_id === state.me.id ? m.recipient_id : m.sender_id;
    askPresenceSoon();  // someone new in the list: is she online?
  }
  const known = state.byId.get(m.id);
  if (known) { advance(known, m.status); return c; }
  const copy = { ...m, mine: m.sender_id === state.me.id };
  state.byId.set(m.id, copy);
  c.msgs.push(copy);
  c.msgs.sort(byId);
  return c;
}

function advance(m, status) {
  // Statuses only move forward; a reply that left the server before a receipt must not undo it.
  if ((RANK[status] ?? 0) >= (RANK[m.status] ?? 0)) m.status = status;
}

function byId(a, b) {
  return (a.id ?? Infinity) - (b.id ?? Infinity);  // unacknowledged messages stay last
}

function unread(c) {
  return c.unread.size + c.roomUnread;
}

function forget() {
  localStorage.removeItem("chatactors.token");
  Object.assign(state, { me: null, token: null, current: null });
  state.convs.clear(); state.byId.clear(); state.pending.clear();
}

function markRead(c) {
  // Read this conversation only, up to the newest message shown in it: other badges stay.
  if (!c || !unread(c)) return;
  const upTo = c.msgs.reduce((top, m) => Math.max(top, m.id ?? 0), 0);
  if (!upTo) return;                                    // nothing shown yet: its history will call again
  if (c.room) send({ type: "read", room: c.room, up_to: upTo });
  else send({ type: "read", with: c.title, up_to: upTo });
}

function askPresence() {
  clearTimeout(state.presenceTimer);
  const ids = [...state.convs.values()].map((c) => c.peerId).filter((id) => id);
  if (ids.length) send({ type: "presence", user_ids: ids });
}

function askPresenceSoon() {
  clearTimeout(state.presenceTimer);
  state.presenceTimer = setTimeout(askPresence, 200);  // one question for a burst of new names
}

function openConv(key) {
  const c = conv(key);
  state.current = c;
  $("chat-error").textContent = "";
  if (c.room) send({ type: "history", room: c.room, limit: 50 });
  else send({ type: "history", with: c.title, limit: 50 });  // its answer reads what it shows
  render();
  $("body").focus();
}

function sendPending(clientId, m) {
  if (m.room) send({ type: "send_room", room: m.room, body: m.body, client_id: clientId });
  else send({ type: "send", to: m.recipient, body: m.body, client_id: clientId });
}

function say(body) {
  const c = state.current;
  const clientId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const m = { id: null, body, sender: state.me.name, sender_id: state.me.id, mine: true, status: "pending",
    sent_at: new Date().toISOString(), room: c.room, recipient: c.room ? null : c.title, clientId };
  state.pending.set(clientId, m);
  c.msgs.push(m);
  sendPending(clientId, m);
  render();
}

// -- the view ---------------------------------------------------------------------------------------
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;  // never innerHTML: bodies are user input
  return node;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function render() {
  const list = $("convs");
  list.replaceChildren();
  const convs = [...state.convs.values()].sort((a, b) => lastId(b) - lastId(a));
  for (const c of convs) {
    const li = el("li", c === state.current ? "active" : "");
    li.dataset.key = c.key;
    if (!c.room) li.append(el("span", "presence" + (c.online ? " online" : "")));
    const name = el("span", "conv-name", c.title);
    const last = c.msgs[c.msgs.length - 1];
    if (last) name.append(el("span", "conv-last", (last.mine ? "you: " : c.room ? `${last.sender}: ` : "") + last.body));
    li.append(name);
    if (unread(c) > 0) li.append(el("span", "badge", String(unread(c))));
    li.onclick = () => openConv(c.key);
    list.append(li);
  }
  const c = state.current;
  $("composer").hidden = !c;
  $("pane-title").textContent = c ? (c.room ? c.title : `${c.title}${c.online ? " · online" : ""}`)
    : "Pick a conversation, or type a username or #room on the left.";
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren();
  for (const m of c ? c.msgs : []) {
    const li = el("li", "msg" + (m.mine ? " mine" : "") + (m.status === "failed" ? " failed" : ""));
    if (c.room && !m.mine) li.append(el("span", "who", m.sender));
    li.append(el("span", "body", m.body));
    const meta = el("span", "meta", clock(m.sent_at));
    if (m.mine) {
      const tick = el("span", "tick", TICKS[m.status] || "");
      tick.dataset.status = m.status;
      tick.title = m.status;
      meta.append(tick);
    }
    li.append(meta);
    if (m.status === "failed") {
      li.title = "not sent: click to try again";
      li.onclick = () => { m.status = "pending"; state.pending.set(m.clientId, m); sendPending(m.clientId, m); render(); };
    }
    box.append(li);
  }
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function lastId(c) {
  const last = c.msgs[c.msgs.length - 1];
  return last ? last.id ?? Number.MAX_SAFE_INTEGER : 0;
}

function showLogin() {
  $("login-view").hidden = false;
  $("chat-view").hidden = true;
  $("logout").hidden = true;
  $("me").textContent = "";
  $("username").focus();
}

function showChat() {
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("logout").hidden = false;
  $("login-error").textContent = "";
  render();
}

// -- user actions -----------------------------------------------------------------------------------
function credentials() {
  return { username: $("username").value.trim(), password: $("password").value };
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); send({ type: "login", ...credentials() }); });
$("register-btn").addEventListener("click", () => send({ type: "register", ...credentials() }));
$("logout").addEventListener("click", () => send({ type: "logout" }));
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = $("body").value;
  if (!body.trim() || !state.current) return;
  $("body").value = "";
  say(body);
});
$("new-conv-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("new-conv").value.trim();
  $("new-conv").value = "";
  if (name.startsWith("#")) send({ type: "join", room: name.slice(1) });
  else if (name && name !== state.me.name) openConv("@" + name);
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead(state.current);
});
setInterval(() => { if (state.me) askPresence(); }, 20000);

connect();
