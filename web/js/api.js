// Calls to the platform API (/api/v1) and the OpenAI-compatible API (/v1), with the session's
// token. A path that starts with /api/ or /v1/ is used as given; any other is under /api/v1
// ("/models" -> "/api/v1/models"). Failures are ApiError with the API's own message.

import { t, registerStrings } from "./i18n.js";

const PLATFORM = "/api/v1";
const SESSION_KEY = "suanli.session";

registerStrings({
  en: {
    "api.network": "Cannot reach the server ({msg}).",
    "api.http": "The server answered {status}.",
    "api.badResponse": "The server sent an answer this page cannot read.",
    "api.aborted": "The request was cancelled.",
  },
  zh: {
    "api.network": "无法连接服务器（{msg}）。",
    "api.http": "服务器返回 {status}。",
    "api.badResponse": "服务器的响应无法识别。",
    "api.aborted": "请求已取消。",
  },
});

export class ApiError extends Error {
  constructor(message, { status = 0, type = null, code = null, param = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
  }

  // From a failed answer's body text: the {"error": {...}} object, FastAPI's {"detail"}, or the status.
  static fromBody(status, text, statusText = "") {
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: a proxy's error page, say
    }
    const error = body?.error;
    if (error && typeof error === "object" && error.message) {
      return new ApiError(String(error.message), { status, type: error.type, code: error.code, param: error.param });
    }
    if (typeof body?.detail === "string") return new ApiError(body.detail, { status });
    return new ApiError(t("api.http", { status: `${status} ${statusText}`.trim() }), { status });
  }
}

function readStored() {
  try {
    const value = JSON.parse(window.localStorage.getItem(SESSION_KEY) ?? "null");
    if (!value || typeof value.token !== "string" || !value.token) return null;
    if (typeof value.expiresAt === "number" && Date.now() >= value.expiresAt) return null;
    return value;
  } catch {
    return null;
  }
}

// The same stored shape as usage.html's ({token, email, expiresAt}), so both share a sign-in.
export const session = {
  get token() {
    return readStored()?.token ?? null;
  },
  get email() {
    return readStored()?.email ?? null;
  },
  get() {
    return readStored();
  },
  set(token, email, expiresIn = null) {
    const expiresAt = Number.isFinite(expiresIn) && expiresIn > 0 ? Date.now() + expiresIn * 1000 : null;
    try {
      window.localStorage.setItem(SESSION_KEY, JSON.stringify({ token, email, expiresAt }));
    } catch {
      // storage unavailable: nothing survives a reload, and the guard asks to sign in again
    }
    window.dispatchEvent(new CustomEvent("suanli:session"));
  },
  clear() {
    try {
      window.localStorage.removeItem(SESSION_KEY);
    } catch {
      // nothing stored
    }
    window.dispatchEvent(new CustomEvent("suanli:session"));
  },
};

export function url(path) {
  return path.startsWith("/api/") || path.startsWith("/v1/") ? path : PLATFORM + path;
}

function authHeaders(headers = {}) {
  const token = session.token;
  return token ? { Authorization: `Bearer ${token}`, ...headers } : { ...headers };
}

// A 401 on a call made with a token: the session is over, so the console asks to sign in.
function sessionEnded(sentToken) {
  if (!sentToken || session.token !== sentToken) return;
  session.clear();
  const next = window.location.hash || "#/";
  if (!next.startsWith("#/login")) window.location.hash = `#/login?next=${encodeURIComponent(next)}`;
}

async function send(path, { method = "GET", json, body, headers, signal } = {}) {
  const sentToken = session.token;
  const allHeaders = authHeaders({ Accept: "application/json", ...headers });
  if (json !== undefined) {
    allHeaders["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url(path), { method, headers: allHeaders, body, signal, cache: "no-store" });
  } catch (error) {
    if (error?.name === "AbortError") throw error;
    throw new ApiError(t("api.network", { msg: error?.message || String(error) }));
  }
  if (!response.ok) {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // no body
    }
    if (response.status === 401) sessionEnded(sentToken);
    throw ApiError.fromBody(response.status, text, response.statusText);
  }
  return response;
}

// -> the parsed JSON answer (null for 204); `raw: true` gives the Response itself (downloads).
export async function api(path, options = {}) {
  const response = await send(path, options);
  if (options.raw) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(t("api.badResponse"), { status: response.status });
  }
}

// Reads a text/event-stream answer; onData(parsed JSON, or the text when not JSON) per `data:`
// line until `[DONE]` or the end. An {"error": {...}} event is thrown as ApiError.
export async function streamSSE(path, { method = "POST", json, signal, headers } = {}, onData) {
  const response = await send(path, { method, json, signal, headers: { Accept: "text/event-stream", ...headers } });
  if (!response.body) throw new ApiError(t("api.badResponse"), { status: response.status });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const handle = (line) => {
    if (!line.startsWith("data:")) return false;
    const data = line.slice(5).trimStart();
    if (data === "[DONE]") return true;
    let value = data;
    try {
      value = JSON.parse(data);
    } catch {
      // a plain-text event: handed over as it is
    }
    if (value && typeof value === "object" && value.error && typeof value.error === "object") {
      const error = value.error;
      throw new ApiError(String(error.message ?? t("api.badResponse")), {
        status: response.status,
        type: error.type,
        code: error.code,
        param: error.param,
      });
    }
    onData(value);
    return false;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split(/\r?\n/);
      buffer = lines.pop();
      for (const line of lines) if (handle(line)) return;
    }
    if (buffer) handle(buffer);
  } finally {
    reader.cancel().catch(() => {});
  }
}

// A multipart upload with progress: onProgress(fraction, loadedBytes, totalBytes).
export function upload(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const sentToken = session.token;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url(path));
    xhr.setRequestHeader("Accept", "application/json");
    if (sentToken) xhr.setRequestHeader("Authorization", `Bearer ${sentToken}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded / event.total, event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(xhr.responseText ? JSON.parse(xhr.responseText) : null);
        } catch {
          reject(new ApiError(t("api.badResponse"), { status: xhr.status }));
        }
        return;
      }
      if (xhr.status === 401) sessionEnded(sentToken);
      reject(ApiError.fromBody(xhr.status, xhr.responseText, xhr.statusText));
    });
    xhr.addEventListener("error", () => reject(new ApiError(t("api.network", { msg: "upload failed" }))));
    xhr.addEventListener("abort", () => reject(new ApiError(t("api.aborted"))));
    xhr.send(formData);
  });
}
