// Unspent answer tokens, kept in this browser until redeemed, so a member can fetch a token,
// close the tab and answer later (answering later also blurs timing for an operator).
// A token is {roundId, keyId, msg, sig}, each a base64url string; it names no one.

import { blind, bytesToB64url, b64urlToBytes, finalize, fingerprint, prepare } from "./blind.js";
import { bareFetch, signedInFetch } from "./quiet.js";

const PREFIX = "safespace.token.";
const PENDING = "safespace.pending.";
const FIELDS = ["roundId", "keyId", "msg", "sig"];
const KEPT = [...FIELDS, "fingerprint"]; // the fingerprint is shown, not sent

function key(roundId) {
  if (typeof roundId !== "string" || !roundId) throw new TypeError("tokens: roundId must be a non-empty string");
  return PREFIX + roundId;
}

export function saveToken(roundId, token) {
  const stored = Object.fromEntries(KEPT.map((f) => [f, token?.[f]]));
  if (!FIELDS.every((f) => typeof stored[f] === "string" && stored[f])) {
    throw new TypeError("tokens: a token needs roundId, keyId, msg and sig as base64url strings");
  }
  if (stored.roundId !== roundId) throw new Error("tokens: the token belongs to another round");
  try {
    localStorage.setItem(key(roundId), JSON.stringify(stored));
  } catch (error) {
    // Private browsing or a full quota: the member can still answer in this tab.
    throw new Error("tokens: this browser would not keep the token; answer before closing the tab", { cause: error });
  }
}

// The token for the round, or null when there is none (or it is unreadable).
export function loadToken(roundId) {
  let text;
  try {
    text = localStorage.getItem(key(roundId));
  } catch {
    return null;
  }
  if (text === null) return null;
  try {
    const token = JSON.parse(text);
    return FIELDS.every((f) => typeof token?.[f] === "string") && token.roundId === roundId ? token : null;
  } catch {
    return null;
  }
}

export function dropToken(roundId) {
  try {
    localStorage.removeItem(key(roundId));
  } catch {
    // Nothing stored can be left behind if storage is unavailable.
  }
}

// Take a token while signed in: fetch the public key, check it is the one published to everyone
// (fetched without cookies), blind a fresh random message, have the server sign it (it sees only
// the blinded message), unblind and check it, keep it here.
// The blinded request is kept until the token is: if the page is left before the server's answer
// arrives, the next call sends the same blinded message again and gets the same signature (the
// server allows that repeat; a new message would be another token).
// Signed-in requests go through quiet.js: never within the window after an anonymous send.
// One call per slot at a time in this tab; returns {roundId: slot, keyId, msg, sig, fingerprint}
// and throws an Error whose message can be shown.
const taking = new Map();

export function takeToken(options) {
  const { slot } = options;
  if (!taking.has(slot)) {
    // One tab at a time per slot: two tabs taking at once would make two tokens (a re-issue).
    const once = () => loadToken(slot) ?? take(options);
    const run = navigator.locks ? navigator.locks.request(`safespace.take.${slot}`, once) : once();
    taking.set(slot, run.finally(() => taking.delete(slot)));
  }
  return taking.get(slot);
}

async function answer(response, fallback) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // a body that is not JSON: keep the fallback message
  }
  if (!response.ok) {
    // The server's refusal (status kept): the outbox drops an item the server will never take.
    throw Object.assign(new Error(body.detail || body.title || fallback), { status: response.status });
  }
  return body;
}

// The key is in the list published to everyone, with the same modulus and exponent, and its
// fingerprint (computed here) is the one the server names. A key made for one member alone, to
// recognise their token later, fails here.
async function checkPublished(key, publishedUrl, messages) {
  const computed = await fingerprint(key.jwk); // refuses short keys and odd exponents
  const published = await answer(await bareFetch(publishedUrl), messages.unpublished);
  const same = Array.isArray(published) && published.some((k) => k.key_id === key.key_id && k.jwk?.n === key.jwk.n && k.jwk?.e === key.jwk.e);
  if (!same || computed !== key.fingerprint) throw new Error(messages.unpublished);
  return computed;
}

async function take({ keyUrl, signUrl, publishedUrl, slot, csrf, messages = {}, onWait = null }) {
  messages = { unpublished: "This key is not the one published for everyone; nothing was sent. Reload the page, and tell your facilitator if it happens again.", ...messages };
  let request = loadPending(slot);
  if (!request) {
    const key = await answer(await signedInFetch(keyUrl, {}, onWait), "The key could not be fetched.");
    const checked = await checkPublished(key, publishedUrl, messages);
    const msg = await prepare(crypto.getRandomValues(new Uint8Array(32)));
    const { blindedMsg, inv } = await blind(key.jwk, msg);
    request = { key: { ...key, fingerprint: checked }, msg: bytesToB64url(msg), inv: bytesToB64url(inv), blinded: bytesToB64url(blindedMsg) };
    savePending(slot, request);
  }
  const { key } = request;
  const signed = await answer(
    await signedInFetch(
      signUrl,
      {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrftoken": csrf },
        body: JSON.stringify({ key_id: key.key_id, blinded_msg: request.blinded }),
      },
      onWait,
    ),
    "The token could not be signed.",
  );
  const msg = b64urlToBytes(request.msg);
  const sig = await finalize(key.jwk, msg, b64urlToBytes(signed.blind_sig), b64urlToBytes(request.inv));
  const token = { roundId: slot, keyId: key.key_id, msg: request.msg, sig: bytesToB64url(sig), fingerprint: key.fingerprint };
  saveToken(slot, token);
  dropPending(slot);
  return token;
}

// A token request sent but not yet answered (see takeToken).
export function hasPending(slot) {
  return loadPending(slot) !== null;
}

function loadPending(slot) {
  try {
    const request = JSON.parse(localStorage.getItem(PENDING + slot) ?? "null");
    return request?.key?.jwk && request.blinded ? request : null;
  } catch {
    return null;
  }
}

function savePending(slot, request) {
  try {
    localStorage.setItem(PENDING + slot, JSON.stringify(request));
  } catch {
    // Storage refused: the request still goes out; only its repeat after leaving is lost.
  }
}

function dropPending(slot) {
  try {
    localStorage.removeItem(PENDING + slot);
  } catch {
    // nothing kept, nothing to drop
  }
}
