/* livesupport visitor widget: a launcher and a chat panel in an open Shadow DOM.
 * One long-poll per browser: tabs elect a leader (Web Locks, else a heartbeat
 * lock in localStorage) that polls with the protocol's cursor and relays
 * events to the other tabs (BroadcastChannel, else storage events). Events are
 * deduplicated by (conversation_id, seq); sends are retried with the same
 * client_msg_id until acknowledged and survive a reload. Message text is only
 * ever set through text nodes, never parsed as HTML. */
(function () {
  "use strict";
  if (window.LiveSupport) { return; }
  var CONFIG = /*@config*/{};
  var script = document.currentScript;
  var prefix = script && script.src ? new URL(script.src).pathname.replace(/\/widget\.js$/, "") : CONFIG.prefix || "/livesupport";
  var API = prefix + "/api/v1/visitor";
  var NS = "ls:" + prefix + ":";
  var COLOR = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(CONFIG.color || "") ? CONFIG.color : "#2557d6";

  var STRINGS = {
    en: {
      title: "Chat with us", greeting: "Hi there! How can we help you today?", open: "Open chat", close: "Close chat",
      placeholder: "Write a message…", send: "Send", typing: "{n} is typing…", joined: "{n} joined the chat",
      left: "{n} left the chat", transferred: "You're now chatting with {n}", closed: "This chat has ended",
      sending: "Sending…", failed: "Not sent. Tap to retry", queue: "You're number {n} in line", queueNext: "You're next in line",
      replySoon: "We typically reply in a few minutes", away: "We're away right now", with: "Chatting with {n}",
      reconnecting: "Reconnecting…", newConv: "New conversation", newMsg: "New message", you: "You", agent: "Support",
      end: "End chat", offTitle: "Leave us a message", offText: "No one is available right now. Leave a message and we'll reply by email.",
      name: "Name", email: "Email", message: "Message", offSend: "Send message", offThanks: "Thanks! We'll get back to you by email soon.",
      preName: "Your name (optional)", preEmail: "Email (optional)", rateQ: "How was your chat?", star: "{n} out of 5",
      comment: "Anything to add? (optional)", rateSend: "Send feedback", rateThanks: "Thank you for your feedback!"
    },
    "zh-CN": {
      title: "在线客服", greeting: "您好!请问有什么可以帮您?", open: "打开聊天", close: "关闭聊天",
      placeholder: "输入消息…", send: "发送", typing: "{n} 正在输入…", joined: "{n} 加入了对话",
      left: "{n} 离开了对话", transferred: "已为您转接 {n}", closed: "对话已结束",
      sending: "发送中…", failed: "发送失败,点击重试", queue: "您前面还有 {n} 位", queueNext: "马上轮到您",
      replySoon: "通常几分钟内回复", away: "客服暂时不在线", with: "{n} 为您服务",
      reconnecting: "正在重新连接…", newConv: "新的对话", newMsg: "新消息", you: "我", agent: "客服",
      end: "结束对话", offTitle: "给我们留言", offText: "客服暂时不在线。请留言,我们会通过邮件回复您。",
      name: "姓名", email: "邮箱", message: "留言", offSend: "提交留言", offThanks: "谢谢!我们会尽快通过邮件回复您。",
      preName: "您的姓名(选填)", preEmail: "邮箱(选填)", rateQ: "您对本次服务满意吗?", star: "{n} 星(满分 5 星)",
      comment: "还有什么想说的?(选填)", rateSend: "提交评价", rateThanks: "感谢您的评价!"
    }
  };
  var wanted = CONFIG.locale && CONFIG.locale !== "auto" ? CONFIG.locale : document.documentElement.lang || navigator.language || "en";
  var LANG = /^zh/i.test(wanted) ? "zh-CN" : "en";
  var T = STRINGS[LANG];
  // A replacer function: a string replacement would expand "$&" and the like in names.
  function t(key, n) { return T[key].replace("{n}", function () { return String(n); }); }

  // -- storage (shared by the browser's tabs; every access may throw) -------------
  function load(key, fallback) {
    try { var v = localStorage.getItem(NS + key); return v ? JSON.parse(v) : fallback; } catch (e) { return fallback; }
  }
  function save(key, value) {
    try {
      if (value == null) { localStorage.removeItem(NS + key); } else { localStorage.setItem(NS + key, JSON.stringify(value)); }
    } catch (e) { /* storage full or disabled: the widget still works for this page */ }
  }
  function tabFlag(key, value) {
    try {
      if (value === undefined) { return sessionStorage.getItem(NS + key) === "1"; }
      sessionStorage.setItem(NS + key, value ? "1" : "");
    } catch (e) { return false; }
  }

  // -- HTTP ---------------------------------------------------------------------------
  function request(method, path, body, signal) {
    return fetch(API + path, {
      method: method, credentials: "same-origin", cache: "no-store", signal: signal,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      if (r.status === 204) { return {}; }
      return r.json().catch(function () { return {}; }).then(function (d) {
        if (r.ok) { return d; }
        var e = new Error(d.error ? d.error.message : "HTTP " + r.status);
        e.status = r.status;
        e.retryAfter = r.headers.get("Retry-After");
        throw e;
      });
    });
  }
  function quiet() { /* ephemeral calls (typing, read): losing one is harmless */ }
  // Exponential back-off with jitter, never sooner than the server's Retry-After.
  function backoff(n, retryAfter) {
    var base = Math.min(30000, 1000 * Math.pow(2, n));
    var wait = base / 2 + Math.random() * base / 2;
    if (retryAfter) {
      var ms = isNaN(+retryAfter) ? Date.parse(retryAfter) - Date.now() : +retryAfter * 1000;
      if (ms > wait) { wait = ms; }
    }
    return wait;
  }
  function newId() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  // -- the DOM ------------------------------------------------------------------------
  var ICON_CHAT = "<svg viewBox='0 0 24 24' aria-hidden='true'><path d='M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.2 3.6c-.5.4-1.3.1-1.3-.6V16A2.5 2.5 0 0 1 4 13.5z'/></svg>";
  var ICON_DOWN = "<svg viewBox='0 0 24 24' aria-hidden='true'><path d='M6 9l6 6 6-6' fill='none' stroke='currentColor' stroke-width='2.2' stroke-linecap='round' stroke-linejoin='round'/></svg>";
  var ICON_SEND = "<svg viewBox='0 0 24 24' aria-hidden='true'><path d='M3.4 20.4l17.4-7.5c.8-.4.8-1.5 0-1.9L3.4 3.6c-.7-.3-1.4.3-1.2 1l1.9 6.4 9 1-9 1-1.9 6.4c-.2.7.5 1.3 1.2 1z'/></svg>";
  var CSS =
    ":host{all:initial!important;--ls-c:" + COLOR + ";--ls-ink:" + ink(COLOR) + "}" +
    "*{box-sizing:border-box}[hidden]{display:none!important}" +
    ".ls-root{font:14.5px/1.45 -apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,'Helvetica Neue',Arial,'Noto Sans','PingFang SC','Microsoft YaHei',sans-serif;color:#1c2230;-webkit-font-smoothing:antialiased}" +
    "button,input,textarea{font:inherit;color:inherit;margin:0}" +
    "button{cursor:pointer}" +
    ":focus-visible{outline:2px solid var(--ls-c);outline-offset:2px}" +
    ".ls-launcher{position:fixed;bottom:20px;" + (CONFIG.position === "left" ? "left" : "right") + ":20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;border:0;padding:0;display:grid;place-items:center;background:var(--ls-c);color:var(--ls-ink);box-shadow:0 6px 20px rgba(16,24,40,.24);transition:transform .18s}" +
    ".ls-launcher:hover{transform:scale(1.06)}.ls-launcher:focus-visible{outline-offset:4px}" +
    ".ls-ic{display:grid}.ls-launcher svg{width:28px;height:28px;fill:currentColor}.ls-launcher[aria-expanded=false] .ls-i-down,.ls-launcher[aria-expanded=true] .ls-i-chat{display:none}" +
    ".ls-badge{position:absolute;top:-3px;right:-3px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#e5484d;color:#fff;font-weight:700;font-size:12px;line-height:18px;text-align:center;border:2px solid #fff}" +
    ".ls-panel{position:fixed;bottom:92px;" + (CONFIG.position === "left" ? "left" : "right") + ":20px;z-index:2147483000;width:380px;height:min(620px,calc(100vh - 116px));display:flex;flex-direction:column;background:#f6f7f9;border-radius:18px;overflow:hidden;box-shadow:0 16px 48px rgba(16,24,40,.2),0 2px 8px rgba(16,24,40,.08);animation:ls-in .2s ease-out}" +
    "@keyframes ls-in{from{opacity:0;transform:translateY(12px)}}" +
    ".ls-head{display:flex;align-items:center;gap:12px;padding:16px 14px 16px 18px;background:var(--ls-c);color:var(--ls-ink)}" +
    ".ls-avatar{flex:none;width:40px;height:40px;border-radius:50%;display:grid;place-items:center;font-weight:700;font-size:15px;background:rgba(255,255,255,.22);position:relative}" +
    ".ls-avatar svg{width:22px;height:22px;fill:currentColor}" +
    ".ls-avatar.ls-on:after{content:'';position:absolute;right:0;bottom:0;width:11px;height:11px;border-radius:50%;background:#2fce71;border:2px solid var(--ls-c)}" +
    ".ls-hd{flex:1;min-width:0}.ls-title{margin:0;font-size:16.5px;font-weight:650;line-height:1.25;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}" +
    ".ls-sub{margin:2px 0 0;font-size:12.5px;opacity:.86;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}" +
    ".ls-hb{border:0;background:transparent;color:inherit;border-radius:8px;padding:6px 8px;font-size:12.5px;opacity:.9}.ls-hb:hover{background:rgba(255,255,255,.16);opacity:1}" +
    ".ls-x{width:34px;height:34px;padding:5px}.ls-x svg{width:24px;height:24px}" +
    ".ls-bar{padding:7px 16px;font-size:12.5px;text-align:center;background:#fff7e0;color:#6b5200;border-bottom:1px solid #f1e3b3}" +
    ".ls-body{flex:1;overflow-y:auto;padding:18px 16px 8px;overscroll-behavior:contain}" +
    ".ls-row{display:flex;align-items:flex-end;gap:8px;margin-top:10px}.ls-row.ls-cont{margin-top:3px}" +
    ".ls-mine{justify-content:flex-end}" +
    ".ls-av{flex:none;width:28px;height:28px;border-radius:50%;display:grid;place-items:center;font-size:11.5px;font-weight:700;background:var(--ls-c);color:var(--ls-ink)}.ls-cont .ls-av{visibility:hidden}.ls-av svg{width:15px;height:15px;fill:currentColor}" +
    ".ls-col{max-width:78%;display:flex;flex-direction:column}.ls-mine .ls-col{align-items:flex-end}" +
    ".ls-bub{padding:9px 13px;border-radius:18px;white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid #e7e9ee;border-bottom-left-radius:6px}" +
    ".ls-mine .ls-bub{background:var(--ls-c);color:var(--ls-ink);border-color:transparent;border-radius:18px 18px 6px 18px}" +
    ".ls-bub a{color:inherit;text-decoration:underline;text-underline-offset:2px}" +
    ".ls-meta{font-size:11px;color:#8a91a1;margin:3px 6px 0}.ls-cont-next .ls-meta:empty{display:none}" +
    ".ls-pending .ls-bub{opacity:.62}.ls-failed .ls-bub{background:#fdecec;color:#8f1d1d;border-color:#f4c4c4}.ls-failed .ls-meta{color:#c52a2a;cursor:pointer;text-decoration:underline}" +
    ".ls-sys,.ls-div{text-align:center;font-size:12px;color:#7b8293;margin:14px 0 4px}" +
    ".ls-div{display:flex;align-items:center;gap:10px}.ls-div:before,.ls-div:after{content:'';flex:1;border-top:1px solid #dfe2e8}" +
    ".ls-greet .ls-bub{background:#fff}" +
    ".ls-typing{display:flex;align-items:center;gap:8px;padding:2px 18px 8px;font-size:12px;color:#7b8293}" +
    ".ls-dots{display:inline-flex;gap:3px;padding:8px 10px;background:#fff;border:1px solid #e7e9ee;border-radius:14px}" +
    ".ls-dots i{width:6px;height:6px;border-radius:50%;background:#9aa1af;animation:ls-b 1.2s infinite}.ls-dots i:nth-child(2){animation-delay:.15s}.ls-dots i:nth-child(3){animation-delay:.3s}" +
    "@keyframes ls-b{0%,60%,100%{transform:none;opacity:.5}30%{transform:translateY(-3px);opacity:1}}" +
    ".ls-compose{background:#fff;border-top:1px solid #e7e9ee;padding:10px 12px 12px}" +
    ".ls-pre{display:flex;gap:8px;margin-bottom:8px}.ls-pre input{flex:1;min-width:0}" +
    ".ls-field{border:1px solid #dde0e7;border-radius:10px;padding:8px 11px;background:#fff;outline:0}.ls-field:focus{border-color:var(--ls-c);box-shadow:0 0 0 3px color-mix(in srgb,var(--ls-c) 18%,transparent)}" +
    ".ls-line{display:flex;align-items:flex-end;gap:8px;background:#f3f4f7;border-radius:22px;padding:4px 4px 4px 14px;border:1px solid transparent}" +
    ".ls-line:focus-within{border-color:var(--ls-c);background:#fff}" +
    ".ls-input{flex:1;border:0;background:transparent;resize:none;outline:0;padding:8px 0;max-height:120px;min-height:22px;line-height:1.4}" +
    ".ls-send{flex:none;width:38px;height:38px;border-radius:50%;border:0;display:grid;place-items:center;background:var(--ls-c);color:var(--ls-ink)}.ls-send svg{width:18px;height:18px;fill:currentColor}" +
    ".ls-send:disabled{opacity:.4;cursor:default}" +
    ".ls-card{background:#fff;border:1px solid #e7e9ee;border-radius:14px;padding:16px;margin:14px 2px 6px;display:flex;flex-direction:column;gap:10px}" +
    ".ls-card h3{margin:0;font-size:15px}.ls-card p{margin:0;color:#5c6373;font-size:13px}.ls-card label{display:flex;flex-direction:column;gap:4px;font-size:12.5px;color:#4a5161;font-weight:600}" +
    ".ls-btn{border:0;border-radius:10px;padding:10px 14px;font-weight:650;background:var(--ls-c);color:var(--ls-ink)}.ls-btn:disabled{opacity:.45;cursor:default}" +
    ".ls-stars{display:flex;gap:4px;justify-content:center}.ls-star{border:0;background:none;font-size:28px;line-height:1;padding:2px 4px;color:#d3d7df}.ls-star.ls-lit{color:#f5b301}" +
    "@media (max-width:480px){.ls-panel{inset:0;width:100%;height:100%;border-radius:0;animation:none}.ls-open .ls-launcher{display:none}}" +
    "@media (prefers-reduced-motion:reduce){.ls-panel,.ls-dots i{animation:none}.ls-launcher{transition:none}}";
  var HTML =
    "<div class='ls-root'>" +
    "<button class='ls-launcher' data-ls='launcher' type='button' aria-expanded='false' aria-controls='ls-panel' data-ta='open'>" +
    "<span class='ls-ic ls-i-chat'>" + ICON_CHAT + "</span><span class='ls-ic ls-i-down'>" + ICON_DOWN + "</span><span class='ls-badge' hidden></span></button>" +
    "<section class='ls-panel' id='ls-panel' data-ls='panel' role='dialog' hidden>" +
    "<header class='ls-head'><div class='ls-avatar' aria-hidden='true'></div>" +
    "<div class='ls-hd'><h2 class='ls-title'></h2><p class='ls-sub'></p></div>" +
    "<button class='ls-hb ls-end' type='button' data-t='end' hidden></button>" +
    "<button class='ls-hb ls-x' type='button' data-ta='close'>" + ICON_DOWN + "</button></header>" +
    "<div class='ls-bar' role='status' hidden></div>" +
    "<div class='ls-body'><div class='ls-list' role='log' aria-live='polite'>" +
    "<div class='ls-row ls-greet'><div class='ls-av' aria-hidden='true'></div><div class='ls-col'><div class='ls-bub'></div></div></div>" +
    "<div class='ls-outbox'></div></div>" +
    "<form class='ls-card ls-offline' data-ls='offline-form' hidden novalidate><h3 data-t='offTitle'></h3><p data-t='offText'></p>" +
    "<label><span data-t='name'></span><input class='ls-field' name='name' autocomplete='name' maxlength='200'></label>" +
    "<label><span data-t='email'></span><input class='ls-field' name='email' type='email' autocomplete='email' maxlength='254' required></label>" +
    "<label><span data-t='message'></span><textarea class='ls-field' name='message' rows='4' maxlength='10000' required></textarea></label>" +
    "<button class='ls-btn' type='submit' data-t='offSend'></button></form></div>" +
    "<div class='ls-typing' data-ls='typing' aria-live='polite' hidden><span class='ls-dots' aria-hidden='true'><i></i><i></i><i></i></span><span class='ls-tt'></span></div>" +
    "<form class='ls-compose'><div class='ls-pre' hidden>" +
    "<input class='ls-field' name='name' autocomplete='name' maxlength='200' data-tp='preName' data-ta='preName'>" +
    "<input class='ls-field' name='email' type='email' autocomplete='email' maxlength='254' data-tp='preEmail' data-ta='preEmail'></div>" +
    "<div class='ls-line'><textarea class='ls-input' data-ls='input' rows='1' maxlength='10000' data-tp='placeholder' data-ta='message'></textarea>" +
    "<button class='ls-send' data-ls='send' type='submit' data-ta='send' disabled>" + ICON_SEND + "</button></div></form>" +
    "</section></div>";

  function ink(hex) {
    var h = hex.slice(1);
    if (h.length === 3) { h = h.replace(/./g, "$&$&"); }
    var n = parseInt(h, 16);
    return 0.299 * (n >> 16) + 0.587 * (n >> 8 & 255) + 0.114 * (n & 255) > 170 ? "#141a26" : "#fff";
  }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text != null) { n.textContent = text; }
    return n;
  }
  function initials(name) {
    var words = String(name || "").trim().split(/\s+/).filter(Boolean);
    if (!words.length) { return "?"; }
    var first = Array.from(words[0])[0], last = words.length > 1 ? Array.from(words[words.length - 1])[0] : "";
    return (first + last).toUpperCase();
  }
  function clock(at) {
    var d = at ? new Date(at) : new Date();
    return isNaN(d) ? "" : d.toLocaleTimeString(LANG, { hour: "2-digit", minute: "2-digit" });
  }
  var LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  // Text with its http(s) URLs as anchors: every piece a text node, so nothing becomes markup.
  function linkify(parent, text) {
    var last = 0, m;
    LINK.lastIndex = 0;
    while ((m = LINK.exec(text))) {
      var url = m[0].replace(/[.,;:!?)\]}]+$/, ""), a = null;
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      try {
        var u = new URL(url);
        if (u.protocol === "http:" || u.protocol === "https:") {
          a = el("a", null, url);
          a.href = u.href;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
        }
      } catch (e) { a = null; }
      parent.appendChild(a || document.createTextNode(url));
      last = LINK.lastIndex = m.index + url.length;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  var host = document.createElement("ls-widget");
  var root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    // A constructed sheet is not inline style, so a host page's CSP does not block it.
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    root.appendChild(el("style", null, CSS));
  }
  var shell = el("div");
  shell.innerHTML = HTML; // static markup only; nothing from users or the server
  root.appendChild(shell.firstChild);
  var $ = function (sel) { return root.querySelector(sel); };
  Array.prototype.forEach.call(root.querySelectorAll("[data-t]"), function (n) { n.textContent = T[n.getAttribute("data-t")]; });
  Array.prototype.forEach.call(root.querySelectorAll("[data-tp]"), function (n) { n.placeholder = T[n.getAttribute("data-tp")]; });
  Array.prototype.forEach.call(root.querySelectorAll("[data-ta]"), function (n) { n.setAttribute("aria-label", T[n.getAttribute("data-ta")]); });
  var ui = {
    root: $(".ls-root"), launcher: $(".ls-launcher"), badge: $(".ls-badge"), panel: $(".ls-panel"), avatar: $(".ls-avatar"),
    title: $(".ls-title"), sub: $(".ls-sub"), end: $(".ls-end"), bar: $(".ls-bar"), body: $(".ls-body"), list: $(".ls-list"),
    outbox: $(".ls-outbox"), typing: $(".ls-typing"), offline: $(".ls-offline"), compose: $(".ls-compose"), pre: $(".ls-pre"),
    input: $(".ls-input"), send: $(".ls-send")
  };
  var TITLE = CONFIG.title || T.title;
  ui.title.textContent = TITLE;
  ui.panel.setAttribute("aria-label", TITLE);
  linkify($(".ls-greet .ls-bub"), CONFIG.greeting || T.greeting);
  $(".ls-greet .ls-av").innerHTML = ICON_CHAT;

  // -- state --------------------------------------------------------------------------
  var state = { vid: null, cid: null, status: "", agent: null, online: true, open: false, queue: null, net: true, sessionCursor: null };
  var seen = {};          // "cid:seq" -> true: each durable event is shown once
  var sections = {};      // conversation id -> its element in the list
  var pendingNodes = {};  // client_msg_id -> bubble still waiting for its ack
  var profile = null;     // name/email to send with the next session call
  var leftMessage = false;

  function section(cid) {
    var s = sections[cid];
    if (!s) {
      s = sections[cid] = el("div", "ls-conv");
      s.setAttribute("data-cid", cid);
      if (ui.list.querySelector(".ls-conv")) {
        var d = el("div", "ls-div", T.newConv);
        d.lsSeq = 0;
        s.appendChild(d);
      }
      ui.list.insertBefore(s, ui.outbox);
    }
    return s;
  }
  // Keep a conversation's nodes in seq order, whatever order they arrive in.
  function place(sec, node, seq) {
    node.lsSeq = seq;
    var before = sec.lastChild;
    while (before && !(before.lsSeq <= seq)) { before = before.previousSibling; }
    sec.insertBefore(node, before ? before.nextSibling : sec.firstChild);
    group(node);
    group(node.nextSibling);
  }
  // Consecutive messages of one author sit together, with one avatar.
  function group(node) {
    if (!node || !node.lsAuthor) { return; }
    var prev = node.previousSibling;
    node.classList.toggle("ls-cont", !!(prev && prev.lsAuthor === node.lsAuthor));
  }
  function bubble(m, kind) {
    var row = el("div", "ls-row ls-" + kind);
    row.setAttribute("data-ls", "message");
    row.lsAuthor = m.author.kind + ":" + m.author.id;
    row.lsKind = m.author.kind;
    if (kind !== "mine") {
      var av = el("div", "ls-av", initials(m.author.name || T.agent));
      av.setAttribute("aria-hidden", "true");
      row.appendChild(av);
    }
    var col = el("div", "ls-col"), bub = el("div", "ls-bub");
    linkify(bub, m.body);
    col.appendChild(bub);
    col.appendChild(el("div", "ls-meta", (kind === "mine" ? "" : (m.author.name || T.agent) + " · ") + clock(m.at)));
    row.appendChild(col);
    return row;
  }
  function acked(row, m) {
    row.classList.remove("ls-pending", "ls-failed");
    row.setAttribute("data-seq", String(m.seq));
    row.lastChild.lastChild.textContent = clock(m.at);
    row.lsAuthor = "visitor:" + m.author.id;
  }
  function sys(e, text) {
    var n = el("div", "ls-sys", text);
    n.setAttribute("data-seq", String(e.seq));
    place(section(e.conversation_id), n, e.seq);
  }
  function nearBottom() { return ui.body.scrollHeight - ui.body.scrollTop - ui.body.clientHeight < 80; }
  function toBottom() { ui.body.scrollTop = ui.body.scrollHeight; }

  // -- events -------------------------------------------------------------------------
  function current(cid) {
    if (cid && cid !== state.cid && !sections[cid]) {
      state.cid = cid;
      state.status = "waiting";
      state.agent = null;
      state.queue = null;
    }
    return cid === state.cid;
  }
  function onEvent(e, live) {
    var d = e.data || {}, cid = e.conversation_id, stick = nearBottom();
    if (e.seq != null) {
      if (seen[cid + ":" + e.seq]) { return; }
      seen[cid + ":" + e.seq] = true;
    }
    var now = current(cid);
    if (e.type === "message") {
      message(d);
      if (now && d.author.kind === "agent") { showTyping(false); if (!state.agent) { state.agent = d.author; } }
    } else if (e.type === "typing") {
      if (now && d.author && d.author.kind === "agent") { showTyping(d.typing, d.author.name); }
      return;
    } else if (e.type === "queue") {
      if (now) { state.queue = d.position; }
    } else if (e.type === "agent_joined" || e.type === "transferred") {
      sys(e, t(e.type === "agent_joined" ? "joined" : "transferred", d.agent && d.agent.name || T.agent));
      if (now) { state.agent = d.agent; state.status = "active"; state.queue = null; }
    } else if (e.type === "agent_left") {
      sys(e, t("left", d.agent && d.agent.name || T.agent));
      if (now) { state.agent = null; state.status = "waiting"; }
    } else if (e.type === "conversation_closed") {
      sys(e, T.closed);
      if (now) { state.status = "closed"; state.queue = null; showTyping(false); rating(cid); }
    } else {
      return;
    }
    if (live && (stick || (d.author && d.author.kind === "visitor"))) { toBottom(); }
    refresh();
  }
  function message(m) {
    var row = m.author.kind === "visitor" && pendingNodes[m.client_msg_id];
    if (row) {
      delete pendingNodes[m.client_msg_id];
      acked(row, m);
      dropOutbox(m.client_msg_id);
    } else {
      row = bubble(m, m.author.kind === "visitor" ? "mine" : "theirs");
      row.setAttribute("data-seq", String(m.seq));
    }
    place(section(m.conversation_id), row, m.seq);
  }
  function rating(cid) {
    if (load("rated", {})[cid] || section(cid).querySelector("[data-ls=rating]")) { return; }
    var card = el("form", "ls-card"), score = 0;
    card.setAttribute("data-ls", "rating");
    card.appendChild(el("h3", null, T.rateQ));
    var stars = el("div", "ls-stars");
    stars.setAttribute("role", "radiogroup");
    stars.setAttribute("aria-label", T.rateQ);
    var note = el("textarea", "ls-field");
    note.rows = 2;
    note.maxLength = 2000;
    note.placeholder = T.comment;
    note.setAttribute("aria-label", T.comment);
    var go = el("button", "ls-btn", T.rateSend);
    go.type = "submit";
    go.disabled = true;
    [1, 2, 3, 4, 5].forEach(function (n) {
      var b = el("button", "ls-star", "★");
      b.type = "button";
      b.setAttribute("role", "radio");
      b.setAttribute("aria-checked", "false");
      b.setAttribute("aria-label", t("star", n));
      b.setAttribute("data-score", String(n));
      b.addEventListener("click", function () {
        score = n;
        go.disabled = false;
        Array.prototype.forEach.call(stars.children, function (s, i) {
          s.classList.toggle("ls-lit", i < n);
          s.setAttribute("aria-checked", String(i === n - 1));
        });
      });
      stars.appendChild(b);
    });
    card.appendChild(stars);
    card.appendChild(note);
    card.appendChild(go);
    card.addEventListener("submit", function (ev) {
      ev.preventDefault();
      go.disabled = true;
      request("POST", "/rating", { score: score, comment: note.value.slice(0, 2000) }).then(function () {
        var rated = load("rated", {});
        rated[cid] = 1;
        save("rated", rated);
        card.textContent = "";
        card.appendChild(el("p", null, T.rateThanks));
      }, function () { go.disabled = false; });
    });
    card.lsSeq = 1e9;
    section(cid).appendChild(card);
  }
  var typingTimer = 0;
  function showTyping(on, name) {
    clearTimeout(typingTimer);
    ui.typing.hidden = !on;
    if (on) {
      ui.typing.lastChild.textContent = t("typing", name || T.agent);
      typingTimer = setTimeout(showTyping, 8000, false); // the "stopped" notice may be lost
      if (nearBottom()) { setTimeout(toBottom); }
    }
  }

  // -- what the visitor sees: header, badge, title, forms ------------------------------
  var baseTitle = null;
  function readMark() { var r = load("read", null); return r && r.cid === state.cid ? r.seq : 0; }
  function refresh() {
    var a = state.agent, online = state.online || !!a;
    ui.avatar.textContent = "";
    if (a) { ui.avatar.textContent = initials(a.name); } else { ui.avatar.innerHTML = ICON_CHAT; }
    ui.avatar.classList.toggle("ls-on", online && state.status !== "closed");
    ui.sub.textContent = a && state.status === "active" ? t("with", a.name || T.agent) : state.status === "closed" ? T.closed : online ? T.replySoon : T.away;
    ui.end.hidden = !(state.status === "waiting" || state.status === "active") || !state.cid;
    var bar = !state.net ? T.reconnecting : state.status === "waiting" && state.queue ? (state.queue > 1 ? t("queue", state.queue - 1) : T.queueNext) : "";
    ui.bar.hidden = !bar;
    ui.bar.textContent = bar;
    var offline = !state.online && !leftMessage && (!state.cid || state.status === "closed") && !Object.keys(pendingNodes).length;
    // The form may replace the compose box under the visitor's cursor (the session
    // answer said no agent is online after the panel opened): focus follows it.
    var typing = offline && ui.offline.hidden && ui.input.getRootNode().activeElement === ui.input;
    ui.offline.hidden = !offline;
    ui.compose.hidden = offline;
    if (typing) { ui.offline.elements.name.focus(); }
    ui.pre.hidden = !(CONFIG.prechat && !state.cid && !leftMessage && !Object.keys(pendingNodes).length);
    // Unread: agent messages of the current conversation past the read mark.
    var unread = 0, mark = readMark(), sec = sections[state.cid];
    if (sec && !(state.open && !document.hidden)) {
      Array.prototype.forEach.call(sec.children, function (n) { if (n.lsKind === "agent" && n.lsSeq > mark) { unread++; } });
    }
    ui.badge.hidden = !unread || state.open;
    ui.badge.textContent = unread > 9 ? "9+" : String(unread);
    if (unread && !state.open) {
      if (baseTitle === null) { baseTitle = document.title; }
      document.title = "(" + unread + ") " + T.newMsg + " · " + baseTitle;
    } else if (baseTitle !== null) {
      document.title = baseTitle;
      baseTitle = null;
    }
    if (state.open) { markRead(); }
  }
  var readTimer = 0;
  function markRead() {
    var sec = sections[state.cid];
    if (!sec || document.hidden) { return; }
    var top = 0;
    Array.prototype.forEach.call(sec.children, function (n) { if (n.lsSeq > top && n.lsSeq < 1e9) { top = n.lsSeq; } });
    if (top > readMark()) {
      save("read", { cid: state.cid, seq: top });
      clearTimeout(readTimer);
      readTimer = setTimeout(function () { request("POST", "/read", { seq: top }).catch(quiet); }, 250);
    }
  }
  function setOpen(open, focus) {
    state.open = open;
    ui.panel.hidden = !open;
    ui.root.classList.toggle("ls-open", open);
    ui.launcher.setAttribute("aria-expanded", String(open));
    ui.launcher.setAttribute("aria-label", open ? T.close : T.open);
    tabFlag("open", open);
    if (open) {
      toBottom();
      if (focus) { (ui.offline.hidden ? ui.input : ui.offline.elements.name).focus(); }
      if (Date.now() - lastSession > 60000) { session().then(refresh, quiet); }
    } else {
      showTyping(false);
      if (focus) { ui.launcher.focus(); }
    }
    refresh();
  }

  // -- sending ------------------------------------------------------------------------
  function pendingRow(item) {
    var row = bubble({ body: item.body, at: item.at, author: { kind: "visitor", id: "" } }, "mine");
    row.classList.add("ls-pending");
    row.lastChild.lastChild.textContent = T.sending;
    pendingNodes[item.id] = row;
    ui.outbox.appendChild(row);
    return row;
  }
  function send(text, note) {
    var item = { id: newId(), body: text, at: new Date().toISOString(), note: note };
    save("out", load("out", []).concat([item]));
    pendingRow(item);
    toBottom();
    refresh();
    flush();
  }
  function dropOutbox(id) { save("out", load("out", []).filter(function (i) { return i.id !== id; })); }
  var flushing = false, sendTries = 0;
  // One message at a time, in order; each retried with its client_msg_id until acknowledged.
  function flush() {
    var item = load("out", [])[0];
    if (flushing || !item || !state.vid) { return; }
    flushing = true;
    var who = profile;
    (who ? session(who) : Promise.resolve()).then(function () {
      profile = who === profile ? null : profile;
      return request("POST", "/messages", { client_msg_id: item.id, body: item.body });
    }).then(function (d) {
      flushing = false;
      sendTries = 0;
      dropOutbox(item.id);
      var m = d.message;
      if (!seen[m.conversation_id + ":" + m.seq]) { onEvent({ type: "message", conversation_id: m.conversation_id, seq: m.seq, data: m }, true); }
      if (item.note) { note(T.offThanks); }
      refresh();
      flush();
    }, function (err) {
      flushing = false;
      var s = err.status;
      if (s === 401) { session().then(flush, retry); return; }
      if (s && s < 500 && s !== 408 && s !== 429) { fail(item); flush(); return; }
      retry();
      function retry() { setTimeout(flush, backoff(sendTries++, err.retryAfter)); }
    });
  }
  function fail(item) {
    dropOutbox(item.id);
    var row = pendingNodes[item.id];
    if (!row) { return; }
    delete pendingNodes[item.id];
    row.classList.remove("ls-pending");
    row.classList.add("ls-failed");
    var meta = row.lastChild.lastChild;
    meta.textContent = T.failed;
    meta.setAttribute("role", "button");
    meta.tabIndex = 0;
    meta.addEventListener("click", function () { row.remove(); send(item.body); });
  }
  function note(text) { ui.list.insertBefore(el("div", "ls-sys", text), ui.outbox); toBottom(); }

  var typingSent = 0, typingOn = false, typingIdle = 0;
  function typing() {
    clearTimeout(typingIdle);
    if (!state.cid || state.status === "closed" || !ui.input.value) { stopTyping(); return; }
    if (Date.now() - typingSent > 3000) {
      typingSent = Date.now();
      typingOn = true;
      request("POST", "/typing", { typing: true }).catch(quiet);
    }
    typingIdle = setTimeout(stopTyping, 4000);
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingOn) {
      typingOn = false;
      typingSent = 0;
      request("POST", "/typing", { typing: false }).catch(quiet);
    }
  }

  // -- tabs: one leader polls, the others listen -----------------------------------------
  var listeners = [];
  var bus = (function () {
    if (window.BroadcastChannel) {
      var ch = new BroadcastChannel(NS + "bus");
      ch.addEventListener("message", function (e) { listeners.forEach(function (f) { f(e.data); }); });
      return function (m) { ch.postMessage(m); };
    }
    window.addEventListener("storage", function (e) {
      if (e.key === NS + "bus" && e.newValue) { listeners.forEach(function (f) { f(JSON.parse(e.newValue).m); }); }
    });
    return function (m) { save("bus", { m: m, n: newId() }); };
  })();
  listeners.push(function (m) {
    if (!m || (state.vid && m.vid !== state.vid) || leader) { return; }
    if (m.t === "ev") { m.ev.forEach(function (e) { onEvent(e, true); }); }
    if (m.t === "net") { state.net = m.ok; refresh(); }
    if (m.t === "bye" && hb) { setTimeout(hb, Math.random() * 150); }
  });
  window.addEventListener("storage", function (e) { if (e.key === NS + "read") { refresh(); } });

  var leader = false, release = null, hb = null, cursor = null, pollCtl = null, polling = false, pollTries = 0, pollTimer = 0;
  function elect() {
    if (navigator.locks && navigator.locks.request) {
      // The browser hands the lock to the next waiting tab when the leader's page goes away.
      navigator.locks.request(NS + "leader", function () {
        return new Promise(function (done) { release = done; lead(); });
      }).catch(quiet);
      return;
    }
    // Fallback: a lock in localStorage, renewed every 2 s, taken over when 8 s stale.
    var me = newId();
    hb = function () {
      var lock = load("hb", null), now = Date.now();
      if (lock && lock.id === me) {
        save("hb", { id: me, at: now });
      } else if (!lock || now - lock.at > 8000) {
        save("hb", { id: me, at: now });
        setTimeout(function () { var l = load("hb", null); if (l && l.id === me && !leader) { lead(); } }, 200 + Math.random() * 200);
      } else if (leader) {
        resign();
      }
    };
    hb();
    setInterval(hb, 2000);
  }
  function lead() {
    leader = true;
    var stored = load("cur", null);
    cursor = stored && stored.vid === state.vid ? stored.c : state.sessionCursor;
    poll();
  }
  function resign() {
    leader = false;
    clearTimeout(pollTimer);
    if (pollCtl) { pollCtl.abort(); pollCtl = null; }
    if (release) { release(); release = null; }
  }
  function setNet(ok) {
    if (state.net !== ok) { state.net = ok; refresh(); bus({ t: "net", ok: ok, vid: state.vid }); }
  }
  function poll() {
    if (!leader) { return; }
    var ctl = pollCtl = new AbortController();
    var guard = setTimeout(function () { ctl.abort(); }, 40000); // a proxy that never answers
    var q = "/poll?timeout=25" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    polling = true;
    request("GET", q, null, ctl.signal).then(function (d) {
      polling = false;
      clearTimeout(guard);
      if (ctl !== pollCtl) { return; }
      pollTries = 0;
      setNet(true);
      remember(d.events);
      cursor = d.cursor;
      save("cur", { vid: state.vid, c: cursor });
      bus({ t: "ev", ev: d.events, vid: state.vid });
      d.events.forEach(function (e) { onEvent(e, true); });
      poll();
    }, function (err) {
      polling = false;
      clearTimeout(guard);
      if (ctl !== pollCtl) { return; }
      if (err.status === 400 || err.status === 401) {
        // A cursor from another visitor (cookie replaced) or no cookie: start over from now.
        save("cur", null);
        session().then(function () { cursor = state.sessionCursor; history(); poll(); }, again);
        return;
      }
      again();
      function again() {
        if (++pollTries > 1) { setNet(false); }
        pollTimer = setTimeout(poll, backoff(pollTries, err.retryAfter));
      }
    });
  }
  // The durable events of the current conversation, so a reload shows joins and closes too.
  function remember(events) {
    var tr = load("tr", null);
    events.forEach(function (e) {
      if (e.seq == null) { return; }
      if (!tr || tr.cid !== e.conversation_id) { tr = { vid: state.vid, cid: e.conversation_id, ev: [] }; }
      if (tr.ev.some(function (x) { return x.seq === e.seq; })) { return; }
      tr.ev.push(e.type === "message" ? { type: "message", conversation_id: e.conversation_id, seq: e.seq } : e);
    });
    if (tr) { tr.ev = tr.ev.slice(-200); save("tr", tr); }
  }

  // -- start ----------------------------------------------------------------------------
  var lastSession = 0;
  function session(extra) {
    var body = {
      page: location.href.slice(0, 2000), referrer: document.referrer.slice(0, 2000),
      locale: (navigator.language || "").slice(0, 35)
    };
    if (extra) { Object.keys(extra).forEach(function (k) { if (extra[k]) { body[k] = extra[k]; } }); }
    return request("POST", "/session", body).then(function (s) {
      lastSession = Date.now();
      state.vid = s.visitor_id;
      state.sessionCursor = s.cursor;
      state.online = s.agents_online;
      current(s.conversation_id);
      return s;
    });
  }
  function history() {
    return request("GET", "/history?limit=50").then(function (d) {
      d.messages.forEach(function (m) { onEvent({ type: "message", conversation_id: m.conversation_id, seq: m.seq, data: m }, false); });
      toBottom();
    }, quiet);
  }
  var starts = 0;
  function start() {
    session().then(function (s) {
      var tr = load("tr", null), stored = load("cur", null);
      if (stored && stored.vid !== s.visitor_id) { save("out", null); save("read", null); }
      if (!tr || tr.vid !== s.visitor_id || tr.cid !== s.conversation_id) {
        tr = null;
        if (!stored || stored.vid !== s.visitor_id || s.conversation_id) { save("cur", null); }
      }
      if (tr) { tr.ev.forEach(function (e) { if (e.type !== "message") { onEvent(e, false); } }); }
      load("out", []).forEach(pendingRow);
      (s.conversation_id ? history() : Promise.resolve()).then(function () {
        elect();
        flush();
        refresh();
        toBottom();
      });
    }, function (err) { setTimeout(start, backoff(starts++, err.retryAfter)); });
  }

  ui.launcher.addEventListener("click", function () { setOpen(!state.open, true); });
  $(".ls-x").addEventListener("click", function () { setOpen(false, true); });
  ui.end.addEventListener("click", function () {
    stopTyping();
    request("POST", "/close").catch(quiet);
  });
  root.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && state.open) { e.stopPropagation(); setOpen(false, true); }
  });
  ui.compose.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = ui.input.value.trim();
    if (!text) { return; }
    if (!ui.pre.hidden) {
      var f = ui.compose.elements;
      if (f.name.value.trim() || f.email.value.trim()) { profile = { name: f.name.value.trim(), email: f.email.value.trim() }; }
    }
    stopTyping();
    send(text);
    ui.input.value = "";
    grow();
  });
  function grow() {
    ui.input.style.height = "auto";
    ui.input.style.height = Math.min(ui.input.scrollHeight, 120) + "px";
    ui.send.disabled = !ui.input.value.trim();
  }
  ui.input.addEventListener("input", function () { grow(); typing(); });
  ui.input.addEventListener("blur", stopTyping);
  ui.input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); ui.compose.requestSubmit(); }
  });
  ui.offline.addEventListener("submit", function (e) {
    e.preventDefault();
    var f = ui.offline.elements;
    if (!ui.offline.checkValidity() || !f.message.value.trim()) { ui.offline.reportValidity(); return; }
    profile = { name: f.name.value.trim(), email: f.email.value.trim() };
    leftMessage = true;
    send(f.message.value.trim(), true);
    ui.offline.reset();
    ui.input.focus();
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
  window.addEventListener("online", function () {
    if (leader && !polling) { clearTimeout(pollTimer); pollTries = 0; poll(); }
    flush();
  });
  window.addEventListener("pagehide", function () {
    if (leader) { resign(); if (hb) { save("hb", null); bus({ t: "bye", vid: state.vid }); } }
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted && !leader && state.vid) { if (hb) { hb(); } else { elect(); } }
  });

  function mount() {
    document.body.appendChild(host);
    if (tabFlag("open")) { setOpen(true, false); }
    refresh();
    start();
  }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
  window.LiveSupport = {
    version: 1,
    open: function () { setOpen(true, true); },
    close: function () { setOpen(false, false); }
  };
})();
