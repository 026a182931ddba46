/* livesupport agent console: sign-in, the live queue, the agent's conversations,
 * and one conversation at a time with the visitor's details. Long-polls the
 * agent feed with its cursor (kept in sessionStorage, so a reload resumes), and
 * re-reads the lists after a reload or a lost connection. Every state-changing
 * call carries the session's CSRF token; replies are retried with the same
 * client_msg_id until acknowledged. Message text is only ever set as text. */
(function () {
  "use strict";
  var prefix = location.pathname.replace(/\/agent\/.*$/, "");
  var API = prefix + "/api/v1/agent";
  var NS = "ls-console:" + prefix + ":";
  var $ = function (id) { return document.getElementById(id); };

  var csrf = null, me = null, cursor = null, current = null, pollCtl = null, pollTries = 0, pollTimer = 0, offline = false;
  var convs = {};      // id -> Conversation
  var preview = {};    // id -> last message body
  var unread = {};     // id -> visitor messages not yet seen by this agent
  var seen = {};       // "cid:seq" -> true, for the open conversation
  var readUpTo = {};   // id -> highest seq the visitor has read
  var items = {};      // id -> its list entry
  var announced = {};  // ids already announced as waiting (sound, notification)

  // -- HTTP ---------------------------------------------------------------------------
  function request(method, path, body, signal) {
    var headers = {};
    if (body) { headers["Content-Type"] = "application/json"; }
    if (csrf && method !== "GET") { headers["X-CSRF-Token"] = csrf; }
    return fetch(API + path, {
      method: method, credentials: "same-origin", cache: "no-store", headers: headers, signal: signal,
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      if (r.status === 204) { return {}; }
      return r.json().catch(function () { return {}; }).then(function (d) {
        if (r.ok) { return d; }
        var e = new Error(d.error ? d.error.message : "HTTP " + r.status);
        e.status = r.status;
        e.retryAfter = r.headers.get("Retry-After");
        if (r.status === 401 && me) { signedOut(); }
        throw e;
      });
    });
  }
  function backoff(n, retryAfter) {
    var base = Math.min(30000, 1000 * Math.pow(2, n));
    var wait = base / 2 + Math.random() * base / 2;
    if (retryAfter) {
      var ms = isNaN(+retryAfter) ? Date.parse(retryAfter) - Date.now() : +retryAfter * 1000;
      if (ms > wait) { wait = ms; }
    }
    return wait;
  }
  function quiet() { /* typing notices: losing one is harmless */ }
  function store(key, value) {
    try {
      if (value === undefined) { return JSON.parse(sessionStorage.getItem(NS + key) || "null"); }
      sessionStorage.setItem(NS + key, JSON.stringify(value));
    } catch (e) { return null; }
  }
  function newId() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  // -- small DOM helpers --------------------------------------------------------------
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text != null) { n.textContent = text; }
    return n;
  }
  function initials(name) {
    var words = String(name || "").trim().split(/\s+/).filter(Boolean);
    if (!words.length) { return "?"; }
    return (Array.from(words[0])[0] + (words.length > 1 ? Array.from(words[words.length - 1])[0] : "")).toUpperCase();
  }
  function hue(id) {
    var h = 0;
    for (var i = 0; i < id.length; i++) { h = (h * 31 + id.charCodeAt(i)) % 997; }
    return "ls-hue-" + (h % 5 + 1);
  }
  function avatar(node, c) {
    node.textContent = initials(c.visitor.name || "Visitor");
    node.className = node.className.replace(/\s*ls-hue-\d/g, "") + " " + hue(c.visitor.id);
  }
  function visitorName(c) { return c.visitor.name || "Visitor " + c.visitor.id.slice(-4).toUpperCase(); }
  function clock(at) {
    var d = new Date(at);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  function since(at) {
    var s = Math.max(0, (Date.now() - Date.parse(at)) / 1000);
    if (s < 60) { return "just now"; }
    var m = Math.floor(s / 60);
    return m < 60 ? m + " min" : Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  var LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  function safeUrl(url) {
    try { var u = new URL(url); return u.protocol === "http:" || u.protocol === "https:" ? u.href : null; } catch (e) { return null; }
  }
  function link(url, text) {
    var a = el("a", null, text || url);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }
  // Text with its http(s) URLs as anchors; every piece is a text node, never markup.
  function linkify(parent, text) {
    var last = 0, m;
    LINK.lastIndex = 0;
    while ((m = LINK.exec(text))) {
      var url = m[0].replace(/[.,;:!?)\]}]+$/, ""), href = safeUrl(url);
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      parent.appendChild(href ? link(href, url) : document.createTextNode(url));
      last = LINK.lastIndex = m.index + url.length;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }
  var toastTimer = 0;
  function toast(text) {
    $("ls-toast").textContent = text;
    $("ls-toast").hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { $("ls-toast").hidden = true; }, 4000);
  }

  // -- sound and desktop notifications --------------------------------------------------
  var audio = null;
  function unlockAudio() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!audio && Ctx) { audio = new Ctx(); }
    if (audio && audio.state === "suspended") { audio.resume().catch(quiet); }
  }
  // Two short sine tones, made on the spot: no audio file to fetch.
  function chime() {
    if (!audio || audio.state !== "running") { return; }
    [[880, 0], [1320, 0.14]].forEach(function (tone) {
      var osc = audio.createOscillator(), gain = audio.createGain(), at = audio.currentTime + tone[1];
      osc.type = "sine";
      osc.frequency.value = tone[0];
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.2, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.35);
      osc.connect(gain).connect(audio.destination);
      osc.start(at);
      osc.stop(at + 0.4);
    });
  }
  function notifyButton() {
    $("ls-notify").hidden = !("Notification" in window) || Notification.permission !== "default";
  }
  function announce(c, title) {
    chime();
    if (!("Notification" in window) || Notification.permission !== "granted" || (document.hasFocus() && !document.hidden)) { return; }
    var n = new Notification(title, { body: visitorName(c) + (preview[c.id] ? ": " + preview[c.id] : ""), tag: c.id });
    n.addEventListener("click", function () { window.focus(); open(c.id); n.close(); });
  }

  // -- sign-in --------------------------------------------------------------------------
  function signedIn(d) {
    csrf = d.csrf_token;
    me = d.agent;
    $("ls-login-view").hidden = true;
    $("ls-app").hidden = false;
    $("ls-me").textContent = me.name;
    $("ls-me-avatar").textContent = initials(me.name);
    var status = me.status === "away" ? "away" : "online";
    $("ls-status").value = status;
    presenceDot(status);
    notifyButton();
    var saved = store("cursor");
    cursor = saved && saved.agent === me.id ? saved.c : null;
    resync().then(function () {
      var open_ = store("open");
      if (open_ && convs[open_]) { open(open_); }
    });
    poll();
    flush();
  }
  function signedOut() {
    me = null;
    csrf = null;
    if (pollCtl) { pollCtl.abort(); pollCtl = null; }
    clearTimeout(pollTimer);
    $("ls-app").hidden = true;
    $("ls-login-view").hidden = false;
    $("ls-password").value = "";
    $("ls-email").focus();
  }
  function presenceDot(status) { $("ls-presence-dot").className = "ls-dot ls-dot-" + status; }

  // -- the lists ------------------------------------------------------------------------
  function resync() {
    return Promise.all(["waiting", "active"].map(function (status) {
      return request("GET", "/conversations?limit=100&status=" + status).then(function (d) { return d.conversations; });
    })).then(function (lists) {
      var fresh = {};
      lists[0].concat(lists[1]).forEach(function (c) { fresh[c.id] = true; announced[c.id] = true; upsert(c, true); });
      // Gone from both lists while we were away: closed, or taken by someone else.
      Object.keys(convs).forEach(function (id) { if (!fresh[id] && convs[id].status !== "closed" && id !== current) { delete convs[id]; } });
      if (current) { refetch(current); }
      render();
    }, quiet);
  }
  function upsert(c, quietly) {
    var before = convs[c.id];
    convs[c.id] = c;
    if (!quietly && (!before || before.agent_id !== me.id) && c.agent_id === me.id && c.status === "active" && !claiming[c.id]) {
      toast("A conversation was transferred to you: " + visitorName(c));
      announce(c, "Conversation transferred to you");
    }
    if (c.id === current) { header(c); }
    render();
  }
  function render() {
    var queue = [], mine = [];
    Object.keys(convs).forEach(function (id) {
      var c = convs[id];
      if (c.status === "waiting") { queue.push(c); } else if (c.status === "active" && c.agent_id === me.id) { mine.push(c); }
    });
    queue.sort(function (a, b) { return a.created_at < b.created_at ? -1 : 1; });
    mine.sort(function (a, b) { return a.updated_at < b.updated_at ? 1 : -1; });
    fill($("ls-queue"), queue, true);
    fill($("ls-mine"), mine, false);
    $("ls-queue-count").textContent = String(queue.length);
    $("ls-mine-count").textContent = String(mine.length);
    var total = queue.length + mine.reduce(function (n, c) { return n + (unread[c.id] || 0); }, 0);
    document.title = (total ? "(" + total + ") " : "") + "Support console";
  }
  function fill(list, rows, waiting) {
    var keep = {};
    rows.forEach(function (c) {
      var li = items[c.id] || (items[c.id] = entry(c.id));
      keep[c.id] = true;
      var b = li.firstChild;
      avatar(b.children[0], c);
      b.children[1].textContent = visitorName(c);
      b.children[2].textContent = preview[c.id] || c.visitor.page || "";
      var wait = b.children[3].firstChild, count = b.children[3].lastChild;
      wait.textContent = waiting ? since(c.created_at) : clock(c.updated_at);
      wait.classList.toggle("ls-late", waiting && Date.now() - Date.parse(c.created_at) > 5 * 60000);
      count.textContent = !waiting && unread[c.id] ? String(unread[c.id]) : "";
      b.classList.toggle("ls-current", c.id === current);
      b.setAttribute("aria-current", c.id === current ? "true" : "false");
      list.appendChild(li);
    });
    Array.prototype.slice.call(list.children).forEach(function (li) { if (!keep[li.lsId]) { li.remove(); } });
  }
  function entry(id) {
    var li = el("li"), b = el("button", "ls-item"), side = el("span", "ls-item-side");
    li.lsId = id;
    b.type = "button";
    b.setAttribute("data-ls", "conversation");
    b.setAttribute("data-id", id);
    b.appendChild(el("span", "ls-avatar"));
    b.appendChild(el("span", "ls-item-name"));
    b.appendChild(el("span", "ls-item-preview"));
    side.appendChild(el("span", "ls-wait"));
    side.appendChild(el("span", "ls-unread"));
    b.appendChild(side);
    b.addEventListener("click", function () { open(id); });
    li.appendChild(b);
    return li;
  }

  // -- the open conversation -----------------------------------------------------------
  function open(id) {
    current = id;
    store("open", id);
    seen = {};
    unread[id] = 0;
    $("ls-messages").textContent = "";
    $("ls-typing").hidden = true;
    $("ls-placeholder").hidden = true;
    $("ls-view").hidden = false;
    $("ls-details").hidden = false;
    closeMenu();
    if (convs[id]) { header(convs[id]); }
    render();
    refetch(id);
    pendingFor(id).forEach(pendingRow);
    $("ls-reply").focus();
  }
  function refetch(id) {
    var top = Object.keys(seen).length ? Math.max.apply(null, Object.keys(seen).map(function (k) { return +k.split(":")[1]; })) : 0;
    request("GET", "/conversations/" + encodeURIComponent(id) + (top ? "?after_seq=" + top : "")).then(function (d) {
      if (current !== id) { return; }
      convs[id] = d.conversation;
      header(d.conversation);
      d.messages.forEach(function (m) { show({ type: "message", conversation_id: id, seq: m.seq, at: m.at, data: m }); });
      if (d.messages.length) { preview[id] = d.messages[d.messages.length - 1].body; }
      render();
      $("ls-messages").scrollTop = $("ls-messages").scrollHeight;
    }, function (err) { if (err.status === 404) { toast("That conversation no longer exists."); } });
  }
  function header(c) {
    var mineNow = c.status === "active" && c.agent_id === me.id, boss = me.role === "supervisor";
    avatar($("ls-view-avatar"), c);
    $("ls-title").textContent = visitorName(c);
    $("ls-subtitle").textContent = [c.visitor.email, c.visitor.page].filter(Boolean).join(" · ") || "No details given";
    var pill = $("ls-pill");
    pill.className = "ls-pill ls-pill-" + c.status;
    pill.textContent = c.status === "active" && !mineNow ? "With another agent" : c.status.charAt(0).toUpperCase() + c.status.slice(1);
    $("ls-claim").hidden = c.status !== "waiting";
    $("ls-transfer").hidden = !(c.status === "active" && (mineNow || boss));
    $("ls-close").hidden = c.status === "closed" || !(mineNow || boss || c.status === "waiting");
    var locked = c.status === "closed" || (c.status === "active" && !mineNow && !boss);
    $("ls-reply-form").hidden = locked;
    $("ls-closed-note").hidden = !locked;
    $("ls-closed-note").textContent = c.status === "closed" ? "This conversation is closed." : "Another agent is handling this conversation.";
    facts(c);
  }
  function facts(c) {
    var dl = $("ls-facts"), v = c.visitor;
    dl.textContent = "";
    function row(label, value, node) {
      if (!value && !node) { return; }
      var pair = el("div"), dd = el("dd");
      pair.appendChild(el("dt", null, label));
      dd.appendChild(node || document.createTextNode(value));
      pair.appendChild(dd);
      dl.appendChild(pair);
    }
    row("Name", v.name || "Not given");
    row("Email", v.email || "Not given");
    var page = safeUrl(v.page);
    row("Current page", v.page, page ? link(page) : null);
    var ref = safeUrl(v.referrer);
    row("Referrer", v.referrer || "Direct visit", ref ? link(ref) : null);
    row("Browser", v.user_agent, v.user_agent ? el("span", "ls-ua", v.user_agent) : null);
    row("Locale", v.locale);
    row("Started", new Date(c.created_at).toLocaleString());
    row("Conversation", c.id);
  }
  function show(e) {
    var d = e.data || {}, box = $("ls-messages");
    if (e.seq != null) {
      if (seen[e.conversation_id + ":" + e.seq]) { return; }
      seen[e.conversation_id + ":" + e.seq] = true;
    }
    var stick = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    var node;
    if (e.type === "message") {
      node = pendingRows[d.client_msg_id] && d.author.kind === "agent" && d.author.id === me.id ? acked(d) : bubble(d);
    } else if (e.type === "agent_joined") {
      node = el("div", "ls-sys", (d.agent ? d.agent.name : "An agent") + " joined");
    } else if (e.type === "agent_left") {
      node = el("div", "ls-sys", (d.agent ? d.agent.name : "The agent") + " left");
    } else if (e.type === "transferred") {
      node = el("div", "ls-sys", "Transferred to " + (d.agent ? d.agent.name : "another agent"));
    } else if (e.type === "conversation_closed") {
      node = el("div", "ls-sys", "Conversation closed");
    } else {
      return;
    }
    node.lsSeq = e.seq;
    node.setAttribute("data-seq", String(e.seq));
    var after = box.lastChild;
    while (after && !(after.lsSeq <= e.seq)) { after = after.previousSibling; }
    box.insertBefore(node, after ? after.nextSibling : box.firstChild);
    group(node);
    group(node.nextSibling);
    marks();
    if (stick || (d.author && d.author.kind === "agent")) { box.scrollTop = box.scrollHeight; }
  }
  function bubble(m) {
    var kind = m.author.kind === "agent" ? (m.author.id === me.id ? "agent" : "agent ls-msg-other") : "visitor";
    var row = el("div", "ls-msg ls-msg-" + kind), b = el("div", "ls-bubble");
    row.setAttribute("data-ls", "message");
    row.lsAuthor = m.author.kind + ":" + m.author.id;
    row.lsAgent = m.author.kind === "agent";
    linkify(b, m.body);
    row.appendChild(b);
    var who = m.author.kind === "visitor" ? m.author.name || "Visitor" : m.author.id === me.id ? "You" : m.author.name;
    row.appendChild(el("div", "ls-meta", who + " · " + clock(m.at)));
    return row;
  }
  function group(node) {
    if (!node || !node.lsAuthor) { return; }
    var prev = node.previousSibling;
    node.classList.toggle("ls-cont", !!(prev && prev.lsAuthor === node.lsAuthor));
  }
  // "Seen" under the newest agent message the visitor has read.
  function marks() {
    var top = readUpTo[current] || 0, last = null;
    Array.prototype.forEach.call($("ls-messages").children, function (n) {
      var old = n.querySelector(".ls-seen");
      if (old) { old.remove(); }
      if (n.lsAgent && n.lsSeq <= top) { last = n; }
    });
    if (last) {
      var s = el("span", "ls-seen", " · Seen");
      s.setAttribute("data-ls", "read");
      last.lastChild.appendChild(s);
    }
  }

  // -- replies ------------------------------------------------------------------------
  var pendingRows = {}, claiming = {}, flushing = false, sendTries = 0;
  function outbox() { return store("outbox") || []; }
  function pendingFor(id) { return outbox().filter(function (i) { return i.cid === id; }); }
  function pendingRow(item) {
    if (pendingRows[item.id] && pendingRows[item.id].isConnected) { return; }
    var row = bubble({ body: item.body, at: item.at, author: { kind: "agent", id: me.id, name: me.name } });
    row.classList.add("ls-pending");
    row.lastChild.textContent = "Sending…";
    pendingRows[item.id] = row;
    $("ls-messages").appendChild(row);
    $("ls-messages").scrollTop = $("ls-messages").scrollHeight;
  }
  function acked(m) {
    var row = pendingRows[m.client_msg_id];
    delete pendingRows[m.client_msg_id];
    row.classList.remove("ls-pending");
    row.lastChild.textContent = "You · " + clock(m.at);
    return row;
  }
  function reply(text) {
    var item = { id: newId(), cid: current, body: text, at: new Date().toISOString() };
    store("outbox", outbox().concat([item]));
    pendingRow(item);
    flush();
  }
  function drop(id) { store("outbox", outbox().filter(function (i) { return i.id !== id; })); }
  // In order, one at a time, each with its client_msg_id until the server has it.
  function flush() {
    var item = outbox()[0];
    if (flushing || !item || !me) { return; }
    flushing = true;
    claiming[item.cid] = true;
    request("POST", "/conversations/" + encodeURIComponent(item.cid) + "/messages", { client_msg_id: item.id, body: item.body }).then(function (d) {
      flushing = false;
      sendTries = 0;
      drop(item.id);
      if (current === item.cid) { show({ type: "message", conversation_id: item.cid, seq: d.message.seq, data: d.message }); }
      flush();
    }, function (err) {
      flushing = false;
      if (err.status && err.status < 500 && err.status !== 429 && err.status !== 408 && err.status !== 401) {
        drop(item.id);
        var row = pendingRows[item.id];
        if (row) {
          delete pendingRows[item.id];
          row.classList.replace("ls-pending", "ls-failed");
          row.lastChild.textContent = "Not sent: " + err.message;
        }
        flush();
        return;
      }
      if (err.status !== 401) { setTimeout(flush, backoff(sendTries++, err.retryAfter)); }
    });
  }
  var typingAt = 0, typingOn = false, typingIdle = 0, typingFor = null;
  function typing() {
    var c = convs[current];
    clearTimeout(typingIdle);
    if (!c || c.status !== "active" || c.agent_id !== me.id || !$("ls-reply").value) { stopTyping(); return; }
    if (Date.now() - typingAt > 3000 || typingFor !== current) {
      typingAt = Date.now();
      typingOn = true;
      typingFor = current;
      request("POST", "/conversations/" + encodeURIComponent(current) + "/typing", { typing: true }).catch(quiet);
    }
    typingIdle = setTimeout(stopTyping, 4000);
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingOn) {
      typingOn = false;
      typingAt = 0;
      request("POST", "/conversations/" + encodeURIComponent(typingFor) + "/typing", { typing: false }).catch(quiet);
    }
  }

  // -- the feed -------------------------------------------------------------------------
  var visitorTyping = 0;
  function onEvent(e) {
    var d = e.data || {}, cid = e.conversation_id;
    if (e.type === "conversation_waiting" || e.type === "conversation_updated" || e.type === "conversation_closed") {
      var isNew = e.type === "conversation_waiting" && !announced[cid];
      announced[cid] = true;
      upsert(d);
      if (isNew) { announce(d, "New visitor waiting"); }
      if (e.type === "conversation_closed" && cid === current) { show(e); }
    } else if (e.type === "message") {
      preview[cid] = d.body;
      if (cid === current) {
        show(e);
        if (d.author.kind === "visitor") { $("ls-typing").hidden = true; }
      } else if (d.author.kind === "visitor" && convs[cid] && convs[cid].agent_id === me.id) {
        unread[cid] = (unread[cid] || 0) + 1;
        chime();
      }
      render();
    } else if (e.type === "typing") {
      if (cid === current && d.author && d.author.kind === "visitor") {
        $("ls-typing").textContent = visitorName(convs[cid] || { visitor: { name: d.author.name, id: d.author.id } }) + " is typing…";
        $("ls-typing").hidden = !d.typing;
        clearTimeout(visitorTyping);
        visitorTyping = setTimeout(function () { $("ls-typing").hidden = true; }, 8000);
      }
    } else if (e.type === "read") {
      readUpTo[cid] = Math.max(readUpTo[cid] || 0, d.seq);
      if (cid === current) { marks(); }
    } else if (cid === current) {
      show(e);
    }
  }
  function poll() {
    if (!me) { return; }
    var ctl = pollCtl = new AbortController();
    var guard = setTimeout(function () { ctl.abort(); }, 40000);
    request("GET", "/poll?timeout=25" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""), null, ctl.signal).then(function (d) {
      clearTimeout(guard);
      if (ctl !== pollCtl) { return; }
      cursor = d.cursor;
      store("cursor", { agent: me.id, c: cursor });
      d.events.forEach(onEvent);
      if (offline) { offline = false; $("ls-net").hidden = true; resync(); }
      pollTries = 0;
      poll();
    }, function (err) {
      clearTimeout(guard);
      if (ctl !== pollCtl || err.status === 401) { return; }
      if (err.status === 400) { cursor = null; }
      if (++pollTries > 1) { offline = true; $("ls-net").hidden = false; }
      pollTimer = setTimeout(poll, backoff(pollTries, err.retryAfter));
    });
  }

  // -- transfer menu --------------------------------------------------------------------
  function closeMenu() {
    $("ls-transfer-menu").hidden = true;
    $("ls-transfer").setAttribute("aria-expanded", "false");
  }
  function transferMenu() {
    var menu = $("ls-transfer-menu");
    if (!menu.hidden) { closeMenu(); return; }
    menu.textContent = "";
    menu.hidden = false;
    $("ls-transfer").setAttribute("aria-expanded", "true");
    request("GET", "/agents").then(function (d) {
      var others = d.agents.filter(function (a) { return a.id !== me.id; });
      if (!others.length) { menu.appendChild(el("li", "ls-menu-empty", "No other agents")); }
      others.forEach(function (a) {
        var li = el("li"), b = el("button");
        li.setAttribute("role", "none");
        b.type = "button";
        b.setAttribute("role", "menuitem");
        b.setAttribute("data-agent-id", a.id);
        b.appendChild(el("span", "ls-dot ls-dot-" + (a.status === "online" ? "online" : "away")));
        b.appendChild(document.createTextNode(a.name + (a.status === "online" ? "" : " (" + (a.status || "offline") + ")")));
        b.addEventListener("click", function () { transfer(a); });
        li.appendChild(b);
        menu.appendChild(li);
      });
      var first = menu.querySelector("button");
      if (first) { first.focus(); }
    }, function (err) { closeMenu(); toast(err.message); });
  }
  function transfer(agent) {
    var id = current;
    closeMenu();
    request("POST", "/conversations/" + encodeURIComponent(id) + "/transfer", { agent_id: agent.id }).then(function (d) {
      upsert(d.conversation);
      toast("Transferred to " + agent.name);
    }, function (err) { toast(err.message); });
  }

  // -- wiring ---------------------------------------------------------------------------
  $("ls-login").addEventListener("submit", function (ev) {
    ev.preventDefault();
    $("ls-error").textContent = "";
    request("POST", "/login", { email: $("ls-email").value, password: $("ls-password").value }).then(signedIn, function (err) {
      $("ls-error").textContent = err.status === 401 ? "Wrong email or password." : err.message;
    });
  });
  $("ls-reply-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("ls-reply").value.trim();
    if (!text || !current) { return; }
    stopTyping();
    reply(text);
    $("ls-reply").value = "";
  });
  $("ls-reply").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $("ls-reply-form").requestSubmit(); }
  });
  $("ls-reply").addEventListener("input", typing);
  $("ls-reply").addEventListener("blur", stopTyping);
  $("ls-claim").addEventListener("click", function () {
    var id = current;
    claiming[id] = true;
    request("POST", "/conversations/" + encodeURIComponent(id) + "/claim").then(function (d) {
      upsert(d.conversation);
      $("ls-reply").focus();
    }, function (err) { toast(err.status === 409 ? "Another agent has already claimed this conversation." : err.message); });
  });
  $("ls-close").addEventListener("click", function () {
    request("POST", "/conversations/" + encodeURIComponent(current) + "/close").then(function (d) { upsert(d.conversation); }, function (err) { toast(err.message); });
  });
  $("ls-transfer").addEventListener("click", transferMenu);
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape" && !$("ls-transfer-menu").hidden) { closeMenu(); $("ls-transfer").focus(); } });
  document.addEventListener("click", function (ev) { if (!ev.target.closest(".ls-menu-wrap")) { closeMenu(); } });
  $("ls-status").addEventListener("change", function () {
    var status = $("ls-status").value;
    presenceDot(status);
    request("POST", "/status", { status: status }).catch(function (err) { toast(err.message); });
  });
  $("ls-logout").addEventListener("click", function () {
    request("POST", "/logout").then(function () {
      store("cursor", null);
      store("open", null);
      signedOut();
    }, function (err) { toast(err.message); });
  });
  $("ls-notify").addEventListener("click", function () {
    unlockAudio();
    Notification.requestPermission().then(notifyButton, notifyButton);
  });
  // Browsers only start audio after a user gesture: the first click or key unlocks it.
  document.addEventListener("pointerdown", unlockAudio);
  document.addEventListener("keydown", unlockAudio);
  window.addEventListener("online", function () {
    if (me && offline) { clearTimeout(pollTimer); pollTries = 0; poll(); flush(); }
  });
  // Wait times move on by themselves; the lists are re-read now and then as a safety net.
  setInterval(function () { if (me) { render(); } }, 15000);
  setInterval(function () { if (me && !offline) { resync(); } }, 120000);

  request("GET", "/session").then(signedIn, function () {
    $("ls-login-view").hidden = false;
    $("ls-email").focus();
  });
  window.LiveSupport = { console: true };
})();
