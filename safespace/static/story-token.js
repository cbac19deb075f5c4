// Stories and replies in private mode (RFC 9474 blind-signature tokens).
//
// When the share page or the wall opens (signed in anyway), the browser takes the tokens it will
// need: one story token, or two reply tokens so that two replies in a row need no signed-in
// request between them. The weekly quota counts then. The story or reply goes through the outbox
// (quiet.js): with the token, no cookies, and never within the quiet window of a signed-in
// request. Without this file (or WebCrypto), the signed-in forms work as before.
import { flush, onOutcome, onWaiting, queuedSlots, send, useTokens } from "./quiet.js";
import { dropToken, loadToken, takeToken } from "./tokens.js";

const PRIVATE_MODE = Boolean(window.isSecureContext && globalThis.crypto?.subtle);
const REPLY_STOCK = 2;

const csrf = () => document.querySelector("input[name=_csrf_token]")?.value ?? "";

function show(element, text) {
  if (element) {
    element.textContent = text;
    element.hidden = false;
  }
}

// The slots a form's kind keeps tokens in: "story:<community>", or "reply:<community>.0" and ".1".
function slots(form) {
  const { tokenKind: kind, tokenSlot: slot } = form.dataset;
  return kind === "reply" ? Array.from({ length: REPLY_STOCK }, (_v, i) => `${slot}.${i}`) : [slot];
}

function sources(form) {
  const { tokenBase: base, tokenKind: kind, publishedUrl } = form.dataset;
  return { keyUrl: `${base}/key?kind=${kind}`, signUrl: base, publishedUrl };
}

function showFingerprint(token) {
  for (const print of document.querySelectorAll("[data-token-fingerprint]")) {
    if (token?.fingerprint) show(print, print.dataset.template.replace("%(fingerprint)s", token.fingerprint));
  }
}

for (const kind of ["story", "reply"]) {
  useTokens(kind, {
    load: loadToken,
    take: (item, onWait) => takeToken({ ...item.take, slot: item.slot, csrf: csrf(), onWait }),
    drop: dropToken,
  });
}

// The wall's reply forms share their settings, given once on their list (data-token-shared): each
// form gets them here, with the notices it shows (nothing to show without this file).
function notice(form, name, kind, role) {
  if (form.querySelector(`.${name}`)) return;
  const box = document.createElement("p");
  box.className = `${name} notice notice-${kind}`;
  box.setAttribute("role", role);
  if (role === "status" && name === "token-status") box.setAttribute("aria-live", "polite");
  box.hidden = true;
  form.append(box);
}
for (const list of PRIVATE_MODE ? document.querySelectorAll("[data-token-shared]") : []) {
  for (const form of list.querySelectorAll("form[data-token-kind]")) {
    for (const [name, value] of Object.entries(list.dataset)) {
      if (name !== "tokenShared" && !(name in form.dataset)) form.dataset[name] = value;
    }
    notice(form, "token-status", "info", "status");
    notice(form, "token-sent", "success", "status");
    notice(form, "token-problems", "error", "alert");
  }
}

const forms = PRIVATE_MODE ? [...document.querySelectorAll("form[data-token-kind]")] : [];

// Taken now, used later: one token per slot, however many reply forms share it.
const taken = new Set();
for (const form of forms) {
  for (const slot of slots(form)) {
    if (taken.has(slot)) continue;
    taken.add(slot);
    const kept = loadToken(slot);
    if (kept) showFingerprint(kept);
    else takeToken({ ...sources(form), slot, csrf: csrf() }).then(showFingerprint).catch(() => {});
  }
}

const formOf = (item) =>
  forms.find((form) => form.dataset.tokenKind === item.kind && (item.kind === "story" || form.dataset.story === item.body.story_id));

for (const kind of ["story", "reply"]) {
  onWaiting(kind, (seconds, item) => {
    const form = formOf(item);
    if (form) show(form.querySelector(".token-status"), form.dataset.waiting.replace("%(seconds)s", String(seconds)));
  });
  onOutcome(kind, ({ status, result, kept }, item) => {
    const form = formOf(item);
    if (!form) return false;
    const button = form.querySelector("button[type=submit]");
    const problems = form.querySelector(".token-problems") || document.getElementById("token-problems");
    button.disabled = false;
    const waiting = form.querySelector(".token-status");
    if (waiting) waiting.hidden = true;
    if (status === 200 && result.findings) {
      // Nothing stored: the text may point to someone. Shown here; the next Share sends it as it is.
      const box = document.getElementById("live-findings");
      box.replaceChildren();
      const heading = document.createElement("p");
      heading.textContent = box.dataset.heading;
      const list = document.createElement("ul");
      for (const finding of result.findings) {
        const entry = document.createElement("li");
        entry.textContent = finding.text ? `${finding.label}: ${finding.text}` : finding.label;
        list.append(entry);
      }
      box.append(heading, list);
      box.hidden = false;
      form.dataset.confirmed = "true";
      button.textContent = form.dataset.confirmLabel;
      return true;
    }
    if (status === 201 && kind === "story") {
      form.hidden = true;
      document.getElementById("live-findings").hidden = true;
      document.getElementById("receipt-code").textContent = result.receipt;
      const receipt = document.getElementById("token-receipt");
      receipt.hidden = false;
      receipt.focus();
      return true;
    }
    if (status === 201) {
      form.reset();
      show(form.querySelector(".token-sent"), form.dataset.thanks);
      return true;
    }
    const said = result.detail || result.title || form.dataset.failed;
    show(problems, kept ? form.dataset.kept.replace("%(reason)s", said) : said);
    return true;
  });
}

for (const form of forms) {
  const kind = form.dataset.tokenKind;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    for (const box of form.querySelectorAll(".token-problems, .token-sent")) box.hidden = true;
    document.getElementById("token-problems")?.setAttribute("hidden", "");
    const fields = new FormData(form);
    const body =
      kind === "story"
        ? {
            title: fields.get("title") ?? "",
            happened: fields.get("happened") ?? "",
            learned: fields.get("learned") ?? "",
            differently: fields.get("differently") ?? "",
            tags: fields.getAll("tags").map(String),
            wants_advice: fields.has("wants_advice"),
            confirmed: form.dataset.confirmed === "true",
          }
        : { story_id: form.dataset.story, reply: fields.get("reply") ?? "" };
    // A slot that holds a token no queued item will use, else a free one (a token is taken for
    // it, after the window).
    const busy = queuedSlots();
    const free = slots(form).filter((s) => !busy.has(s));
    const slot = free.find((s) => loadToken(s)) ?? free[0] ?? slots(form)[0];
    await send({ kind, url: form.dataset.redeemUrl, body, slot, take: sources(form), sent: { ok: form.dataset.thanks, failed: form.dataset.failed } });
  });
}

// A story or reply kept from an earlier visit goes now, once it has been quiet for the window.
if (PRIVATE_MODE) flush();
