// billingd console: progressive enhancement only. Every page works without it.
// Loaded from the console's own origin (the CSP allows no inline script).
(function () {
  "use strict";
  // A filter whose select changes submits its form.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.requestSubmit(); });
  });
  // A form posts once: its button is disabled while the page reloads.
  document.querySelectorAll("form[method=post]").forEach(function (f) {
    f.addEventListener("submit", function () {
      f.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    });
  });
  // A resolve note shows how many characters are left.
  document.querySelectorAll("input[data-maxlen]").forEach(function (i) {
    var max = parseInt(i.getAttribute("data-maxlen"), 10);
    var hint = document.createElement("span");
    hint.className = "sub";
    i.insertAdjacentElement("afterend", hint);
    var show = function () { hint.textContent = (max - i.value.length) + " left"; };
    i.addEventListener("input", show);
    show();
  });
})();
