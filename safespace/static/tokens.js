// Unspent answer tokens, kept in this browser until redeemed, so a member can fetch a token,
// close the tab and answer later (answering later also blurs timing for an operator).
// A token is {roundId, keyId, msg, sig}, each a base64url string; it names no one.

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
