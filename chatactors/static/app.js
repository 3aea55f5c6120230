// chatactors chat page: one WebSocket, the JSON protocol of docs/protocol.md, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const TICKS = { pending: "…", enviado: "✓", entregado: "✓✓", leido: "✓✓", failed: "!" };
const RANK = { failed: 0, pending: 0, enviado: 1, entregado: 2, leido: 3 };
const NAME = /^[A-Za-z0-9_.-]{3,32}$/;      // usernames and room names (docs/protocol.md)
const PREFIX = /^[A-Za-z0-9_.-]{1,32}$/;    // what the search frame takes
const PAGE = 50;                            // messages per history page
const TYPING_EVERY = 3000;                  // ms between two typing notices while one types
const TYPING_SHOWN = 6000;                  // ms a peer's notice stays without another
const PHONE = matchMedia("(max-width: 600px)");   // style.css: the list and the conversation are two screens
const state = {
  ws: null, me: null, token: localStorage.getItem("chatactors.token"), retry: 0,
  convs: new Map(),      // "@maria" or "#general" -> conversation (see conv())
  byId: new Map(),       // message id -> message (receipts update them in place)
  pending: new Map(),    // client_id -> message not yet acknowledged (resent after a reconnect)
  current: null,
  presenceTimer: 0,
  searchTimer: 0,
  lookup: null,          // a name typed and entered: opened once the server says it exists
  joining: null,         // a room asked to join: if it does not exist, the page asks before creating
  offerCreate: null,     // the room name "Create room #x?" is about
  results: null,         // the last search answer for what is in the find box
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
    if (state.current) openConv(state.current.key);     // back after a reconnect: catch up on it
    for (const [clientId, m] of state.pending) sendPending(clientId, m);  // same client_id: stored once
  },
  logged_out(f) { forget(!f.token_valid); showLogin(); },  // a token still valid stays for the other tabs
  message(f) {
    const fresh = !state.byId.has(f.id);
    const c = addMessage(f);
    c.typing.delete(f.sender);                          // what they were typing has arrived
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
      const c = findConv("#" + f.room);
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
    const c = f.room ? findConv("#" + f.room) : f.with ? findConv("@" + f.with) : null;
    const box = $("messages");
    const fromBottom = box.scrollHeight - box.scrollTop;  // an older page goes above what is shown
    f.messages.forEach(addMessage);
    if (!f.room && !f.with) {                           // the first load: unread direct messages
      for (const m of f.messages) {
        if (m.recipient_id === state.me.id && m.status !== "leido") conv(convKey(m)).unread.add(m.id);
      }
      askPresenceSoon();
    }
    if (c) {
      if (f.messages.length < PAGE) c.complete = true;  // nothing further back
      c.loaded = true;
      if (f.before !== undefined) c.loadingOlder = false;
      if (c === state.current && document.visibilityState === "visible") markRead(c);  // now shown
    }
    render();
    if (c && c === state.current && f.before !== undefined) box.scrollTop = box.scrollHeight - fromBottom;
    fillScreen();
  },
  rooms(f) {
    for (const r of f.rooms) {
      const c = conv("#" + r.name);
      c.roomUnread = Math.max(0, r.unread - c.unread.size);  // counts only, no ids
      c.memberCount = r.members;
    }
    render();
  },
  joined(f) {
    state.joining = null;
    hideCreate();
    openConv("#" + f.room);
    send({ type: "rooms" });                            // its unread count and members
  },
  left(f) {
    const c = findConv("#" + f.room);
    if (c) state.convs.delete(c.key);
    if (state.current === c) state.current = null;
    render();
  },
  presence(f) {
    const online = new Set(f.online);
    for (const c of state.convs.values()) if (c.peerId) c.online = online.has(c.peerId);
    render();
  },
  results(f) {
    if (state.lookup && f.prefix.toLowerCase() === state.lookup.toLowerCase()) {
      const name = state.lookup;
      state.lookup = null;
      const user = f.users.find((u) => u.username.toLowerCase() === name.toLowerCase());
      if (!user) { $("find-error").textContent = `no such user: ${name}`; return; }
      openPeer(user);
      return;
    }
    if (f.prefix.toLowerCase() === findPrefix().toLowerCase()) { state.results = f; showResults(); }
  },
  members(f) {
    const c = findConv("#" + f.room);
    if (!c) return;
    c.members = f.members;
    c.memberCount = f.members.length;
    render();
  },
  typing(f) {
    const c = findConv(f.room ? "#" + f.room : "@" + f.from);
    if (!c) return;                                     // someone not in my list yet: nothing to show
    c.typing.set(f.from, Date.now() + TYPING_SHOWN);
    setTimeout(render, TYPING_SHOWN + 50);
    render();
  },
  pong() {},
  error(f) {
    if (f.request === "login" && state.token && f.code === "auth_failed") { forget(); showLogin(); return; }
    if (f.request === "login" && state.token && f.code === "too_many_attempts") {
      // Token logins from this address wait a moment (made-up tokens from it): the token is fine.
      const ws = state.ws, wait = Math.max(1, f.retry_after || 1);
      $("conn").textContent = `resuming in ${wait} s`;
      setTimeout(() => { if (state.ws === ws) send({ type: "login", token: state.token }); }, 1000 * wait);
      return;
    }
    if (f.request === "join" && f.code === "room_not_found" && state.joining) {
      offerCreate(state.joining);                       // joining never creates: ask first
      state.joining = null;
      return;
    }
    if (f.request === "search" && state.lookup) {       // a name no user can have
      $("find-error").textContent = `no such user: ${state.lookup}`;
      state.lookup = null;
      return;
    }
    if (f.request === "typing") return;                 // a notice that did not go out: nobody waits for it
    if (f.client_id && state.pending.has(f.client_id)) state.pending.get(f.client_id).status = "failed";
    const target = !state.me ? "login-error" : ["join", "create_room"].includes(f.request) ? "find-error" : "chat-error";
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
  const known = findConv(key);                          // names are case-insensitive
  if (known) return known;
  const room = key.startsWith("#") ? key.slice(1) : null;
  const c = { key, title: room ? key : key.slice(1), room, peerId: null, online: false, msgs: [],
    unread: new Set(), roomUnread: 0, loaded: false, complete: false, loadingOlder: false,
    typing: new Map(), typingSentAt: 0, members: null, memberCount: 0 };
  state.convs.set(key, c);
  return c;
}

