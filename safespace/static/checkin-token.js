// A check-in in private mode (RFC 9474 blind-signature tokens), on the members' page.
//
// When the page opens (signed in anyway), this browser takes the check-in's token, ahead of any
// answer. The answer goes through the outbox (quiet.js): with the token, no cookies, and never
// within the quiet window of a signed-in request, which the page says while it waits. The
// server answers with a receipt bound to the token; this browser keeps both, so the answer can
// be changed (again without a session) until the reveal. Without this file (or WebCrypto), the
// signed-in form works as before.
import { flush, onOutcome, onWaiting, send, useTokens } from "./quiet.js";
import { dropToken, loadToken, takeToken } from "./tokens.js";

const PRIVATE_MODE = Boolean(window.isSecureContext && globalThis.crypto?.subtle);
const form = PRIVATE_MODE ? document.querySelector("form[data-checkin-private]") : null;

const csrf = () => document.querySelector("input[name=_csrf_token]")?.value ?? "";

function say(element, text) {
  if (element) {
    element.textContent = text;
    element.hidden = false;
  }
}

// What this browser keeps once its answer was counted: the token and the latest receipt.
const ANSWERED = "safespace.checkin.";
const CHANGE = "checkin-answered:"; // the outbox slot of a change: its "token" is the kept one

function loadAnswered(code) {
  try {
    const kept = JSON.parse(localStorage.getItem(ANSWERED + code) ?? "null");
    return kept?.token?.sig && kept.receipt ? kept : null;
  } catch {
    return null;
  }
}

function saveAnswered(code, token, receipt) {
  try {
    localStorage.setItem(ANSWERED + code, JSON.stringify({ token, receipt }));
  } catch {
    // Storage refused: the answer is counted; only changing it later from here is lost.
  }
}

// Tokens spent by the last send, kept in memory until its outcome names the receipt.
const spent = new Map();

useTokens("checkin", {
  load: (slot) => (slot.startsWith(CHANGE) ? loadAnswered(slot.slice(CHANGE.length))?.token ?? null : loadToken(slot)),
  take: (item, onWait) => takeToken({ ...item.take, slot: item.slot, csrf: csrf(), onWait }),
  drop: (slot) => {
    if (slot.startsWith(CHANGE)) return; // the kept token stays: it changes the answer again
    const token = loadToken(slot);
    if (token) spent.set(slot, token);
    dropToken(slot);
  },
});

if (form) {
  const { code } = form.dataset;
  const slot = `checkin:${code}`;
  const sources = { keyUrl: form.dataset.keyUrl, signUrl: form.dataset.tokenUrl, publishedUrl: form.dataset.publishedUrl };
  const status = document.getElementById("redeem-status");
  const problems = document.getElementById("redeem-problems");
  const button = form.querySelector("button[type=submit]");
  const showMode = (token) => {
    const mode = document.getElementById("answer-mode");
    if (mode) mode.textContent = mode.dataset.private;
    const print = document.getElementById("key-fingerprint");
    if (print && token?.fingerprint) say(print, print.dataset.template.replace("%(fingerprint)s", token.fingerprint));
  };
  const answeredHere = () => {
    document.getElementById("token-elsewhere")?.setAttribute("hidden", "");
    say(document.getElementById("counted-here"), document.getElementById("counted-here").textContent);
    document.getElementById("answer-heading").textContent = form.dataset.changeHeading;
    button.textContent = form.dataset.changeLabel;
  };

  if (form.dataset.signedInAnswer) {
    // Answered with the signed-in form: its receipt cookie changes it, so the form goes as it is.
  } else if (loadAnswered(code)) {
    answeredHere();
    showMode(loadAnswered(code).token);
  } else if (loadToken(slot)) {
    document.getElementById("token-elsewhere")?.setAttribute("hidden", "");
    showMode(loadToken(slot));
  } else {
    // Taken now, while the page is signed in anyway; the answer goes later, without the session.
    takeToken({ ...sources, slot, csrf: csrf() })
      .then(showMode) // "token-elsewhere", if shown, stays: an answer may already be counted from there
      .catch((error) => {
        say(problems, error.message);
        if (error.status === 409) button.disabled = true; // both tokens elsewhere, or answered signed in
      });
  }

  if (!form.dataset.signedInAnswer) {
    onWaiting("checkin", (seconds, item) => {
      if (item.body.code === code) say(status, form.dataset.waiting.replace("%(seconds)s", String(seconds)));
    });
    onOutcome("checkin", ({ status: answered, result, kept }, item) => {
      if (item.body.code !== code) return false;
      button.disabled = false;
      status.hidden = true;
      if (answered === 201) {
        const token = item.slot.startsWith(CHANGE) ? loadAnswered(code)?.token : spent.get(item.slot);
        spent.delete(item.slot);
        if (token) saveAnswered(code, token, result.receipt);
        answeredHere();
        document.getElementById("counted-here").focus();
        return true;
      }
      const details = result.errors ? Object.values(result.errors).join(" ") : "";
      const said = [result.detail || result.title, details].filter((text, i, all) => text && all.indexOf(text) === i).join(" ");
      say(problems, kept ? form.dataset.kept.replace("%(reason)s", said) : said);
      return true;
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      problems.hidden = true;
      const fields = new FormData(form);
      // Each statement left unanswered says so, as the form sent signed in would; nothing goes.
      let missing = null;
      for (const set of form.querySelectorAll("fieldset.likert")) {
        set.querySelector("p.error[data-missing]")?.remove();
        const unanswered = !set.querySelector("input:checked");
        set.classList.toggle("has-error", unanswered);
        if (!unanswered) {
          set.removeAttribute("aria-invalid");
          set.removeAttribute("aria-describedby");
          continue;
        }
        const error = document.createElement("p");
        error.className = "error";
        error.id = `e-${set.id}`;
        error.dataset.missing = "";
        error.textContent = form.dataset.missing;
        set.querySelector("legend").after(error);
        set.setAttribute("aria-invalid", "true");
        set.setAttribute("aria-describedby", error.id);
        missing ??= set;
      }
      if (missing) {
        missing.querySelector("input")?.focus();
        return;
      }
      const answers = {};
      for (const [name, value] of fields) {
        if (name.startsWith("a.")) answers[name] = String(value);
      }
      const previous = loadAnswered(code);
      button.disabled = true;
      say(status, form.dataset.sending);
      await send({
        kind: "checkin",
        url: form.dataset.redeemUrl,
        body: { code, answers, comment: String(fields.get("comment") ?? ""), ...(previous ? { receipt: previous.receipt } : {}) },
        slot: previous ? CHANGE + code : slot,
        take: sources,
        sent: { ok: document.getElementById("counted-here").textContent, failed: form.dataset.failed },
      });
    });
  }
}

// An answer kept from an earlier visit goes now, once it has been quiet for the window.
if (form) flush();
