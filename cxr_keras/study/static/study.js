// Keyboard answers for the reader study: R = real, F = fake, B / Backspace = previous answer.
(function () {
  "use strict";
  var busy = false;
  function click(id) {
    var el = document.getElementById(id);
    if (el && !busy) {
      busy = true; // one answer per image even if a key is held down
      el.click();
    }
  }
  var form = document.getElementById("answer-form");
  if (form) {
    form.addEventListener("submit", function () { busy = true; });
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) { return; }
    var k = ev.key.toLowerCase();
    if (k === "r") { ev.preventDefault(); click("answer-real"); }
    else if (k === "f") { ev.preventDefault(); click("answer-fake"); }
    else if (k === "b" || k === "backspace") { ev.preventDefault(); click("back"); }
  });
  window.addEventListener("pageshow", function () { busy = false; });
})();
