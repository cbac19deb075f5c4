// RFC 9474 RSA blind signatures, the member's half: Prepare, Blind, Finalize for
// RSABSSA-SHA384-PSS-Randomized. The server signs a blinded message it cannot recognise later,
// so the token the browser redeems cannot be paired with the member who fetched it.
// Exactly RFC 9474 §4.1–4.3 over RFC 8017 (EMSA-PSS, MGF1, I2OSP/OS2IP, RSAVP1); nothing more.
// Loaded as an ES module from our own static files; no dependency, no build step.

const HASH = "SHA-384";
const H_LEN = 48; // SHA-384 output length in bytes
const SALT_LEN = 48; // the product's sLen: RSABSSA-SHA384-PSS-*
const PREFIX_LEN = 32; // RFC 9474 §4.1: random message prefix of the Randomized variants
const MIN_BITS = 2048; // the smallest key the server makes (privacy/blind.py MIN_KEY_BITS)
const PUBLIC_EXPONENT = 65537n;

// --- encodings ---------------------------------------------------------------------------------

export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError("hexToBytes: expected a string of hex digit pairs");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function b64urlToBytes(s) {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) {
    throw new TypeError("b64urlToBytes: expected unpadded base64url text");
  }
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - (s.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export function bytesToB64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// --- RFC 8017 primitives -----------------------------------------------------------------------

// OS2IP: big-endian octets to a non-negative integer.
function os2ip(bytes) {
  return bytes.length ? BigInt("0x" + bytesToHex(bytes)) : 0n;
}

// I2OSP: a non-negative integer to exactly len big-endian octets.
function i2osp(x, len) {
  if (x < 0n || x >= 1n << BigInt(8 * len)) throw new RangeError("I2OSP: integer too large");
  return hexToBytes(x.toString(16).padStart(2 * len, "0"));
}

function bitLength(x) {
  return x === 0n ? 0 : x.toString(2).length;
}

// Left-to-right square-and-multiply. The exponent is always the public e; this runs in the
// member's browser, where its timing is not visible to the server.
function modPow(base, exp, mod) {
  let result = 1n;
  base %= mod;
  for (const bit of exp.toString(2)) {
    result = (result * result) % mod;
    if (bit === "1") result = (result * base) % mod;
  }
  return result;
}

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

// Extended Euclid; throws when a has no inverse mod n.
function modInverse(a, n) {
  let [oldR, r] = [((a % n) + n) % n, n];
  let [oldS, s] = [1n, 0n];
  while (r) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  if (oldR !== 1n) throw new Error("blind: value is not invertible modulo n");
  return ((oldS % n) + n) % n;
}

// RSAVP1 (RFC 8017 §5.2.2): s^e mod n, for s in [0, n).
function rsavp1(n, e, s) {
  if (s < 0n || s >= n) throw new RangeError("RSAVP1: representative out of range");
  return modPow(s, e, n);
}

function subtle() {
  // WebCrypto exists only in secure contexts; the page falls back to the signed-in path.
  if (!globalThis.crypto?.subtle) {
    throw new Error("blind: WebCrypto is unavailable here; open Safespace over HTTPS to answer unlinkably");
  }
  return crypto.subtle;
}

async function sha384(...parts) {
  const total = parts.reduce((sum, p) => sum + p.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    joined.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await subtle().digest(HASH, joined));
}

// MGF1 with SHA-384 (RFC 8017 §B.2.1).
async function mgf1(seed, maskLen) {
  const mask = new Uint8Array(Math.ceil(maskLen / H_LEN) * H_LEN);
  for (let counter = 0; counter * H_LEN < maskLen; counter++) {
    mask.set(await sha384(seed, i2osp(BigInt(counter), 4)), counter * H_LEN);
  }
  return mask.slice(0, maskLen);
}

// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with SHA-384, MGF1-SHA-384 and the given salt.
async function emsaPssEncode(msg, emBits, salt) {
  const emLen = Math.ceil(emBits / 8);
  const mHash = await sha384(msg);
  if (emLen < H_LEN + salt.length + 2) throw new Error("blind: encoding error (modulus too small)");
  const h = await sha384(new Uint8Array(8), mHash, salt);
  const db = new Uint8Array(emLen - H_LEN - 1); // PS (zeros) || 0x01 || salt
  db[db.length - salt.length - 1] = 0x01;
  db.set(salt, db.length - salt.length);
  const dbMask = await mgf1(h, db.length);
  for (let i = 0; i < db.length; i++) db[i] ^= dbMask[i];
  db[0] &= 0xff >> (8 * emLen - emBits);
  const em = new Uint8Array(emLen);
  em.set(db, 0);
  em.set(h, db.length);
  em[emLen - 1] = 0xbc;
  return em;
}

// --- the public key ----------------------------------------------------------------------------

function publicKey(jwk) {
  if (!jwk || jwk.kty !== "RSA" || typeof jwk.n !== "string" || typeof jwk.e !== "string") {
    throw new TypeError("blind: expected an RSA public key as a JWK {kty: 'RSA', n, e}");
  }
  const n = os2ip(b64urlToBytes(jwk.n));
  const e = os2ip(b64urlToBytes(jwk.e));
  const modBits = bitLength(n);
  // A weak key would make the token forgeable, and a strange one could single the member out:
  // the server generates 2048- or 3072-bit keys with e = 65537, and nothing else is accepted.
  if (modBits < MIN_BITS) {
    throw new KeyRefused(`This key has ${modBits} bits; private mode needs at least ${MIN_BITS}. Nothing was sent.`);
  }
  if (e !== PUBLIC_EXPONENT) {
    throw new KeyRefused(`This key's public exponent is ${e}; private mode accepts only 65537. Nothing was sent.`);
  }
  return { n, e, modBits, modLen: Math.ceil(modBits / 8) };
}

// A key the browser will not blind for; its message can be shown to the member as it is.
export class KeyRefused extends Error {}

// The key's fingerprint as the server prints it (blind.fingerprint): the first 64 bits of SHA-256
// over the DER SubjectPublicKeyInfo, in four groups. Computed here from the key itself, so the
// fingerprint a member compares is never just a string the server sent.
export async function fingerprint(jwk) {
  publicKey(jwk);
  const key = await subtle().importKey("jwk", { kty: "RSA", n: jwk.n, e: jwk.e, ext: true }, { name: "RSA-PSS", hash: HASH }, true, ["verify"]);
  const spki = new Uint8Array(await subtle().exportKey("spki", key));
  const digest = new Uint8Array(await subtle().digest("SHA-256", spki));
  const hex = bytesToHex(digest.subarray(0, 8));
  return [0, 4, 8, 12].map((i) => hex.slice(i, i + 4)).join("-");
}

function requireBytes(value, name) {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  return value;
}

// The blinding factor: uniform in [1, n) by rejection sampling, and invertible mod n.
function randomBlind(n) {
  const bits = bitLength(n);
  const bytes = new Uint8Array(Math.ceil(bits / 8));
  for (;;) {
    crypto.getRandomValues(bytes);
    bytes[0] &= 0xff >> (8 * bytes.length - bits);
    const r = os2ip(bytes);
    if (r >= 1n && r < n && gcd(r, n) === 1n) return r;
  }
}

// --- RFC 9474 §4.1–4.3 -------------------------------------------------------------------------

// Prepare (§4.1): the Randomized variant prefixes 32 random bytes so the signed message is
// never one the server has seen; the Deterministic variant returns msg unchanged.
export async function prepare(msg, randomized = true) {
  requireBytes(msg, "prepare: msg");
  if (!randomized) return msg.slice();
  const out = new Uint8Array(PREFIX_LEN + msg.length);
  crypto.getRandomValues(out.subarray(0, PREFIX_LEN));
  out.set(msg, PREFIX_LEN);
  return out;
}

// Blind (§4.2). salt and inv are for test vectors only: normally both are drawn here.
export async function blind(jwk, msg, { salt, inv, saltLength = SALT_LEN } = {}) {
  const { n, e, modBits, modLen } = publicKey(jwk);
  requireBytes(msg, "blind: msg");
  if (salt === undefined) salt = crypto.getRandomValues(new Uint8Array(saltLength));
  requireBytes(salt, "blind: salt");
  if (salt.length !== saltLength) throw new RangeError(`blind: salt must be ${saltLength} bytes`);
  const encoded = await emsaPssEncode(msg, modBits - 1, salt);
  const m = os2ip(encoded);
  if (gcd(m, n) !== 1n) throw new Error("blind: invalid input (message not coprime with n)");
  let r;
  let rInv;
  if (inv === undefined) {
    r = randomBlind(n);
    rInv = modInverse(r, n);
  } else {
    rInv = os2ip(requireBytes(inv, "blind: inv"));
    if (rInv < 1n || rInv >= n) throw new RangeError("blind: inv out of range");
    r = modInverse(rInv, n);
  }
  const x = rsavp1(n, e, r);
  const z = (m * x) % n;
  return { blindedMsg: i2osp(z, modLen), inv: i2osp(rInv, modLen) };
}

// Finalize (§4.3): unblind the server's signature and check it with WebCrypto's RSA-PSS verify;
// a signature that does not verify is never returned.
export async function finalize(jwk, msg, blindSig, inv, { saltLength = SALT_LEN } = {}) {
  const { n, modLen } = publicKey(jwk);
  requireBytes(msg, "finalize: msg");
  requireBytes(blindSig, "finalize: blindSig");
  requireBytes(inv, "finalize: inv");
  if (blindSig.length !== modLen) throw new RangeError(`finalize: blind signature must be ${modLen} bytes`);
  const z = os2ip(blindSig);
  const rInv = os2ip(inv);
  const sig = i2osp((z * rInv) % n, modLen);
  const key = await subtle().importKey(
    "jwk",
    { kty: "RSA", n: jwk.n, e: jwk.e, ext: true },
    { name: "RSA-PSS", hash: HASH },
    false,
    ["verify"],
  );
  const valid = await subtle().verify({ name: "RSA-PSS", saltLength }, key, sig, msg);
  if (!valid) {
    throw new Error("finalize: the server's signature does not verify for this key and message; fetch a new token");
  }
  return sig;
}
