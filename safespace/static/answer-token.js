// Private mode for pulse answers (RFC 9474 blind-signature tokens).
//
// Any signed-in page of the community: for every open round this browser has no token for (and
// the member has not taken one elsewhere), take a token now, while signed in anyway, and keep
// it here. Answer page: the answers go into the outbox (quiet.js) and are sent with the token and
// no cookies, never within the quiet window of a signed-in request. With no token in this browser
// (the first one is in another browser), one more is taken at Send and the answers go after the
// window, as the page says beforehand. Without this file the signed-in form works as before.
import { flush, onOutcome, onWaiting, send, useTokens } from "./quiet.js";
import { dropToken, hasPending, loadToken, takeToken } from "./tokens.js";

// WebCrypto exists only in secure contexts (HTTPS, or localhost): elsewhere the signed-in form
// stays in use and the page keeps saying so.
const PRIVATE_MODE = Boolean(window.isSecureContext && globalThis.crypto?.subtle);

const csrf = () => document.querySelector("input[name=_csrf_token]")?.value ?? "";

function sources(element) {
  const { keyUrl, tokenUrl: signUrl, publishedUrl } = element.dataset;
  return { keyUrl, signUrl, publishedUrl };
}

function say(element, text) {
  if (element) {
    element.textContent = text;
    element.hidden = false;
  }
}

useTokens("answers", {
  load: loadToken,
  take: (item, onWait) => takeToken({ ...item.take, slot: item.slot, csrf: csrf(), onWait }),
  drop: dropToken,
});

// --- every page with open rounds: take their tokens now ---------------------------------------

for (const row of PRIVATE_MODE ? document.querySelectorAll("[data-token-round]") : []) {
  const roundId = row.dataset.tokenRound;
  const status = row.querySelector(".token-status");
  const ready = (token) => {
    row.querySelector(".answer-link")?.removeAttribute("hidden");
    const done = row.querySelector(".done");
    if (done) done.hidden = true;
    say(status, row.dataset.ready?.replace("%(fingerprint)s", token.fingerprint ?? "…"));
  };
  const kept = loadToken(roundId);
  if (kept) {
    ready(kept);
  } else if (row.dataset.state === "open" || hasPending(roundId)) {
    // Not yet taken anywhere (or this browser's request never got its answer): take it now.
    takeToken({ ...sources(row), slot: roundId, csrf: csrf() })
      .then(ready)
      .catch((error) => say(status, error.message));
  }
}

// --- answer page: the answers go with the token, through the outbox ----------------------------

const form = PRIVATE_MODE ? document.querySelector("form[data-redeem]") : null;
if (form) {
  const roundId = form.dataset.round;
  const mode = document.getElementById("answer-mode");
  const status = document.getElementById("redeem-status");
  const problems = document.getElementById("redeem-problems");
  const blocked = document.getElementById("already-answered");
  const button = form.querySelector("button[type=submit]");
  const showMode = (token) => {
    if (mode) mode.textContent = mode.dataset.private;
    const lead = document.getElementById("answer-lead");
    if (lead) lead.textContent = lead.dataset.private;
    const print = document.getElementById("key-fingerprint");
    if (print && token) say(print, print.dataset.template.replace("%(fingerprint)s", token.fingerprint ?? "…"));
  };
  let token = loadToken(roundId);
  if (token) document.getElementById("token-elsewhere")?.setAttribute("hidden", ""); // it is here
  if (token && blocked) {
    // The ledger says both tokens are taken, and one of them is here: the answers can still go.
    blocked.hidden = true;
    document.getElementById("answer-area").hidden = false;
  }
  showMode(token);
  if (!token && (form.dataset.state === "open" || hasPending(roundId))) {
    // Arrived straight from the round's mail or a sign-in link: take the token now, ahead of Send.
    takeToken({ ...sources(form), slot: roundId, csrf: csrf() })
      .then(showMode)
      .catch((error) => say(problems, error.message));
  }
  onWaiting("answers", (seconds, item) => {
    if (item.body.round_id === roundId) say(status, form.dataset.waiting.replace("%(seconds)s", String(seconds)));
  });
  onOutcome("answers", ({ status: code, result, kept }, item) => {
    if (item.body.round_id !== roundId) return false;
    button.disabled = false;
    status.hidden = true;
    if (code === 201) {
      form.hidden = true;
      say(document.getElementById("redeemed"), form.dataset.thanks);
      document.getElementById("redeemed")?.focus();
      return true;
    }
    const details = result.errors ? Object.values(result.errors).join(" ") : "";
    const said = [result.detail || result.title, details].filter(Boolean).join(" ");
    say(problems, kept ? form.dataset.kept.replace("%(reason)s", said) : said);
    return true;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    problems.hidden = true;
    const answers = {};
    for (const [name, value] of new FormData(form)) {
      if (name !== "_csrf_token") answers[name] = String(value);
    }
    say(status, form.dataset.sending);
    await send({
      kind: "answers",
      url: form.dataset.redeemUrl,
      body: { round_id: roundId, answers },
      slot: roundId,
      take: sources(form),
      sent: { ok: form.dataset.thanks, failed: form.dataset.failed },
    });
  });
}

// Answers kept from an earlier visit go now, once it has been quiet for the window.
if (PRIVATE_MODE) flush();
