/* livesupport visitor widget (placeholder: the full widget replaces this file). */
(function () {
  "use strict";
  var script = document.currentScript;
  var src = script && script.src ? script.src : "";
  var prefix = src ? new URL(src).pathname.replace(/\/widget\.js$/, "") : "/livesupport";
  window.LiveSupport = window.LiveSupport || { prefix: prefix, version: 1 };
})();
