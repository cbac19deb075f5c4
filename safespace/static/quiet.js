// Private mode's quiet window, and the outbox that keeps to it.
//
// Someone watching the server sees signed-in requests (a page, a token taken) and anonymous ones
// (answers, a story, a reply sent with a token and no cookies). Sent close together, the two
// pair up, whatever the token hides. So this browser never sends them within the window
// (SAFESPACE_PRIVATE_WINDOW_SECONDS, in the page's <meta name="safespace-private-window">) of
// each other:
// - every signed-in page of ours stamps its load; our signed-in fetches stamp themselves;
// - anonymous sends wait until the window has passed since the last signed-in request, in any
//   tab (the stamps are in localStorage), and say so on the page while they wait;
// - after an anonymous send, our signed-in fetches wait, and the links and forms of the page
//   hold the member for the rest of the window, saying why.
// What is waiting to be sent is kept in the outbox (localStorage), so closing the tab loses
// nothing: the next page of ours sends it, once it has been quiet for the window.

const WINDOW_MS = 1000 * Number(document.querySelector('meta[name="safespace-private-window"]')?.content || 30);
const SIGNED_IN = "safespace.quiet.signedIn";
const ANONYMOUS = "safespace.quiet.anonymous";
const OUTBOX = "safespace.outbox";
// The problem type of a refusal that a new token mends (privacy/token_keys.py FRESH_TOKEN).
const FRESH_TOKEN = "tag:safespace.invalid,2026:fresh-token";

function read(name) {
  try {
    return Number(localStorage.getItem(name)) || 0;
  } catch {
    return 0;
  }
}

