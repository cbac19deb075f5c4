// A check-in's live count: listens to the page's event stream and says what the server sends
// (the count only once at least k answered). When answers close or the reveal comes, the page
// reloads to show it (once: a page already showing that state does not). Without this file the page refreshes itself every few seconds.
"use strict";
const box = document.getElementById("live");
if (box && window.EventSource) {
  const text = box.querySelector("[data-live-text]");
  const events = new EventSource(box.dataset.events);
  let open = true;
  events.addEventListener("state", (event) => {
    const update = JSON.parse(event.data);
    if (update.state !== "open") {
      events.close();
      if (open && update.state !== box.dataset.state) window.location.reload();
      return;
    }
    text.textContent = update.count === null ? box.dataset.waiting : box.dataset.counted.replace("%(n)s", update.count);
  });
  window.addEventListener("pagehide", () => { open = false; events.close(); });
}
