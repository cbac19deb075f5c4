// My story with the receipt code, sent with no cookie (stories/controllers.py ReceiptController).
//
// The page was opened signed in; the code is the author's only link to the story. Sent as a
// plain form, it would arrive with the session cookie, and close in time to the page load. So
// each form here is sent by quiet.js: after the quiet window, with `credentials: "omit"` and no
// Referer. The answer is a whole page; its main part replaces this one, and its forms are sent
// the same way. The code lives only in the page, never in this browser's storage.

import { anonymousForm } from "./quiet.js";

const say = (text) => {
  const status = document.getElementById("mine-status");
  if (status) status.textContent = text;
};

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-anonymous]");
  if (!form) return;
  event.preventDefault();
  const fields = new FormData(form, event.submitter);
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  try {
    // The attribute, not form.action: a button named "action" (withdraw, edit) shadows that property.
    const response = await anonymousForm(form.getAttribute("action"), fields, (seconds) =>
      say(form.dataset.waiting.replace("%(seconds)s", String(seconds))),
    );
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const main = page.querySelector("main");
    if (!main) throw new Error(String(response.status));
    document.querySelector("main").replaceWith(main);
    document.title = page.title;
    document.getElementById("mine-heading")?.focus();
  } catch {
    say(form.dataset.failed);
    for (const button of form.querySelectorAll("button")) button.disabled = false;
  }
});
