// Calls to the shim's own API. URLs are relative to the page (…/ui/), so the page works at
// whatever path a Route or a proxy serves the shim under. The API key, when the API asks
// for one (401), is kept in this tab's sessionStorage only and sent as a bearer token: never
// in a URL, never in localStorage or a cookie.

const KEY_ITEM = "diarization-api-key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  /** `askForKey(reason)` resolves to a key, or to "" when the user declines. */
  constructor(askForKey) {
    this.askForKey = askForKey;
  }

  get key() {
    return sessionStorage.getItem(KEY_ITEM) || "";
  }

  authorization() {
    return this.key ? { Authorization: `Bearer ${this.key}` } : {};
  }

  /** A GET or DELETE answered with JSON; `ApiError` for an error answer. */
  async json(url, method = "GET") {
    for (;;) {
      let response;
      try {
        response = await fetch(url, { method, headers: { Accept: "application/json", ...this.authorization() } });
      } catch (error) {
        throw new ApiError(0, "network_error", `no answer from the service (${error.message})`);
      }
      const text = await response.text();
      if (response.status === 401 && (await this.newKey(errorOf(response.status, text)))) continue;
      if (!response.ok) throw errorOf(response.status, text);
      return text ? parse(response.status, text) : null;
    }
  }

  /**
   * POST a multipart form, reporting `{phase: "upload", fraction}` then `{phase: "processing"}`
   * to `onProgress` (fetch reports no upload progress, XMLHttpRequest does). Resolves to
   * `{status, body, location}`; `ApiError` for an error answer, `canceled` when `signal` aborts.
   */
  async post(url, form, { onProgress = () => {}, signal } = {}) {
    for (;;) {
      const answer = await this.send(url, form, onProgress, signal);
      if (answer.status === 401 && (await this.newKey(errorOf(answer.status, answer.text)))) continue;
      if (answer.status < 200 || answer.status >= 300) throw errorOf(answer.status, answer.text);
      return { status: answer.status, body: parse(answer.status, answer.text), location: answer.location };
    }
  }

  send(url, form, onProgress, signal) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) return reject(new ApiError(0, "canceled", "canceled"));
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("Accept", "application/json");
      for (const [name, value] of Object.entries(this.authorization())) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (e) => onProgress({ phase: "upload", fraction: e.lengthComputable ? e.loaded / e.total : null });
      xhr.upload.onload = () => onProgress({ phase: "processing" });
      xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText, location: xhr.getResponseHeader("Location") });
      xhr.onerror = () => reject(new ApiError(0, "network_error", "the connection to the service failed before it answered"));
      xhr.onabort = () => reject(new ApiError(0, "canceled", "canceled"));
      if (signal) signal.addEventListener("abort", () => xhr.abort(), { once: true });
      xhr.send(form);
    });
  }

  /** Ask for a key after a 401; true when there is a new one to try. */
  async newKey(refusal) {
    const refused = this.key;
    const key = await this.askForKey(refused ? `The service refused this key: ${refusal.message}` : refusal.message);
    if (!key) throw refusal;
    sessionStorage.setItem(KEY_ITEM, key);
    return true;
  }
}

function parse(status, text) {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(status, "invalid_answer", `the service answered ${status} with something that is not JSON`);
  }
}

/** The API's `{"error": {"code", "message"}}`, or what can be said of an answer without it. */
function errorOf(status, text) {
  try {
    const { error } = JSON.parse(text);
    if (error && error.code) return new ApiError(status, String(error.code), String(error.message || ""));
  } catch {
    // not the API's error body (a proxy's page, say): fall through
  }
  return new ApiError(status, `http_${status}`, `the service answered ${status} without an error body`);
}
