// signoff web inbox: live updates over server-sent events, keyboard shortcuts. No inline
// scripts anywhere (the Content-Security-Policy forbids them); this file is all there is.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf"]')?.content || "";

  // Live: when the server says something changed, refetch every [data-refresh] region.
  const live = document.body.dataset.live;
  if (live && window.EventSource) {
    const source = new EventSource(live);
    let busy = false, again = false;
    const refresh = async () => {
      if (busy) { again = true; return; }
      busy = true;
      try {
        for (const region of document.querySelectorAll("[data-refresh]")) {
          const response = await fetch(region.dataset.refresh, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
          if (response.status === 401) { ended(); return; }
          if (!response.ok) continue;
          region.innerHTML = await response.text();  // server-rendered, escaped HTML of signoff's own templates
          const count = response.headers.get("X-Count");
          if (count !== null && document.body.dataset.title) document.title = `(${count}) ${document.body.dataset.title}`;
        }
        document.dispatchEvent(new CustomEvent("signoff:refreshed"));
      } finally {
        busy = false;
        if (again) { again = false; refresh(); }
      }
    };
    // The session ended (signed out elsewhere, revoked, expired): say so instead of going quiet.
    const ended = () => {
      source.close();
      if (document.getElementById("session-ended")) return;
      const note = document.createElement("p");
      note.id = "session-ended";
      note.className = "problem card";
      note.setAttribute("role", "alert");
      note.textContent = "Your session has ended. Ask for a new sign-in link to go on.";
      document.querySelector("main")?.prepend(note);
    };
    source.addEventListener("error", async () => {
      const check = await fetch(window.location.pathname, { method: "HEAD", credentials: "same-origin" }).catch(() => null);
      if (check && check.status === 401) ended();
    });
    source.addEventListener("changed", refresh);
    // On (re)connecting, catch up on whatever changed while the stream was not open.
    source.addEventListener("open", () => { document.body.dataset.liveOpen = "1"; refresh(); });
  }

  // Rows open on click (the link inside is the accessible way).
  document.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button, input, select, textarea")) window.location.href = row.dataset.href;
  });

  // Keyboard: j / k move through rows, Enter opens; a approves, r rejects (on a request page).
  let selected = -1;
  const rows = () => Array.from(document.querySelectorAll("tr[data-row]"));
  const select = (i) => {
    const all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((r, n) => r.classList.toggle("selected", n === selected));
    all[selected].scrollIntoView({ block: "nearest" });
  };
  document.addEventListener("signoff:refreshed", () => { selected = -1; });
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) return;
    const key = event.key;
    if (key === "j") select(selected + 1);
    else if (key === "k") select(selected - 1);
    else if (key === "Enter" && selected >= 0) { const r = rows()[selected]; if (r) window.location.href = r.dataset.href; }
    else if (key === "a") document.querySelector("[data-key=approve]")?.click();
    else if (key === "r") { const f = document.querySelector("[data-key=reject]"); if (f) { f.focus(); event.preventDefault(); } }
    else return;
  });

  window.signoff = { csrf };
})();
