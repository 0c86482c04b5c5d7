// The one way the page talks to the gateway: the API key from sessionStorage, every error
// as an ApiError with a sentence, and retries for what is worth retrying (a lost connection,
// a busy queue after its Retry-After, a service that is not ready), each one said.

import { seconds, sentence } from "./messages.js";

const KEY_STORAGE = "catdog.apiKey";
const RETRY_DELAYS_S = [1, 2, 4, 8, 15];
const RETRIED_STATUSES = new Set([429, 503]);

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(status, reason, detail, retryAfterS = null) {
    super(sentence(reason, status));
    this.status = status;
    this.reason = reason;
    this.detail = detail;
    this.retryAfterS = retryAfterS;
  }

  static async from(response) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // A proxy's HTML error page: the status alone has to speak.
    }
    const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    return new ApiError(
      response.status,
      body.reason || `http_${response.status}`,
      typeof body.detail === "string" ? body.detail : "",
      Number.isFinite(retryAfter) ? retryAfter : null,
    );
  }
}

let askForKey = async () => {
  throw new Error("no way to ask for an API key");
};

/** `ask(rejected)` shows the key form and resolves once a key is stored. */
export function whenKeyNeeded(ask) {
  askForKey = ask;
}

const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

/**
 * fetch() the API: resolves to the JSON body, or throws an ApiError. `say(text)` hears each
 * retry in words, and `say(null)` once a retried call has gone through.
 */
export async function call(path, { method = "GET", body, headers = {}, say, retries = 5 } = {}) {
  let retried = false;
  for (let attempt = 0; ; attempt++) {
    const key = apiKey();
    const sent = { Accept: "application/json", ...headers, ...(key ? { "X-API-Key": key } : {}) };
    const delay = RETRY_DELAYS_S[Math.min(attempt, RETRY_DELAYS_S.length - 1)];
    let response;
    try {
      response = await fetch(path, { method, body, headers: sent });
    } catch (err) {
      // fetch() rejects only when no answer came at all: offline, reset, server gone.
      if (attempt >= retries) throw new ApiError(0, "connection_lost", String(err));
      say?.(`The connection to the service was lost. Retrying in ${seconds(delay)}…`);
      retried = true;
      await sleep(delay);
      continue;
    }
    if (response.ok) {
      if (retried) say?.(null);
      return response.json();
    }
    const error = await ApiError.from(response);
    if (error.status === 401 && attempt < retries) {
      await askForKey(Boolean(key));
      continue;
    }
    if (RETRIED_STATUSES.has(error.status) && attempt < retries) {
      const wait = error.retryAfterS ?? delay;
      say?.(`${error.message} Trying again in ${seconds(wait)}…`);
      retried = true;
      await sleep(wait);
      continue;
    }
    throw error;
  }
}
