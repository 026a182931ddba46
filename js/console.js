/* livesupport agent console: sign-in, the waiting queue, and the agent's
 * conversations. Long-polls the agent feed with its cursor; every
 * state-changing call carries the session's CSRF token. Message text is only
 * ever set with textContent. */
(function () {
  "use strict";
  var prefix = location.pathname.replace(/\/agent\/?$/, "");
  var api = prefix + "/api/v1/agent";
  var csrf = null, me = null, cursor = null, current = null;
  var conversations = {};   // id -> Conversation
  var seen = {};            // id -> highest seq shown in the open view
  var $ = function (id) { return document.getElementById(id); };

  function request(method, path, body) {
    var headers = {};
    if (body) { headers["Content-Type"] = "application/json"; }
    if (csrf && method !== "GET") { headers["X-CSRF-Token"] = csrf; }
    return fetch(api + path, { method: method, credentials: "same-origin", headers: headers,
      body: body ? JSON.stringify(body) : undefined }).then(function (r) {
      if (r.status === 204) { return {}; }
      return r.json().then(function (data) {
        if (!r.ok) { var e = new Error(data.error ? data.error.message : String(r.status)); e.status = r.status; throw e; }
        return data;
      });
    });
  }

  function signedIn(data) {
    csrf = data.csrf_token; me = data.agent;
    $("ls-login").hidden = true; $("ls-work").hidden = false;
    $("ls-me").textContent = me.name + " (" + me.email + ")";
    request("GET", "/conversations?status=waiting").then(function (d) { d.conversations.forEach(upsert); });
    request("GET", "/conversations?status=active").then(function (d) { d.conversations.forEach(upsert); });
    poll();
  }

  function upsert(c) {
    conversations[c.id] = c;
    render();
    if (current === c.id) { header(c); }
  }

  function render() {
    var queue = $("ls-queue"), mine = $("ls-mine");
    queue.textContent = ""; mine.textContent = "";
    Object.keys(conversations).map(function (k) { return conversations[k]; })
      .sort(function (a, b) { return a.created_at < b.created_at ? -1 : 1; })
      .forEach(function (c) {
        var target = c.status === "waiting" ? queue : (c.status === "active" && c.agent_id === me.id ? mine : null);
        if (!target) { return; }
        var li = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.setAttribute("data-ls", "conversation");
        button.setAttribute("data-id", c.id);
        button.textContent = (c.visitor.name || "Visitor " + c.visitor.id.slice(-4)) + (c.id === current ? " ◀" : "");
        button.addEventListener("click", function () { open(c.id); });
        li.appendChild(button);
        target.appendChild(li);
      });
  }

  function header(c) {
    $("ls-title").textContent = (c.visitor.name || "Visitor") + " · " + c.status;
    $("ls-details").textContent = [c.visitor.email, c.visitor.page, c.visitor.locale, c.visitor.user_agent]
      .filter(Boolean).join(" · ");
    $("ls-claim").hidden = c.status !== "waiting";
    $("ls-close").hidden = c.status === "closed";
  }

  function line(m) {
    if (m.seq <= (seen[m.conversation_id] || 0)) { return; }
    seen[m.conversation_id] = m.seq;
    var el = document.createElement("div");
    el.className = "ls-msg ls-" + m.author.kind;
    el.setAttribute("data-ls", "message");
    el.setAttribute("data-seq", String(m.seq));
    el.textContent = (m.author.name || m.author.kind) + ": " + m.body;
    $("ls-messages").appendChild(el);
    $("ls-messages").scrollTop = $("ls-messages").scrollHeight;
  }

  function open(id) {
    current = id; seen[id] = 0;
    $("ls-messages").textContent = "";
    $("ls-view").hidden = false;
    render();
    request("GET", "/conversations/" + encodeURIComponent(id)).then(function (d) {
      upsert(d.conversation); header(d.conversation); d.messages.forEach(line);
    });
  }

  function onEvent(e) {
    if (e.type === "conversation_waiting" || e.type === "conversation_updated" || e.type === "conversation_closed") {
      upsert(e.data);
    } else if (e.type === "message" && e.conversation_id === current) {
      line(e.data);
    } else if (e.type === "typing" && e.conversation_id === current) {
      $("ls-typing").textContent = e.data.typing ? "Visitor is typing…" : "";
    }
  }

  function poll() {
    var q = "?timeout=25" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    request("GET", "/poll" + q).then(function (d) {
      cursor = d.cursor; d.events.forEach(onEvent); poll();
    }, function (err) {
      if (err.status === 401) { location.reload(); return; }
      setTimeout(poll, 2000 + Math.random() * 1000);
    });
  }

  $("ls-login").addEventListener("submit", function (ev) {
    ev.preventDefault();
    $("ls-error").textContent = "";
    request("POST", "/login", { email: $("ls-email").value, password: $("ls-password").value })
      .then(signedIn, function (err) { $("ls-error").textContent = err.message; });
  });
  $("ls-reply-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("ls-reply").value.trim();
    if (!text || !current) { return; }
    var id = String(Date.now()) + Math.random().toString(36).slice(2);
    request("POST", "/conversations/" + current + "/messages", { client_msg_id: id, body: text })
      .then(function (d) { $("ls-reply").value = ""; line(d.message); },
        function (err) { $("ls-typing").textContent = err.message; });
  });
  $("ls-claim").addEventListener("click", function () {
    request("POST", "/conversations/" + current + "/claim").then(function (d) { upsert(d.conversation); });
  });
  $("ls-close").addEventListener("click", function () {
    request("POST", "/conversations/" + current + "/close").then(function (d) { upsert(d.conversation); });
  });
  $("ls-status").addEventListener("change", function () {
    request("POST", "/status", { status: $("ls-status").value });
  });
  $("ls-logout").addEventListener("click", function () {
    request("POST", "/logout").then(function () { location.reload(); });
  });

  request("GET", "/session").then(signedIn, function () { $("ls-login").hidden = false; });
  window.LiveSupport = { console: true };
})();
