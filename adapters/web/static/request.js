// The request page: the deadline counts down, and once the request is decided elsewhere (the
// state region says so after a live refresh) its decision forms go away. No inline script.
"use strict";
(function () {
  const units = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  const left = (seconds) => {
    if (seconds <= 0) return "now";
    const parts = [];
    for (const [size, name] of units) {
      if (seconds >= size && parts.length < 2) { parts.push(`${Math.floor(seconds / size)} ${name}`); seconds %= size; }
    }
    return "in " + parts.join(" ");
  };
  const tick = () => {
    for (const t of document.querySelectorAll("time[data-countdown]")) {
      const at = Date.parse(t.getAttribute("datetime"));
      if (!Number.isNaN(at)) t.textContent = left(Math.floor((at - Date.now()) / 1000));
    }
  };
  tick();
  setInterval(tick, 1000);

  document.addEventListener("signoff:refreshed", () => {
    tick();
    const state = document.querySelector("#state [data-status]");
    const actions = document.getElementById("actions");
    if (state && actions && state.dataset.status !== "pending") {
      actions.hidden = true;
      actions.querySelectorAll("button, textarea").forEach((el) => { el.disabled = true; });
    }
  });
})();
