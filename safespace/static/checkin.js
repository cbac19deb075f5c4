// A check-in's live count: listens to the page's event stream and says what the server sends
// (the count only once at least k answered). When answers close or the reveal comes, the page
// reloads to show it (once: a page already showing that state does not). Without this file the
// page refreshes itself every few seconds.
//
// The members' page listens without the session (data-anonymous-events: the stream's own key,
// fetched with no cookies): an EventSource sends the cookie on every reconnection, which could
// fall next to an answer sent without a name. Its reload waits out private mode's quiet window.
"use strict";
const box = document.getElementById("live");

function onState(update, stop) {
  const text = box.querySelector("[data-live-text]");
  if (update.state !== "open") {
    stop();
    if (update.state !== box.dataset.state) reload();
    return;
  }
  text.textContent = update.count === null ? box.dataset.waiting : box.dataset.counted.replace("%(n)s", update.count);
}

let leaving = false;
async function reload() {
  if (leaving) return;
  if (box.dataset.anonymousEvents) await (await import("./quiet.js")).signedInTurn();
  if (!leaving) window.location.reload();
}
window.addEventListener("pagehide", () => { leaving = true; });

// Server-sent events read from a fetch, so the request carries no cookie and no Referer.
async function listen(url, handle) {
  let stopped = false;
  const stop = () => { stopped = true; };
  window.addEventListener("pagehide", stop);
  while (!stopped) {
    try {
      const response = await fetch(url, { credentials: "omit", referrerPolicy: "no-referrer", cache: "no-store" });
      if (!response.ok || !response.body) return; // closed or gone: the page's next load says so
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done || stopped) break;
        buffer += value.replaceAll("\r\n", "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = block.split("\n");
          const event = lines.find((line) => line.startsWith("event:"))?.slice(6).trim();
          const data = lines.filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
          if (event === "state" && data) handle(JSON.parse(data), stop);
        }
      }
      if (stopped) return;
    } catch {
      // the network: try again shortly
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

if (box?.dataset.anonymousEvents && window.fetch && window.TextDecoderStream) {
  listen(box.dataset.anonymousEvents, onState);
} else if (box && window.EventSource) {
  const events = new EventSource(box.dataset.events);
  events.addEventListener("state", (event) => onState(JSON.parse(event.data), () => events.close()));
  window.addEventListener("pagehide", () => events.close());
}