function findConv(key) {
  if (state.convs.has(key)) return state.convs.get(key);
  const lower = key.toLowerCase();
  for (const c of state.convs.values()) if (c.key.toLowerCase() === lower) return c;
  return null;
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

function typists(c) {
  const now = Date.now();
  for (const [who, until] of c.typing) if (until <= now) c.typing.delete(who);
  return [...c.typing.keys()];
}

function forget(stored = true) {
  if (stored) localStorage.removeItem("chatactors.token");
  Object.assign(state, { me: null, token: null, current: null, lookup: null, joining: null, results: null });
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
  const c = state.current;
  if (c && c.room && !$("members-panel").hidden) send({ type: "members", room: c.room });
}

function askPresenceSoon() {
  clearTimeout(state.presenceTimer);
  state.presenceTimer = setTimeout(askPresence, 200);  // one question for a burst of new names
}

function openConv(key) {
  const c = conv(key);
  // On a phone the conversation is a second screen: the system's back gesture returns to the list.
  if (PHONE.matches && !state.current) history.pushState({ conv: true }, "");
  if (state.current !== c) $("members-panel").hidden = true;
  state.current = c;
  $("chat-error").textContent = "";
  if (c.room) {
    send({ type: "history", room: c.room, limit: PAGE });
    send({ type: "members", room: c.room });
  } else {
    send({ type: "history", with: c.title, limit: PAGE });  // its answer reads what it shows
  }
  render();
  $("messages").scrollTop = $("messages").scrollHeight;
  if (!PHONE.matches) $("body").focus();                // a phone would pop its keyboard over the messages
}

function openPeer(user) {
  // A user the server named: the conversation exists only now, with her presence known.
  const c = conv("@" + user.username);
  c.peerId = user.id;
  c.online = user.online;
  clearFind();
  openConv(c.key);
}

function closeConv() {
  // The phone's back button: the list again.
  state.current = null;
  $("members-panel").hidden = true;
  render();
}

function loadOlder(c) {
  if (!c || !c.loaded || c.complete || c.loadingOlder) return;
  const oldest = c.msgs.reduce((low, m) => (m.id && m.id < low ? m.id : low), Infinity);
  if (oldest === Infinity) { c.complete = true; return; }
  c.loadingOlder = true;
  if (c.room) send({ type: "history", room: c.room, limit: PAGE, before: oldest });
  else send({ type: "history", with: c.title, limit: PAGE, before: oldest });
  render();
}

function fillScreen() {
  // Too few messages to scroll: nothing would ever ask for older ones, so ask now.
  const box = $("messages");
  if (state.current && box.scrollHeight <= box.clientHeight) loadOlder(state.current);
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
  c.typingSentAt = 0;                                   // typing again after this is news
  sendPending(clientId, m);
  render();
  $("messages").scrollTop = $("messages").scrollHeight;
}

function typing() {
  const c = state.current;
  if (!c || !$("body").value.trim() || Date.now() - c.typingSentAt < TYPING_EVERY) return;
  c.typingSentAt = Date.now();
  send(c.room ? { type: "typing", room: c.room } : { type: "typing", to: c.title });
}

// -- finding a user or a room ----------------------------------------------------------------------------
function findPrefix() {
  return $("new-conv").value.trim().replace(/^[#@]/, "");
}

function searchSoon() {
  clearTimeout(state.searchTimer);
  state.results = null;
  $("find-error").textContent = "";
  hideCreate();
  const prefix = findPrefix();
  if (!PREFIX.test(prefix)) { showResults(); return; }
  state.searchTimer = setTimeout(() => send({ type: "search", prefix, limit: 8 }), 150);
}

function showResults() {
  const list = $("results");
  list.replaceChildren();
  const f = state.results;
  const roomsOnly = $("new-conv").value.trim().startsWith("#");
  const items = [];
  if (f) {
    if (!roomsOnly) {
      for (const u of f.users) if (u.id !== state.me.id) items.push({ kind: "user", name: u.username, user: u });
    }
    for (const r of f.rooms) items.push({ kind: "room", name: r.name });
  }
  for (const item of items) {
    const li = el("li", "result");
    li.dataset.kind = item.kind;
    li.dataset.name = item.name;
    li.tabIndex = 0;
    if (item.kind === "user") li.append(el("span", "presence" + (item.user.online ? " online" : "")));
    li.append(el("span", "", item.kind === "room" ? "#" + item.name : item.name));
    const member = item.kind === "room" && findConv("#" + item.name);
    li.append(el("span", "kind", item.kind === "user" ? "user" : member ? "room" : "room · join"));
    const pick = () => (item.kind === "user" ? openPeer(item.user) : enterRoom(item.name));
    li.onclick = pick;
    li.onkeydown = (e) => { if (e.key === "Enter") { e.preventDefault(); pick(); } };
    list.append(li);
  }
  list.hidden = items.length === 0;
}

function clearFind() {
  $("new-conv").value = "";
  state.results = null;
  $("find-error").textContent = "";
  showResults();
}

function enterRoom(name) {
  // A room I am in opens; any other is joined. Joining never creates one: see error().
  clearFind();
  const c = findConv("#" + name);
  if (c) { openConv(c.key); return; }
  state.joining = name;
  send({ type: "join", room: name });
}

function offerCreate(name) {
  state.offerCreate = name;
  $("create-room-text").textContent = `There is no room #${name}. Create room #${name}?`;
  $("create-room").hidden = false;
  $("create-room-yes").focus();
}

function hideCreate() {
  state.offerCreate = null;
  $("create-room").hidden = true;
}

function find(text) {
  // Enter in the find box: a #room is opened or joined; a name is opened only if such a user exists.
  $("find-error").textContent = "";
  hideCreate();
  if (text.startsWith("#")) {
    const name = text.slice(1);
    if (!NAME.test(name)) { $("find-error").textContent = "a room name is 3 to 32 letters, digits, _ . or -"; return; }
    enterRoom(name);
    return;
  }
  const name = text.replace(/^@/, "");
  if (!name) return;
  if (state.me && name.toLowerCase() === state.me.name.toLowerCase()) { $("find-error").textContent = "that is you"; return; }
  const known = findConv("@" + name);
  if (known && known.peerId) { clearFind(); openConv(known.key); return; }
  if (!NAME.test(name)) { $("find-error").textContent = `no such user: ${name}`; return; }
  state.lookup = name;                                  // the answer opens it, or says there is none
  send({ type: "search", prefix: name, limit: 20 });
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

function localDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (localDay(date) === localDay(today)) return "Today";
  if (localDay(date) === localDay(yesterday)) return "Yesterday";
  return date.toLocaleDateString([], { weekday: "short", year: "numeric", month: "short", day: "numeric" });
}

function render() {
  renderList();
  renderPane();
}

function renderList() {
  const list = $("convs");
  list.replaceChildren();
  const convs = [...state.convs.values()].sort((a, b) => lastId(b) - lastId(a));
  for (const c of convs) {
    const li = el("li", c === state.current ? "active" : "");
    li.dataset.key = c.key;
    if (c.room) li.append(el("span", "room-mark", "#"));
    else {
      const dot = el("span", "presence" + (c.online ? " online" : ""));
      dot.title = c.online ? "online" : "offline";
      li.append(dot);
    }
    const name = el("span", "conv-name", c.room ? c.room : c.title);
    const last = c.msgs[c.msgs.length - 1];
    const who = typists(c);
    if (who.length) name.append(el("span", "conv-last typing-now", c.room ? `${who.join(", ")} typing…` : "typing…"));
    else if (last) name.append(el("span", "conv-last", (last.mine ? "you: " : c.room ? `${last.sender}: ` : "") + last.body));
    li.append(name);
    if (unread(c) > 0) li.append(el("span", "badge", String(unread(c))));
    li.onclick = () => openConv(c.key);
    list.append(li);
  }
}

function renderPane() {
  const c = state.current;
  $("chat-view").classList.toggle("in-conv", !!c);
  $("composer").hidden = !c;
  $("members-btn").hidden = !(c && c.room);
  $("pane-title").textContent = c ? c.title : "Pick a conversation, or find a user or #room on the left.";
  let sub = "";
  if (c && c.room && c.members) {
    const online = c.members.filter((m) => m.online).length;
    sub = `${c.members.length} member${c.members.length === 1 ? "" : "s"} · ${online} online`;
  } else if (c && !c.room) sub = c.online ? "online" : "offline";
  $("pane-sub").textContent = sub;
  renderMembers(c);
  const who = c ? typists(c) : [];
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length === 1 ? "is" : "are"} typing…` : "";

  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren();
  if (c && c.loaded) {
    if (c.complete) box.append(el("li", "older start", c.msgs.length ? "Start of the conversation" : "No messages yet"));
    else if (c.loadingOlder) box.append(el("li", "older loading", "Loading older messages…"));
  }
  let day = null;
  for (const m of c ? c.msgs : []) {
    const when = new Date(m.sent_at);
    if (localDay(when) !== day) {                       // a new day: its date between the messages
      day = localDay(when);
      const sep = el("li", "day", dayLabel(when));
      sep.dataset.day = day;
      box.append(sep);
    }
    const li = el("li", "msg" + (m.mine ? " mine" : "") + (m.status === "failed" ? " failed" : ""));
    if (m.id) li.dataset.id = m.id;
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

function renderMembers(c) {
  const list = $("members");
  list.replaceChildren();
  $("members-btn").textContent = c && c.room && c.memberCount ? `members (${c.memberCount})` : "members";
  $("members-btn").setAttribute("aria-expanded", String(!$("members-panel").hidden));
  if (!c || !c.room) { $("members-panel").hidden = true; return; }
  for (const m of c.members || []) {
    const me = m.id === state.me.id;
    const li = el("li", me ? "me" : "");
    li.dataset.name = m.username;
    const dot = el("span", "presence" + (m.online ? " online" : ""));
    dot.title = m.online ? "online" : "offline";
    li.append(dot, el("span", "", me ? `${m.username} (you)` : m.username));
    if (!me) {
      li.title = `write to ${m.username}`;
      li.onclick = () => openPeer(m);
    }
    list.append(li);
  }
  $("leave").textContent = `Leave #${c.room}`;
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
$("body").addEventListener("input", typing);
$("new-conv").addEventListener("input", searchSoon);
$("new-conv-form").addEventListener("submit", (e) => {
  e.preventDefault();
  clearTimeout(state.searchTimer);
  find($("new-conv").value.trim());
});
$("create-room-yes").addEventListener("click", () => {
  const name = state.offerCreate;
  hideCreate();
  if (name) send({ type: "create_room", room: name });
});
$("create-room-no").addEventListener("click", () => { hideCreate(); $("new-conv").focus(); });
$("back").addEventListener("click", () => {
  if (history.state && history.state.conv) history.back();  // popstate closes it
  else closeConv();
});
window.addEventListener("popstate", () => { if (state.current) closeConv(); });
$("members-btn").addEventListener("click", () => {
  const panel = $("members-panel");
  panel.hidden = !panel.hidden;
  if (!panel.hidden && state.current && state.current.room) send({ type: "members", room: state.current.room });
  render();
});
$("leave").addEventListener("click", () => {
  const c = state.current;
  if (c && c.room) send({ type: "leave", room: c.room });
});
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 80) loadOlder(state.current);
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead(state.current);
});
setInterval(() => { if (state.me) askPresence(); }, 20000);

connect();
