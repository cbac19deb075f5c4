// Unspent answer tokens, kept in this browser until redeemed, so a member can fetch a token,
// close the tab and answer later (answering later also blurs timing for an operator).
// A token is {roundId, keyId, msg, sig}, each a base64url string; it names no one.

import { blind, bytesToB64url, b64urlToBytes, finalize, prepare } from "./blind.js";

const PREFIX = "safespace.token.";
const FIELDS = ["roundId", "keyId", "msg", "sig"];

function key(roundId) {
  if (typeof roundId !== "string" || !roundId) throw new TypeError("tokens: roundId must be a non-empty string");
  return PREFIX + roundId;
}

export function saveToken(roundId, token) {
  const stored = Object.fromEntries(FIELDS.map((f) => [f, token?.[f]]));
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

// Take a token while signed in: fetch the public key, blind a fresh random message, have the
// server sign it (it sees only the blinded message), unblind and check it, keep it here.
// Returns {roundId: slot, keyId, msg, sig, fingerprint}; throws an Error whose message can be shown.
export async function takeToken({ keyUrl, signUrl, slot, csrf }) {
  const answer = async (response, fallback) => {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // a body that is not JSON: keep the fallback message
    }
    if (!response.ok) throw new Error(body.detail || body.title || fallback);
    return body;
  };
  const key = await answer(await fetch(keyUrl, { credentials: "same-origin" }), "The key could not be fetched.");
  const msg = await prepare(crypto.getRandomValues(new Uint8Array(32)));
  const { blindedMsg, inv } = await blind(key.jwk, msg);
  const signed = await answer(
    await fetch(signUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrftoken": csrf },
      body: JSON.stringify({ key_id: key.key_id, blinded_msg: bytesToB64url(blindedMsg) }),
    }),
    "The token could not be signed.",
  );
  const sig = await finalize(key.jwk, msg, b64urlToBytes(signed.blind_sig), inv);
  const token = { roundId: slot, keyId: key.key_id, msg: bytesToB64url(msg), sig: bytesToB64url(sig) };
  saveToken(slot, token);
  return { ...token, fingerprint: key.fingerprint };
}
