// Share a failure: show identifying details while the member types. The server does the check
// (it knows the roster; the browser never gets member names). Without this file, the same
// warning appears after pressing "Share".
"use strict";
// In private mode (story-token.js) the check runs on the anonymous send instead: a signed-in
// check while typing would put a signed-in request right before the anonymous story.
const PRIVATE_MODE = Boolean(window.isSecureContext && globalThis.crypto?.subtle);
document.querySelectorAll(PRIVATE_MODE ? "form[data-check]:not([data-token-kind])" : "form[data-check]").forEach((form) => {
  const box = document.getElementById("live-findings");
  const token = form.querySelector("input[name=_csrf_token]").value;
  let timer = null;
  const check = async () => {
    const body = new URLSearchParams(new FormData(form));
    body.set("_csrf_token", token);
    const response = await fetch(form.dataset.check, { method: "POST", body, credentials: "same-origin" });
    if (!response.ok) return;
    const { findings } = await response.json();
    box.replaceChildren();
    box.hidden = findings.length === 0;
    if (!findings.length) return;
    const heading = document.createElement("p");
    heading.textContent = box.dataset.heading;
    const list = document.createElement("ul");
    for (const finding of findings) {
      const item = document.createElement("li");
      item.textContent = `${finding.label}: ${finding.text}`;
      list.append(item);
    }
    box.append(heading, list);
  };
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  });
});
