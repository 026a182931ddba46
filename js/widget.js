/* livesupport visitor widget: a launcher and a chat panel in a Shadow DOM.
 * Long-polls with the protocol's cursor, drops what it has already shown by
 * seq, and retries sends with the same client_msg_id until acknowledged.
 * Message text is only ever set with textContent, never parsed as HTML. */
(function () {
  "use strict";
  if (window.LiveSupport && window.LiveSupport.started) { return; }
  var script = document.currentScript;
  var prefix = script && script.src ? new URL(script.src).pathname.replace(/\/widget\.js$/, "") : "/livesupport";
  var api = prefix + "/api/v1/visitor";
  var seen = {};          // conversation id -> highest seq shown
  var cursor = null;
  var delay = 1000;       // back-off after errors, ms

  var host = document.createElement("div");
  host.className = "ls-host";
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial}" +
    ".ls-launcher{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;" +
    "background:#2557d6;color:#fff;font:600 24px system-ui;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}" +
    ".ls-panel{position:fixed;right:20px;bottom:88px;width:340px;height:460px;max-height:calc(100vh - 110px);display:none;" +
    "flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);font:14px/1.4 system-ui;color:#1d2330;z-index:2147483000;overflow:hidden}" +
    ".ls-panel.ls-open{display:flex}" +
    ".ls-head{background:#2557d6;color:#fff;padding:12px 14px;font-weight:600}" +
    ".ls-list{flex:1;overflow-y:auto;padding:10px;display:flex;flex-direction:column;gap:6px}" +
    ".ls-msg{max-width:80%;padding:7px 10px;border-radius:10px;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".ls-mine{align-self:flex-end;background:#2557d6;color:#fff}" +
    ".ls-theirs{align-self:flex-start;background:#eef1f6}" +
    ".ls-system{align-self:center;color:#667;font-size:12px}" +
    ".ls-pending{opacity:.6}" +
    ".ls-typing{min-height:18px;padding:0 12px;color:#667;font-size:12px}" +
    ".ls-form{display:flex;border-top:1px solid #e3e6ec}" +
    ".ls-input{flex:1;border:0;padding:12px;font:inherit;resize:none;outline:none}" +
    ".ls-send{border:0;background:none;color:#2557d6;font:600 14px system-ui;padding:0 14px;cursor:pointer}" +
    "@media (max-width:480px){.ls-panel{right:0;bottom:0;width:100%;height:100%;max-height:none;border-radius:0}}" +
    "</style>" +
    "<button class='ls-launcher' data-ls='launcher' aria-label='Chat with us' aria-expanded='false'>?</button>" +
    "<section class='ls-panel' data-ls='panel' role='dialog' aria-label='Chat'>" +
    "<div class='ls-head'>Chat with us</div>" +
    "<div class='ls-list' role='log' aria-live='polite'></div>" +
    "<div class='ls-typing' data-ls='typing'></div>" +
    "<form class='ls-form'><textarea class='ls-input' data-ls='input' rows='1' aria-label='Message'></textarea>" +
    "<button class='ls-send' data-ls='send' type='submit'>Send</button></form></section>";
  var $ = function (sel) { return root.querySelector(sel); };
  var panel = $(".ls-panel"), list = $(".ls-list"), input = $(".ls-input"), launcher = $(".ls-launcher");
  var me = null;

  function request(method, path, body) {
    return fetch(api + path, {
      method: method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      if (r.status === 204) { return {}; }
      return r.json().then(function (data) {
        if (!r.ok) { var e = new Error(data.error ? data.error.message : r.status); e.retryAfter = r.headers.get("Retry-After"); throw e; }
        return data;
      });
    });
  }

  function bubble(text, kind, seq) {
    var el = document.createElement("div");
    el.className = "ls-msg ls-" + kind;
    el.setAttribute("data-ls", "message");
    if (seq) { el.setAttribute("data-seq", String(seq)); }
    el.textContent = text;
    list.appendChild(el);
    list.scrollTop = list.scrollHeight;
    return el;
  }

  function show(event) {
    if (event.type === "typing") {
      $(".ls-typing").textContent = event.data.typing ? (event.data.author.name || "Agent") + " is typing…" : "";
      return;
    }
    if (event.seq === null || event.seq <= (seen[event.conversation_id] || 0)) { return; }
    seen[event.conversation_id] = event.seq;
    if (event.type === "message") {
      var m = event.data;
      var pending = root.querySelector("[data-client='" + m.client_msg_id + "']");
      if (pending) { pending.classList.remove("ls-pending"); pending.setAttribute("data-seq", String(m.seq)); return; }
      bubble(m.body, m.author.kind === "visitor" ? "mine" : "theirs", m.seq);
      if (m.author.kind === "agent") { $(".ls-typing").textContent = ""; }
    } else if (event.type === "agent_joined") {
      bubble((event.data.agent.name || "An agent") + " joined", "system", event.seq);
    } else if (event.type === "conversation_closed") {
      bubble("The conversation was closed", "system", event.seq);
    }
  }

  function poll() {
    var q = "?timeout=25" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    request("GET", "/poll" + q).then(function (data) {
      delay = 1000;
      cursor = data.cursor;
      data.events.forEach(show);
      poll();
    }, function (err) {
      var wait = err.retryAfter ? Number(err.retryAfter) * 1000 : delay;
      delay = Math.min(delay * 2, 30000);
      setTimeout(poll, wait + Math.random() * 500);
    });
  }

  function send(text) {
    var id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[^A-Za-z0-9_-]/g, "");
    var el = bubble(text, "mine ls-pending");
    el.setAttribute("data-client", id);
    (function attempt(wait) {
      request("POST", "/messages", { client_msg_id: id, body: text }).then(function (data) {
        el.classList.remove("ls-pending");
        el.setAttribute("data-seq", String(data.message.seq));
      }, function () { setTimeout(function () { attempt(Math.min(wait * 2, 30000)); }, wait); });
    })(1000);
  }

  launcher.addEventListener("click", function () {
    var open = panel.classList.toggle("ls-open");
    launcher.setAttribute("aria-expanded", String(open));
    if (open) { input.focus(); }
  });
  $(".ls-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (text) { send(text); input.value = ""; }
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $(".ls-form").requestSubmit(); }
  });

  document.body.appendChild(host);
  request("POST", "/session", { page: location.href, referrer: document.referrer, locale: navigator.language || "" })
    .then(function (s) { me = s.visitor_id; poll(); });
  window.LiveSupport = { started: true, prefix: prefix, visitor: function () { return me; } };
})();