function stamp(name) {
  try {
    localStorage.setItem(name, String(Math.max(Date.now(), read(name))));
  } catch {
    // No storage: this tab's own waits still hold (they read the same missing value as zero).
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One tab at a time checks and stamps, so two tabs cannot both decide it is quiet.
function exclusively(name, work) {
  return navigator.locks ? navigator.locks.request(name, work) : work();
}

// Wait until `allowedAt()` has passed (re-read after each wait: another tab may have moved it),
// then stamp `mine`; `onWait(seconds)` is told how long is left, once a second.
async function waitTurn(allowedAt, mine, onWait, jitter) {
  let extra = 0;
  for (;;) {
    const ready = await exclusively("safespace.quiet", async () => {
      if (Date.now() >= allowedAt() + extra) {
        stamp(mine);
        return true;
      }
      return false;
    });
    if (ready) return;
    // Had to wait: a random extra, so the send does not follow the other request by exactly the window.
    if (jitter && !extra) extra = Math.random() * WINDOW_MS * 0.5;
    const left = allowedAt() + extra - Date.now();
    onWait?.(Math.max(1, Math.ceil(left / 1000)));
    await sleep(Math.min(1000, Math.max(50, left)));
  }
}

const anonymousAllowedAt = () => read(SIGNED_IN) + WINDOW_MS;
const signedInAllowedAt = () => read(ANONYMOUS) + WINDOW_MS;

// A fetch with the session, for our scripts: waits out an anonymous send's window first.
export async function signedInFetch(url, options = {}, onWait = null) {
  await waitTurn(signedInAllowedAt, SIGNED_IN, onWait, false);
  try {
    return await fetch(url, { ...options, credentials: "same-origin" });
  } finally {
    stamp(SIGNED_IN);
  }
}

// Resolves once a signed-in request may go (the window after an anonymous send has passed), and
// stamps it: for a page that must reload itself (a check-in's reveal).
export function signedInTurn(onWait = null) {
  return waitTurn(signedInAllowedAt, SIGNED_IN, onWait, false);
}

// A fetch that carries nothing it need not: no cookie, no Referer, no header of ours. Public
// data only (key lists); it is not an anonymous send and does not move the window.
export function bareFetch(url) {
  return fetch(url, { credentials: "omit", referrerPolicy: "no-referrer", cache: "no-store" });
}

// An anonymous send: waits until the window has passed since the last signed-in request.
async function anonymousFetch(url, body, onWait) {
  await waitTurn(anonymousAllowedAt, ANONYMOUS, onWait, true);
  try {
    return await fetch(url, {
      method: "POST",
      credentials: "omit", // no session cookie: nothing pairs this with you
      referrerPolicy: "no-referrer", // nor the page it came from
      cache: "no-store",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  } finally {
    stamp(ANONYMOUS);
    holdNavigation();
  }
}

// A form sent anonymously whose answer the page shows at once (My story with its receipt code):
// the same wait and the same bare request as the outbox's sends, but nothing is kept in the
// outbox, since the code is a secret this browser should not store.
export async function anonymousForm(url, fields, onWait) {
  await waitTurn(anonymousAllowedAt, ANONYMOUS, onWait, true);
  try {
    return await fetch(url, {
      method: "POST",
      credentials: "omit",
      referrerPolicy: "no-referrer",
      cache: "no-store",
      body: new URLSearchParams(fields),
    });
  } finally {
    stamp(ANONYMOUS);
    holdNavigation();
  }
}

// --- the page's own way out waits too -----------------------------------------------------------

let holding = null;

function banner() {
  let box = document.getElementById("quiet-hold");
  if (!box) {
    box = document.createElement("p");
    box.id = "quiet-hold";
    box.className = "notice notice-info";
    box.setAttribute("role", "status");
    document.querySelector("main")?.prepend(box);
  }
  return box;
}

// For the rest of the window after an anonymous send, a click on one of our links or a form
// sent to us waits, and then goes: the next page is a signed-in request.
function holdNavigation() {
  if (holding) return;
  const template = document.querySelector('meta[name="safespace-private-window"]')?.dataset.hold || "%(seconds)s";
  const later = async (go) => {
    const box = banner();
    await waitTurn(signedInAllowedAt, SIGNED_IN, (seconds) => {
      box.textContent = template.replace("%(seconds)s", String(seconds));
    }, false);
    box.remove();
    go();
  };
  holding = (event) => {
    if (Date.now() >= signedInAllowedAt()) return;
    const link = event.type === "click" ? event.target.closest?.("a[href]") : null;
    const form = event.type === "submit" ? event.target : null;
    if (link && new URL(link.href, location.href).origin === location.origin && !link.target) {
      if (new URL(link.href).pathname === location.pathname && link.hash) return; // a jump within the page
      event.preventDefault();
      later(() => location.assign(link.href));
    } else if (form && !form.dataset.tokenKind && !form.dataset.redeem && form.dataset.anonymous === undefined && new URL(form.action, location.href).origin === location.origin) {
      event.preventDefault();
      later(() => HTMLFormElement.prototype.submit.call(form));
    }
  };
  document.addEventListener("click", holding, true);
  document.addEventListener("submit", holding, true);
}

// --- the outbox ------------------------------------------------------------------------------------

function loadOutbox() {
  try {
    const items = JSON.parse(localStorage.getItem(OUTBOX) ?? "[]");
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
}

function saveOutbox(items) {
  try {
    if (items.length) localStorage.setItem(OUTBOX, JSON.stringify(items));
    else localStorage.removeItem(OUTBOX);
  } catch {
    // Storage refused: the item is still sent from this page, only not kept if it is closed.
  }
}

function without(id) {
  saveOutbox(loadOutbox().filter((item) => item.id !== id));
}

// Pages say what to do with an outcome (a handler returns false for an item not of this page); an
// outcome nobody on this page handles is shown in a banner (an answer sent from the outbox on a
// later visit, say).
const handlers = new Map();
const waiting = new Map();

export function onOutcome(kind, handler) {
  handlers.set(kind, handler);
}

// While an item waits its turn: handler(seconds) for its kind.
export function onWaiting(kind, handler) {
  waiting.set(kind, handler);
}

// Queue one anonymous send: {kind, url, body, slot, take: {keyUrl, signUrl, publishedUrl}, sent:
// {ok, failed}}; the token source for its kind (useTokens) takes a token when none is kept.
// Returns after it is sent (or kept for later).
export function send(item) {
  const entry = { id: crypto.randomUUID(), tries: 0, ...item };
  saveOutbox([...loadOutbox(), entry]);
  return flush();
}

// Slots whose tokens queued items will use: another send picks another slot.
export function queuedSlots() {
  return new Set(loadOutbox().map((item) => item.slot));
}

const tokenSources = new Map();

// kind -> {load(slot), take(item, onWait), drop(slot)}: where the outbox gets its tokens.
export function useTokens(kind, source) {
  tokenSources.set(kind, source);
}

let flushing = null;

export function flush() {
  flushing ??= exclusively("safespace.outbox", drain).finally(() => {
    flushing = null;
  });
  return flushing;
}

async function drain() {
  for (const item of loadOutbox()) {
    const tokens = tokenSources.get(item.kind);
    if (!tokens) continue; // this page cannot take that kind of token: a page that can will send it
    const wait = (seconds) => waiting.get(item.kind)?.(seconds, item);
    let outcome;
    try {
      // No token here: take one now (signed in) and send after the window, never at once.
      const token = tokens.load(item.slot) || (await tokens.take(item, wait));
      const response = await anonymousFetch(item.url, { ...item.body, key_id: token.keyId, msg: token.msg, sig: token.sig }, wait);
      let result = {};
      try {
        result = await response.json();
      } catch {
        // not JSON: the status says enough
      }
      if (result.type === FRESH_TOKEN && item.tries < 1) {
        // Its key is gone: one more try with a new token, taken after the window. A spent token
        // (409) is final: what it carried was counted, most likely by this outbox's own earlier
        // send whose answer was lost; a new token would count it twice.
        tokens.drop(item.slot);
        saveOutbox(loadOutbox().map((kept) => (kept.id === item.id ? { ...kept, tries: kept.tries + 1 } : kept)));
        return drain();
      }
      if (response.status === 201 || response.status === 409) tokens.drop(item.slot); // spent either way
      without(item.id);
      outcome = { status: response.status, result };
    } catch (error) {
      if (error.status >= 400 && error.status < 500 && error.status !== 429) {
        // Refused for good while taking a token (answered with the form, both tokens taken
        // elsewhere, the round closed): kept, it would be asked again on every page.
        without(item.id);
        outcome = { status: error.status, result: { detail: error.message } };
      } else {
        // The network, the server, or a key that failed its checks: the item stays for the next
        // try; the page says why.
        outcome = { status: 0, result: { detail: error.message }, kept: true };
      }
    }
    const handler = handlers.get(item.kind);
    if ((!handler || handler(outcome, item) === false) && outcome.status) showElsewhere(outcome, item);
    if (outcome.kept) return;
  }
}

function showElsewhere(outcome, item) {
  const box = banner();
  box.id = "";
  box.className = `notice ${outcome.status < 300 ? "notice-success" : "notice-error"}`;
  const said = item.sent?.[outcome.status < 300 ? "ok" : "failed"] || "";
  box.textContent = [said, outcome.result.receipt, outcome.status >= 300 ? outcome.result.detail : ""].filter(Boolean).join(" ");
}

// This page was loaded signed in: its request, and its style sheets and scripts, carried the session.
stamp(SIGNED_IN);
addEventListener("load", () => stamp(SIGNED_IN));
