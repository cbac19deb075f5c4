// Stories and replies in private mode (RFC 9474 blind-signature tokens).
//
// When the share page or the wall opens, the browser takes one token of the week's story (or
// reply) key while signed in: that is when the weekly quota counts. The story or reply is sent
// later with the token and no cookies, so the server stores it without knowing who sent it.
// Without this file (or WebCrypto), the signed-in forms work as before.
import { dropToken, loadToken, takeToken } from "./tokens.js";

const PRIVATE_MODE = Boolean(window.isSecureContext && globalThis.crypto?.subtle);

async function json(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

// One token fetch per slot at a time: a submit during the page's own fetch waits for it rather
// than taking a second token (each one counts against the weekly quota).
const inFlight = new Map();

function fetchToken(base, kind, slot, csrf) {
  if (!inFlight.has(slot)) {
    const taking = takeToken({ keyUrl: `${base}/key?kind=${kind}`, signUrl: base, slot, csrf });
    inFlight.set(slot, taking.finally(() => inFlight.delete(slot)));
  }
  return inFlight.get(slot);
}

function show(element, text) {
  if (element) {
    element.textContent = text;
    element.hidden = false;
  }
}

// Send with the token, no cookies. A spent or expired token is dropped and a fresh one taken once.
async function send(url, body, base, kind, slot, csrf) {
  let token = (inFlight.has(slot) && (await inFlight.get(slot))) || loadToken(slot) || (await fetchToken(base, kind, slot, csrf));
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "omit",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...body, key_id: token.keyId, msg: token.msg, sig: token.sig }),
    });
    const result = await json(response);
    if (response.status === 201) dropToken(slot);
    if ((response.status === 404 || response.status === 409) && attempt === 0 && !result.errors) {
      dropToken(slot);
      token = await fetchToken(base, kind, slot, csrf);
      continue;
    }
    return { status: response.status, result };
  }
}

for (const form of PRIVATE_MODE ? document.querySelectorAll("form[data-token-kind]") : []) {
  const { tokenBase: base, tokenKind: kind, tokenSlot: slot, redeemUrl: url } = form.dataset;
  const csrf = form.querySelector("input[name=_csrf_token]")?.value ?? "";
  const problems = form.querySelector(".token-problems") || document.getElementById("token-problems");
  if (!loadToken(slot)) fetchToken(base, kind, slot, csrf).catch(() => {}); // taken now, used later
  let confirmed = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
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
              confirmed,
            }
          : { story_id: form.dataset.story, reply: fields.get("reply") ?? "" };
      const { status, result } = await send(url, body, base, kind, slot, csrf);
      if (status === 200 && result.findings) {
        const box = document.getElementById("live-findings");
        box.replaceChildren();
        const heading = document.createElement("p");
        heading.textContent = box.dataset.heading;
        const list = document.createElement("ul");
        for (const finding of result.findings) {
          const item = document.createElement("li");
          item.textContent = `${finding.label}: ${finding.text}`;
          list.append(item);
        }
        box.append(heading, list);
        box.hidden = false;
        confirmed = true;
        button.textContent = form.dataset.confirmLabel;
        return;
      }
      if (status === 201 && kind === "story") {
        form.hidden = true;
        document.getElementById("live-findings").hidden = true;
        document.getElementById("receipt-code").textContent = result.receipt;
        const receipt = document.getElementById("token-receipt");
        receipt.hidden = false;
        receipt.focus();
        return;
      }
      if (status === 201) {
        form.reset();
        show(form.querySelector(".token-sent"), form.dataset.thanks);
        fetchToken(base, kind, slot, csrf).catch(() => {}); // the next reply's token, taken now
        return;
      }
      show(problems, result.detail || result.title || "Not sent.");
    } catch (error) {
      show(problems, error.message);
    } finally {
      button.disabled = false;
    }
  });
}
