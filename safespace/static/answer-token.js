// Private mode for pulse answers (RFC 9474 blind-signature tokens).
//
// Home page: for every open round, fetch a token now (signed in: the server learns only that you
// took one), finalize it here and keep it in this browser. Answer page: send the answers with the
// token, without cookies, so the server counts them without knowing whose they are.
// Without this file the signed-in form works as before, and the page says so.
import { dropToken, hasPending, loadToken, takeToken } from "./tokens.js";

function csrf() {
  return document.querySelector("input[name=_csrf_token]")?.value ?? "";
}

async function json(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}
// Take a token for one round and remember its key's fingerprint for the answer page.
export async function fetchToken(keyUrl, tokenUrl, roundId) {
  const token = await takeToken({ keyUrl, signUrl: tokenUrl, slot: roundId, csrf: csrf() });
  localStorage.setItem(`safespace.fingerprint.${roundId}`, token.fingerprint);
  return token;
}

function fingerprintOf(roundId) {
  try {
    return localStorage.getItem(`safespace.fingerprint.${roundId}`) || "";
  } catch {
    return "";
  }
}

function say(element, text) {
  if (element) {
    element.textContent = text;
    element.hidden = false;
  }
}

// WebCrypto exists only in secure contexts (HTTPS, or localhost): elsewhere the signed-in form
// stays in use and the page keeps saying so.
const PRIVATE_MODE = Boolean(window.isSecureContext && globalThis.crypto?.subtle);

// --- home page: tokens for every open round, fetched when the page opens ---------------------

for (const row of PRIVATE_MODE ? document.querySelectorAll("[data-token-round]") : []) {
  const roundId = row.dataset.tokenRound;
  const status = row.querySelector(".token-status");
  if (loadToken(roundId)) {
    // Taken earlier (the ledger says "answered"): the answers have not been sent yet.
    row.querySelector(".answer-link").hidden = false;
    const done = row.querySelector(".done");
    if (done) done.hidden = true;
    say(status, row.dataset.ready.replace("%(fingerprint)s", fingerprintOf(roundId)));
    continue;
  }
  // Answered, or a token taken in another browser, unless this browser's request never got its answer.
  if (row.dataset.answered === "true" && !hasPending(roundId)) continue;
  const pending = fetchToken(row.dataset.keyUrl, row.dataset.tokenUrl, roundId)
    .then((token) => {
      row.querySelector(".answer-link").hidden = false;
      const done = row.querySelector(".done");
      if (done) done.hidden = true;
      say(status, row.dataset.ready.replace("%(fingerprint)s", token.fingerprint ?? fingerprintOf(roundId)));
    })
    .catch((error) => say(status, error.message));
  // Leaving mid-fetch could leave the ledger saying "has a token" with no token kept here.
  const link = row.querySelector(".answer-link a");
  link?.addEventListener("click", async (event) => {
    event.preventDefault();
    await pending;
    window.location.assign(link.href);
  });
}

// --- answer page: send the answers with the token, no cookies --------------------------------

const form = PRIVATE_MODE ? document.querySelector("form[data-redeem]") : null;
if (form) {
  const roundId = form.dataset.round;
  const mode = document.getElementById("answer-mode");
  const blocked = document.getElementById("already-answered");
  let token = loadToken(roundId);
  if (!token && blocked && hasPending(roundId)) {
    // This browser asked for a token but left before the answer came: ask again for the same one.
    token = await fetchToken(form.dataset.keyUrl, form.dataset.tokenUrl, roundId).catch(() => null);
  }
  if (token && blocked) {
    // The ledger says "has a token": the token is here, so the answers can still be sent.
    blocked.hidden = true;
    document.getElementById("answer-area").hidden = false;
  }
  if (mode) mode.textContent = mode.dataset.private.replace("%(fingerprint)s", fingerprintOf(roundId) || "…");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const problems = document.getElementById("redeem-problems");
    button.disabled = true;
    try {
      if (!token) {
        token = await fetchToken(form.dataset.keyUrl, form.dataset.tokenUrl, roundId);
        if (mode) mode.textContent = mode.dataset.private.replace("%(fingerprint)s", fingerprintOf(roundId));
      }
      const answers = {};
      for (const [name, value] of new FormData(form)) {
        if (name !== "_csrf_token") answers[name] = String(value);
      }
      const response = await fetch(form.dataset.redeemUrl, {
        method: "POST",
        credentials: "omit", // no session cookie: nothing pairs these answers with you
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ round_id: roundId, key_id: token.keyId, msg: token.msg, sig: token.sig, answers }),
      });
      const result = await json(response);
      if (response.ok || response.status === 409) dropToken(roundId);
      if (response.ok) {
        form.hidden = true;
        say(document.getElementById("redeemed"), form.dataset.thanks);
        document.getElementById("redeemed")?.focus();
        return;
      }
      const details = result.errors ? Object.values(result.errors).join(" ") : "";
      say(problems, [result.detail || result.title, details].filter(Boolean).join(" "));
    } catch (error) {
      say(problems, error.message);
    } finally {
      button.disabled = false;
    }
  });
}
