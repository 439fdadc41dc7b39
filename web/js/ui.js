// Small DOM helpers shared by the console's pages.

import { t, locale, registerStrings } from "./i18n.js";

registerStrings({
  en: {
    "ui.copy": "Copy",
    "ui.copied": "Copied",
    "ui.copyFailed": "Copy failed: select the text and copy it",
    "ui.retry": "Retry",
    "ui.loading": "Loading…",
    "ui.empty": "Nothing here yet.",
    "ui.error": "Something went wrong: {msg}",
    "ui.status.running": "running",
    "ui.status.succeeded": "succeeded",
    "ui.status.failed": "failed",
    "ui.status.queued": "queued",
    "ui.status.pending": "pending",
    "ui.status.cancelled": "cancelled",
    "ui.status.ready": "ready",
    "ui.status.registering": "registering",
    "ui.status.stopped": "stopped",
    "ui.status.deploying": "deploying",
    "ui.status.stopping": "stopping",
    "ui.status.starting": "starting",
    "ui.status.deleted": "deleted",
    "ui.status.in_progress": "in progress",
    "ui.status.completed": "completed",
  },
  zh: {
    "ui.copy": "复制",
    "ui.copied": "已复制",
    "ui.copyFailed": "复制失败：请选中文本后手动复制",
    "ui.retry": "重试",
    "ui.loading": "加载中…",
    "ui.empty": "暂无内容。",
    "ui.error": "出错了：{msg}",
    "ui.status.running": "运行中",
    "ui.status.succeeded": "已成功",
    "ui.status.failed": "失败",
    "ui.status.queued": "排队中",
    "ui.status.pending": "等待中",
    "ui.status.cancelled": "已取消",
    "ui.status.ready": "就绪",
    "ui.status.registering": "注册中",
    "ui.status.stopped": "已停止",
    "ui.status.deploying": "部署中",
    "ui.status.stopping": "停止中",
    "ui.status.starting": "启动中",
    "ui.status.deleted": "已删除",
    "ui.status.in_progress": "处理中",
    "ui.status.completed": "已完成",
  },
});

let idCounter = 0;

// A unique element id, for <label for> and aria-describedby.
export function uid(prefix = "el") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const item of child) append(node, item);
    return;
  }
  node.append(child instanceof Node ? child : document.createTextNode(String(child)));
}

// h("button", {class: "primary", onClick: fn, "aria-label": "x"}, "text", [more], null)
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (/^on[A-Z]/.test(name) && typeof value === "function") {
      node.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class" || name === "className") {
      node.className = value;
    } else if (name === "style" && typeof value === "object") {
      Object.assign(node.style, value);
    } else if (name === "value" && "value" in node) {
      node.value = value;
    } else if (name === "checked" || name === "disabled" || name === "hidden" || name === "selected") {
      node[name] = Boolean(value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function messageOf(err) {
  if (err === null || err === undefined) return t("ui.error", { msg: "?" });
  if (typeof err === "string") return err;
  if (err.name === "ApiError") return err.message;
  return t("ui.error", { msg: err.message || String(err) });
}

// An alert with a readable message (the API's own for an ApiError); onRetry adds a retry button.
/** Element.replaceChildren with the null children h() accepts (the DOM would print "null"). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

export function errorBox(err, onRetry = null) {
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("p", { class: "error-message" }, messageOf(err)),
    onRetry ? h("button", { type: "button", class: "retry", onClick: onRetry }, t("ui.retry")) : null,
  );
}

export function showError(container, err, onRetry = null) {
  container.replaceChildren(errorBox(err, onRetry));
}

export function loading() {
  return h("p", { class: "muted", role: "status" }, t("ui.loading"));
}

// columns: [{label, value(row) -> node|string, class?}]; rows: array. Scrolls sideways on a phone.
export function table(columns, rows, { empty = null, caption = null } = {}) {
  const head = h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.class ?? null }, column.label)));
  const body = rows.length
    ? rows.map((row) => h("tr", {}, columns.map((column) => h("td", { class: column.class ?? null }, column.value(row)))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty ?? t("ui.empty")))];
  return h(
    "div",
    { class: "table-wrap", tabindex: "0" },
    h("table", {}, caption ? h("caption", {}, caption) : null, h("thead", {}, head), h("tbody", {}, body)),
  );
}

export function formatNumber(value, maximumFractionDigits = 0) {
  const number = typeof value === "number" ? value : Number(value);
  if (value === null || value === undefined || !Number.isFinite(number)) return "—";
  return new Intl.NumberFormat(locale(), { maximumFractionDigits }).format(number);
}

export function formatBytes(value) {
  const number = typeof value === "number" ? value : Number(value);
  if (value === null || value === undefined || !Number.isFinite(number)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let scaled = number;
  let unit = 0;
  while (Math.abs(scaled) >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return `${formatNumber(scaled, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

// ISO text or Unix seconds (or milliseconds) -> the local date and time.
export function formatTime(value) {
  let date = null;
  if (typeof value === "number") date = new Date(value > 1e12 ? value : value * 1000);
  else if (typeof value === "string" && value) date = new Date(/^\d+$/.test(value) ? Number(value) * 1000 : value);
  if (!date || Number.isNaN(date.getTime())) return value ? String(value) : "—";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(date);
}

const STATUS_TONES = {
  succeeded: "ok",
  ready: "ok",
  running: "busy",
  active: "ok",
  failed: "bad",
  error: "bad",
  cancelled: "muted",
  stopped: "muted",
  revoked: "muted",
};

export function statusBadge(status) {
  const text = String(status ?? "");
  const key = `ui.status.${text}`;
  const label = t(key) === key ? text : t(key);
  return h("span", { class: `badge ${STATUS_TONES[text] ?? "neutral"}`, "data-status": text }, label);
}

export function copyButton(text, label = null) {
  const button = h("button", { type: "button", class: "copy" }, label ?? t("ui.copy"));
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = t("ui.copied");
    } catch {
      button.textContent = t("ui.copyFailed");
    }
    setTimeout(() => {
      button.textContent = label ?? t("ui.copy");
    }, 2000);
  });
  return button;
}

export function progressBar() {
  const fill = h("div", { class: "bar-fill" });
  const text = h("span", { class: "bar-label small" });
  const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, fill);
  const el = h("div", { class: "progress" }, bar, text);
  return {
    el,
    set(fraction, label = "") {
      const percent = Math.max(0, Math.min(1, Number(fraction) || 0)) * 100;
      fill.style.width = `${percent.toFixed(1)}%`;
      bar.setAttribute("aria-valuenow", percent.toFixed(0));
      text.textContent = label;
    },
  };
}

// A labelled form field: the input gets an id when it has none; help is linked by aria-describedby.
export function field(label, input, help = null) {
  if (!input.id) input.id = uid("field");
  const helpNode = help ? h("p", { class: "help small muted", id: `${input.id}-help` }, help) : null;
  if (helpNode) input.setAttribute("aria-describedby", helpNode.id);
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, helpNode);
}
