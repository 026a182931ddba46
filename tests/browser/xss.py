"""Traps that catch hostile text turning into markup in a real browser page.

:data:`PAYLOADS` is the corpus (``xss_payloads.json``): each payload that could
run script calls ``__xss(N)``, N being its index, so an execution is recorded,
not guessed. :data:`TRAPS` runs in every page and frame before the page's own
scripts and records:

- calls of ``__xss``, and of ``alert``/``confirm``/``prompt``/``print``/``open``;
- every element added to the document once its static HTML is parsed, or to
  any shadow root at any time, and every attribute changed on one, that is
  not what the widget and console build: a tag outside their short list, an
  attribute outside theirs (so every ``on*`` handler, ``src``, ``srcdoc``,
  ``action``, ``formaction``, ``xlink:href``...), a link that is not
  http(s), inline style anywhere but the widget's growing text box.

``__xssShape(node, ui?)`` gives a node's text and every element under it that is
not a plain http(s) link (which the UIs make of URLs in text), leaving out the
elements the UI itself adds there (``ui``, a selector, such as a "Seen" mark).
The tests read each user-text container through it, so a dropped or altered
field, or a stray element, fails.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

PAYLOADS: list[str] = json.loads((Path(__file__).parent / "xss_payloads.json").read_text("utf-8"))

TRAPS = r"""
(() => {
  if (window.__xssReport) { return; }
  const report = { calls: [], dialogs: [], opened: [], injected: [] };
  const note = (list, what) => {
    if (list.length < 200) { list.push(String(what).slice(0, 300)); }
  };
  const fixed = (name, value) =>
    Object.defineProperty(window, name, { value, writable: false, configurable: false });
  fixed("__xss", (n) => note(report.calls, n));
  for (const name of ["alert", "confirm", "prompt", "print"]) {
    fixed(name, (...args) => note(report.dialogs, name + "(" + args.join(",") + ")"));
  }
  fixed("open", (...args) => { note(report.opened, args.join(",")); return null; });

  // What the widget and the console build (their static shells included), and no more.
  const TAGS = new Set(`a div span p li ul dl dt dd button form h2 h3 label input textarea
    section header svg path i ls-widget`.split(/\s+/));
  const ATTRS = new Set(`class id data-ls data-seq data-id data-cid data-t data-tp data-ta
    data-score data-agent-id role hidden type name autocomplete maxlength required rows
    placeholder tabindex href target rel viewbox d fill stroke stroke-width stroke-linecap
    stroke-linejoin style novalidate disabled`.split(/\s+/));
  const describe = (el) => "<" + el.tagName.toLowerCase() + el.getAttributeNames().map(
    (n) => " " + n + "=" + JSON.stringify(el.getAttribute(n))).join("") + ">";
  const wrong = (el) => {
    const tag = el.tagName.toLowerCase();
    if (!TAGS.has(tag)) { return "tag"; }
    for (const name of el.getAttributeNames()) {
      const n = name.toLowerCase();
      if (!ATTRS.has(n) && !n.startsWith("aria-")) { return "attribute " + n; }
      if (n === "style" && tag !== "textarea") { return "style"; }
      if (n === "href" && !(tag === "a" && /^https?:$/.test(el.protocol))) { return "href"; }
    }
    return null;
  };
  let statics = new WeakSet();
  const check = (el, shadow) => {
    if (!shadow && (document.readyState === "loading" || statics.has(el))) { return; }
    const why = wrong(el);
    if (why) { note(report.injected, why + ": " + describe(el)); }
  };
  const observe = (root, shadow) => new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") { check(r.target, shadow); continue; }
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) { continue; }
        check(n, shadow);
        n.querySelectorAll("*").forEach((e) => check(e, shadow));
      }
    }
  }).observe(root, { childList: true, subtree: true, attributes: true });
  observe(document, false);
  document.addEventListener("DOMContentLoaded", () => {
    statics = new WeakSet(document.querySelectorAll("*"));
  }, { capture: true, once: true });
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    const root = attach.call(this, init);
    observe(root, true);
    return root;
  };

  const safeLink = (e) => e.tagName === "A" && e.children.length === 0 &&
    e.getAttributeNames().sort().join(",") === "href,rel,target" && /^https?:$/.test(e.protocol) &&
    e.rel === "noopener noreferrer" && e.target === "_blank";
  // ``ui``: a selector of elements the UI itself adds to the node (left out).
  window.__xssShape = (node, ui) => {
    if (!node) { return null; }
    if (ui) { node = node.cloneNode(true); node.querySelectorAll(ui).forEach((e) => e.remove()); }
    return {
      text: node.textContent,
      bad: Array.from(node.querySelectorAll("*")).filter((e) => !safeLink(e)).map(describe)
    };
  };
  window.__xssReport = () => report;
})();
"""


def cheap_hash(password: str) -> str:
    """A valid Argon2id PHC string at the smallest cost the format allows: the store
    keeps the parameters with the hash, so hundreds of agents sign in quickly."""
    salt = os.urandom(16)
    kdf = Argon2id(salt=salt, length=32, iterations=1, lanes=1, memory_cost=8)
    digest = kdf.derive(password.encode())

    def b64(data: bytes) -> str:
        return base64.b64encode(data).rstrip(b"=").decode()

    return f"$argon2id$v=19$m=8,t=1,p=1${b64(salt)}${b64(digest)}"


class Watch:
    """Browser contexts with :data:`TRAPS` in every page; real dialogs and new pages
    (popups, ``target=_blank`` navigations) are counted as well."""

    def __init__(self, contexts: Any) -> None:
        self.contexts = contexts
        self.pages: list[Any] = []
        self.dialogs: list[str] = []
        self.popups: list[str] = []

    def page(self, **options: Any) -> Any:
        context = self.contexts(**options)
        context.add_init_script(TRAPS)
        page = context.new_page()
        page.on("dialog", self._dialog)
        context.on("page", lambda p: self.popups.append(p.url))
        self.pages.append(page)
        return page

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def verdict(self) -> dict[str, list[str]]:
        """Everything the traps caught on every open page; all lists empty means clean."""
        found: dict[str, list[str]] = {
            "calls": [], "dialogs": list(self.dialogs), "opened": [], "injected": [],
            "popups": list(self.popups),
        }  # fmt: skip
        for page in self.pages:
            if page.is_closed():
                continue
            for frame in page.frames:
                report = frame.evaluate("() => window.__xssReport ? window.__xssReport() : null")
                assert report is not None, f"the traps are missing in {frame.url}"
                for key in ("calls", "dialogs", "opened", "injected"):
                    found[key] += [f"{frame.url}: {x}" for x in report[key]]
        return found

    def assert_clean(self) -> None:
        found = self.verdict()
        assert found == {k: [] for k in found}, found
