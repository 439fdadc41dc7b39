// The console's usage page: balance, quotas and usage (charts, table, CSV) of the signed-in user.
// A plain ES module, no build step. Chart.js (vendor/chart.umd.min.js, fetched by `make web-assets`)
// draws the charts when it loaded; without it the page shows every number and says why no chart.

const API = "/api/v1";
const SESSION_KEY = "suanli.session";
const LANG_KEY = "suanli.lang";
const EMAIL_KEY = "suanli.email";
const COLORS = { cost: "#2563eb", input: "#0891b2", output: "#d97706", gpu: "#059669" };
const MAX_FILLED_DAYS = 400;
// Inside the console (#/usage shows this page in a frame): the console draws the header.
const EMBEDDED = new URLSearchParams(window.location.search).get("embed") === "1";

const MESSAGES = {
  en: {
    pageTitle: "Usage — Suanli console",
    title: "Usage",
    skip: "Skip to content",
    switchLang: "中文",
    switchLangLabel: "切换到中文 (switch to Chinese)",
    signInTitle: "Sign in",
    signInHint: "Sign in with your Suanli account to see your usage and balance.",
    email: "Email",
    password: "Password",
    signIn: "Sign in",
    signingIn: "Signing in…",
    signOut: "Sign out",
    signedInAs: "Signed in as {email}",
    sessionExpired: "Your session has expired. Please sign in again.",
    signedOut: "You are signed out.",
    heading: "Usage and balance",
    balanceTitle: "Balance",
    credits: "Credits",
    charges: "Charges",
    currency: "Currency",
    quotasTitle: "Quotas",
    noQuotas: "No quotas are set for your account.",
    quotaTokens: "Tokens today",
    quotaGpu: "GPUs in use ({type})",
    quotaStorage: "Storage",
    resetsAt: "Resets {time}",
    noLimit: "{used} (no limit)",
    usedOfLimit: "{used} of {limit}",
    usageTitle: "Usage",
    from: "From",
    to: "To",
    groupBy: "Group by",
    byDay: "Day",
    byModel: "Model",
    byGpu: "GPU type",
    byKey: "API key",
    apply: "Show",
    downloadCsv: "Download CSV",
    downloading: "Downloading…",
    rangeHint: "Dates are UTC days; both ends are included.",
    badDate: "Enter both dates as YYYY-MM-DD.",
    badRange: "The start date must not be after the end date.",
    chartCost: "Cost",
    chartCostAria: "Bar chart of the cost per group; the table lists the same numbers.",
    chartShows: "The second chart shows",
    chartTokens: "Tokens in / out",
    chartSecondAria: "Bar chart of tokens or GPU hours per group; the table lists the same numbers.",
    chartMissing:
      "Charts are unavailable: the chart library (vendor/chart.umd.min.js) did not load — run “make web-assets” " +
      "where the console is served. The table below has every number.",
    chartFailed: "The chart could not be drawn ({msg}). The table below has every number.",
    requests: "Requests",
    inputTokens: "Input tokens",
    outputTokens: "Output tokens",
    gpuHours: "GPU hours",
    cost: "Cost",
    total: "Total",
    tableCaption: "Usage by {group}, {from} to {to}",
    storageUsed: "Storage used",
    noUsage: "No usage in this period.",
    none: "(none)",
    loading: "Loading…",
    loadedLines: "{count} lines shown.",
    couldNotLoad: "Could not load: {msg}",
    csvFailed: "Could not download the CSV: {msg}",
    networkError: "Cannot reach the server ({msg}).",
    httpError: "The server answered {status}.",
    badResponse: "The server sent an answer this page cannot read.",
    unexpected: "Something went wrong on this page: {msg}",
  },
  zh: {
    pageTitle: "用量 — 算力控制台",
    title: "用量",
    skip: "跳到正文",
    switchLang: "English",
    switchLangLabel: "Switch to English（切换到英文）",
    signInTitle: "登录",
    signInHint: "登录算力账户，查看用量和余额。",
    email: "邮箱",
    password: "密码",
    signIn: "登录",
    signingIn: "正在登录…",
    signOut: "退出登录",
    signedInAs: "当前账户：{email}",
    sessionExpired: "登录已过期，请重新登录。",
    signedOut: "已退出登录。",
    heading: "用量与余额",
    balanceTitle: "余额",
    credits: "充值",
    charges: "消费",
    currency: "币种",
    quotasTitle: "配额",
    noQuotas: "您的账户没有设置配额。",
    quotaTokens: "今日 Token",
    quotaGpu: "使用中的 GPU（{type}）",
    quotaStorage: "存储",
    resetsAt: "重置时间：{time}",
    noLimit: "{used}（不限）",
    usedOfLimit: "{used} / {limit}",
    usageTitle: "用量明细",
    from: "开始日期",
    to: "结束日期",
    groupBy: "分组方式",
    byDay: "按日",
    byModel: "按模型",
    byGpu: "按 GPU 类型",
    byKey: "按 API 密钥",
    apply: "查询",
    downloadCsv: "下载 CSV",
    downloading: "正在下载…",
    rangeHint: "日期按 UTC 计算，包含起止两天。",
    badDate: "请按 YYYY-MM-DD 格式填写两个日期。",
    badRange: "开始日期不能晚于结束日期。",
    chartCost: "费用",
    chartCostAria: "各分组费用的柱状图；下表列出相同的数据。",
    chartShows: "第二个图表显示",
    chartTokens: "输入 / 输出 Token",
    chartSecondAria: "各分组 Token 或 GPU 小时的柱状图；下表列出相同的数据。",
    chartMissing: "图表不可用：图表库（vendor/chart.umd.min.js）未能加载，请在部署控制台的机器上运行 “make web-assets”。下表包含全部数据。",
    chartFailed: "无法绘制图表（{msg}）。下表包含全部数据。",
    requests: "请求数",
    inputTokens: "输入 Token",
    outputTokens: "输出 Token",
    gpuHours: "GPU 小时",
    cost: "费用",
    total: "合计",
    tableCaption: "{group}用量，{from} 至 {to}",
    storageUsed: "已用存储",
    noUsage: "该时间段内没有用量。",
    none: "（无）",
    loading: "加载中…",
    loadedLines: "共 {count} 行。",
    couldNotLoad: "加载失败：{msg}",
    csvFailed: "CSV 下载失败：{msg}",
    networkError: "无法连接服务器（{msg}）。",
    httpError: "服务器返回 {status}。",
    badResponse: "服务器的响应无法识别。",
    unexpected: "页面出错：{msg}",
  },
};

// The column heading of the group, and the group's name in the table caption.
const GROUP_KEYS = { day: "byDay", model: "byModel", gpu_type: "byGpu", key: "byKey" };
const GROUP_COLUMNS = {
  en: { day: "Day", model: "Model", gpu_type: "GPU type", key: "API key" },
  zh: { day: "日期", model: "模型", gpu_type: "GPU 类型", key: "API 密钥" },
};
const GROUP_NAMES = {
  en: { day: "day", model: "model", gpu_type: "GPU type", key: "API key" },
  zh: { day: "按日", model: "按模型", gpu_type: "按 GPU 类型", key: "按 API 密钥" },
};

// ---- state ---------------------------------------------------------------------------------

const memoryStore = new Map();
const store = {
  get(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return memoryStore.get(key) ?? null;
    }
  },
  set(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch {
      memoryStore.set(key, value);
    }
  },
  remove(key) {
    memoryStore.delete(key);
    try {
      window.localStorage.removeItem(key);
    } catch {
      // storage unavailable: the in-memory copy is gone already
    }
  },
};

const state = {
  lang: initialLanguage(),
  session: null, // {token, email, expiresAt}: read from storage by start()
  notice: null, // a message key for the sign-in form (signed out, session expired)
  balance: null,
  balanceError: null,
  balanceLoading: false,
  quotas: null,
  quotasError: null,
  quotasLoading: false,
  usage: null,
  usageQuery: null, // the query the shown usage answers
  usageError: null, // the API's message
  usageInvalid: null, // the message key of what is wrong with the range the form holds
  usageLoading: false,
  usageSeq: 0,
  secondMetric: "tokens",
  csvBusy: false,
};

const charts = { cost: null, second: null };

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

class SessionExpired extends ApiError {}

// ---- helpers -------------------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

function t(key, vars = {}) {
  const text = MESSAGES[state.lang]?.[key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

function locale() {
  return state.lang === "zh" ? "zh-CN" : "en";
}

function initialLanguage() {
  const saved = store.get(LANG_KEY);
  if (saved === "en" || saved === "zh") return saved;
  const preferred = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  return preferred.toLowerCase().startsWith("zh") ? "zh" : "en";
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showMessage(node, text) {
  node.textContent = text ?? "";
  node.hidden = !text;
}

function toNumber(value) {
  if (value === null || value === undefined || value === "") return Number.NaN;
  return typeof value === "number" ? value : Number(value);
}

function formatNumber(value, maximumFractionDigits = 0) {
  const number = toNumber(value);
  if (!Number.isFinite(number)) return "—";
  return new Intl.NumberFormat(locale(), { maximumFractionDigits }).format(number);
}

function formatMoney(value, currency) {
  const number = toNumber(value);
  if (!Number.isFinite(number)) return value === null || value === undefined ? "—" : String(value);
  const digits = { minimumFractionDigits: 2, maximumFractionDigits: 4 };
  if (typeof currency === "string" && /^[A-Za-z]{3}$/.test(currency)) {
    try {
      return new Intl.NumberFormat(locale(), { style: "currency", currency: currency.toUpperCase(), ...digits })
        .format(number);
    } catch {
      // not a currency Intl knows: the plain number and the code
    }
  }
  const text = new Intl.NumberFormat(locale(), digits).format(number);
  return currency ? `${text} ${currency}` : text;
}

function formatBytes(value) {
  const number = toNumber(value);
  if (!Number.isFinite(number)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let scaled = number;
  let unit = 0;
  while (Math.abs(scaled) >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return `${formatNumber(scaled, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatTime(value) {
  let date;
  if (typeof value === "number") date = new Date(value > 1e12 ? value : value * 1000);
  else if (typeof value === "string" && value) date = new Date(value);
  if (!date || Number.isNaN(date.getTime())) return value ? String(value) : "";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(date);
}

function gpuHours(line) {
  const hours = toNumber(line?.gpu_hours);
  if (Number.isFinite(hours)) return hours;
  const seconds = toNumber(line?.gpu_seconds);
  return Number.isFinite(seconds) ? seconds / 3600 : Number.NaN;
}

// UTC days as YYYY-MM-DD, the usage API's days.
function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function isDay(text) {
  if (typeof text !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(text)) return false;
  const date = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && isoDay(date) === text;
}

function addDays(day, days) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + days);
  return isoDay(date);
}

function daysBetween(from, to) {
  const days = [];
  for (let day = from; day <= to && days.length <= MAX_FILLED_DAYS; day = addDays(day, 1)) days.push(day);
  return days;
}

// ---- session and API -----------------------------------------------------------------------

function readSession() {
  try {
    const session = JSON.parse(store.get(SESSION_KEY) ?? "null");
    if (!session || typeof session.token !== "string" || !session.token) return null;
    if (typeof session.expiresAt === "number" && Date.now() >= session.expiresAt) {
      store.remove(SESSION_KEY);
      return null;
    }
    return session;
  } catch {
    store.remove(SESSION_KEY);
    return null;
  }
}

function saveSession(session) {
  state.session = session;
  store.set(SESSION_KEY, JSON.stringify(session));
}

function endSession(noticeKey) {
  store.remove(SESSION_KEY);
  state.session = null;
  state.notice = noticeKey;
  state.usageSeq += 1; // answers still on their way are for nobody now
  Object.assign(state, {
    balance: null,
    balanceError: null,
    balanceLoading: false,
    quotas: null,
    quotasError: null,
    quotasLoading: false,
    usage: null,
    usageQuery: null,
    usageError: null,
    usageInvalid: null,
    usageLoading: false,
  });
  destroyCharts();
  showView();
  renderAll();
}

async function errorMessage(response) {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // no body
  }
  try {
    const body = JSON.parse(text);
    const message = body?.error?.message ?? (typeof body?.detail === "string" ? body.detail : null);
    if (message) return String(message);
  } catch {
    // not JSON: a proxy's page, say
  }
  return t("httpError", { status: `${response.status} ${response.statusText || ""}`.trim() });
}

// Calls the platform API; throws ApiError with a readable message, SessionExpired on a 401.
async function api(path, { method = "GET", body, auth = true, raw = false } = {}) {
  const headers = { Accept: raw ? "text/csv, application/json" : "application/json" };
  const token = state.session?.token;
  if (auth) {
    if (!token) throw new SessionExpired(t("sessionExpired"), 401);
    headers.Authorization = `Bearer ${token}`;
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(t("networkError", { msg: error?.message || String(error) }), 0);
  }
  if (!response.ok) {
    const message = await errorMessage(response);
    if (response.status === 401 && auth) {
      // Only the session that made the call ends: a new sign-in since then stays.
      if (state.session?.token === token) endSession("sessionExpired");
      throw new SessionExpired(message, 401);
    }
    throw new ApiError(message, response.status);
  }
  if (raw) return response;
  try {
    return await response.json();
  } catch {
    throw new ApiError(t("badResponse"), response.status);
  }
}

// ---- loading -------------------------------------------------------------------------------

// The balance and quota cards load alike: `name` is their key in `state` (with `Loading` and
// `Error` beside it); an answer that arrives after a sign-out or a new sign-in is dropped.
async function loadCard(name, path, pick, render) {
  const session = state.session;
  state[`${name}Loading`] = true;
  state[`${name}Error`] = null;
  render();
  try {
    const answer = await api(path);
    if (state.session !== session) return;
    state[name] = pick(answer);
  } catch (error) {
    if (error instanceof SessionExpired || state.session !== session) return;
    state[name] = null;
    state[`${name}Error`] = error.message;
  } finally {
    if (state.session === session) {
      state[`${name}Loading`] = false;
      render();
    }
  }
}

const loadBalance = () => loadCard("balance", "/balance", (answer) => answer, renderBalance);
const loadQuotas = () =>
  loadCard("quotas", "/quotas", (answer) => (Array.isArray(answer?.data) ? answer.data : []), renderQuotas);

function readQuery() {
  const from = $("#from").value.trim();
  const to = $("#to").value.trim();
  const groupBy = $("#group-by").value;
  if (!isDay(from) || !isDay(to)) return { error: "badDate" };
  if (from > to) return { error: "badRange" };
  return { from, to, groupBy };
}

function queryString(query, extra = {}) {
  return new URLSearchParams({ from: query.from, to: query.to, group_by: query.groupBy, ...extra }).toString();
}

async function loadUsage() {
  const query = readQuery();
  const seq = ++state.usageSeq;
  state.usageInvalid = query.error ?? null;
  if (query.error) {
    state.usageLoading = false;
    renderUsage();
    $("#from").focus();
    return;
  }
  rememberQuery(query);
  state.usageLoading = true;
  state.usageError = null;
  renderUsage();
  try {
    const usage = await api(`/usage?${queryString(query)}`);
    if (seq !== state.usageSeq) return;
    state.usage = usage && typeof usage === "object" ? usage : null;
    state.usageQuery = query;
  } catch (error) {
    if (seq !== state.usageSeq || error instanceof SessionExpired) return;
    state.usage = null;
    state.usageQuery = null;
    state.usageError = error.message;
  } finally {
    if (seq === state.usageSeq) {
      state.usageLoading = false;
      renderUsage();
    }
  }
}

function loadAll() {
  return Promise.all([loadBalance(), loadQuotas(), loadUsage()]);
}

// The range and grouping live in the address, so a reload or a shared link shows the same.
function rememberQuery(query) {
  const url = new URL(window.location.href);
  url.search = queryString(query, EMBEDDED ? { embed: "1" } : {});
  try {
    window.history.replaceState(null, "", url);
  } catch {
    // a file:// page, say: nothing to remember
  }
}

function initialQuery() {
  const params = new URLSearchParams(window.location.search);
  const today = isoDay(new Date());
  let from = params.get("from");
  let to = params.get("to");
  if (!isDay(from) || !isDay(to) || from > to) {
    to = today;
    from = addDays(today, -29);
  }
  const groupBy = GROUP_KEYS[params.get("group_by")] ? params.get("group_by") : "day";
  return { from, to, groupBy };
}

async function downloadCsv() {
  if (state.csvBusy) return;
  const button = $("#download-csv");
  const csvError = $("#csv-error");
  showMessage(csvError, null);
  const query = readQuery();
  if (query.error) {
    showMessage(csvError, t("csvFailed", { msg: t(query.error) }));
    return;
  }
  state.csvBusy = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = t("downloading");
  try {
    const response = await api(`/usage?${queryString(query, { format: "csv" })}`, { raw: true });
    const blob = await response.blob();
    const fallback = `usage-${query.from}-${query.to}-${query.groupBy}.csv`;
    const link = element("a", { href: URL.createObjectURL(blob), download: fileName(response, fallback) });
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 30_000);
  } catch (error) {
    if (!(error instanceof SessionExpired)) showMessage(csvError, t("csvFailed", { msg: error.message }));
  } finally {
    state.csvBusy = false;
    button.removeAttribute("aria-busy");
    button.textContent = t("downloadCsv");
  }
}

function fileName(response, fallback) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename\*=(?:UTF-8'')?([^;]+)|filename="?([^";]+)"?/i.exec(disposition);
  let name = match ? (match[1] ?? match[2]).trim().replace(/^"|"$/g, "") : "";
  try {
    name = decodeURIComponent(name);
  } catch {
    // keep it as sent
  }
  name = name.replace(/[\\/:*?"<>|\u0000-\u001f]/g, "_");
  return name || fallback;
}

// ---- rendering -----------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("pageTitle");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-aria-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  }
  const switcher = $("#lang-switch");
  switcher.textContent = t("switchLang");
  switcher.lang = state.lang === "zh" ? "en" : "zh-CN";
  switcher.setAttribute("aria-label", t("switchLangLabel"));
  if (state.csvBusy) $("#download-csv").textContent = t("downloading");
}

function showView() {
  const signedIn = Boolean(state.session);
  $("#boot").hidden = true;
  $("#signin-view").hidden = signedIn;
  $("#usage-view").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
  const who = $("#who");
  who.hidden = !(signedIn && state.session.email);
}

function renderAll() {
  applyLanguage();
  renderHeader();
  renderSignIn();
  renderBalance();
  renderQuotas();
  renderUsage();
}

function renderHeader() {
  const who = $("#who");
  who.textContent = state.session?.email ? t("signedInAs", { email: state.session.email }) : "";
}

function renderSignIn() {
  showMessage($("#signin-notice"), state.notice ? t(state.notice) : null);
}

function renderBalance() {
  const balance = state.balance;
  const currency = balance?.currency;
  const amount = $("#balance-amount");
  $("#balance-card").setAttribute("aria-busy", String(state.balanceLoading));
  if (balance) {
    amount.textContent = formatMoney(balance.balance, currency);
    amount.classList.toggle("negative", toNumber(balance.balance) < 0);
  } else {
    amount.textContent = state.balanceLoading ? t("loading") : "—";
    amount.classList.remove("negative");
  }
  $("#balance-credits").textContent = balance ? formatMoney(balance.credits, currency) : "—";
  $("#balance-charges").textContent = balance ? formatMoney(balance.charges, currency) : "—";
  $("#balance-currency").textContent = currency || "—";
  showMessage($("#balance-error"), state.balanceError && t("couldNotLoad", { msg: state.balanceError }));
}

function quotaLabel(resource) {
  if (resource === "tokens_per_day") return t("quotaTokens");
  if (resource === "storage_bytes") return t("quotaStorage");
  if (typeof resource === "string" && resource.startsWith("gpu:")) return t("quotaGpu", { type: resource.slice(4) });
  return String(resource ?? "");
}

function quotaValue(resource, value) {
  return resource === "storage_bytes" ? formatBytes(value) : formatNumber(value);
}

function renderQuotas() {
  const list = $("#quota-list");
  $("#quotas-card").setAttribute("aria-busy", String(state.quotasLoading));
  list.replaceChildren();
  const quotas = state.quotas ?? [];
  quotas.forEach((quota, index) => {
    const used = toNumber(quota.used);
    const limit = toNumber(quota.limit);
    const limited = Number.isFinite(limit) && limit >= 0;
    const usedText = quotaValue(quota.resource, Number.isFinite(used) ? used : 0);
    const valueText = limited
      ? t("usedOfLimit", { used: usedText, limit: quotaValue(quota.resource, limit) })
      : t("noLimit", { used: usedText });
    const share = !limited ? 0 : limit > 0 ? Math.min(1, Math.max(0, used / limit) || 0) : used > 0 ? 1 : 0;
    const nameId = `quota-name-${index}`;
    const item = element(
      "li",
      { className: "quota" },
      element(
        "div",
        { className: "quota-head" },
        element("span", { className: "quota-name", id: nameId }, quotaLabel(quota.resource)),
        element("span", { className: "quota-value" }, valueText),
      ),
    );
    if (limited) {
      const fill = element("div", { className: "bar-fill" });
      fill.style.width = `${(share * 100).toFixed(1)}%`;
      const level = share >= 0.9 ? "full" : share >= 0.75 ? "high" : "ok";
      item.append(
        element(
          "div",
          {
            className: `bar ${level}`,
            role: "progressbar",
            "aria-labelledby": nameId,
            "aria-valuemin": 0,
            "aria-valuemax": Math.max(limit, 0),
            "aria-valuenow": Number.isFinite(used) ? Math.min(used, Math.max(limit, 0)) : 0,
            "aria-valuetext": valueText,
          },
          fill,
        ),
      );
    }
    if (quota.resets_at) {
      item.append(element("p", { className: "quota-reset muted small" }, t("resetsAt", { time: formatTime(quota.resets_at) })));
    }
    list.append(item);
  });
  if (state.quotasLoading && !state.quotas) list.append(element("li", { className: "muted" }, t("loading")));
  $("#quotas-empty").hidden = !(state.quotas && state.quotas.length === 0);
  showMessage($("#quotas-error"), state.quotasError && t("couldNotLoad", { msg: state.quotasError }));
}

function groupLabel(line, groupBy) {
  if (groupBy === "key" && line?.key_name) return String(line.key_name);
  return line?.group ? String(line.group) : t("none");
}

function renderUsage() {
  const usage = state.usage;
  const query = state.usageQuery;
  const groupBy = usage?.group_by && GROUP_KEYS[usage.group_by] ? usage.group_by : query?.groupBy ?? "day";
  const lines = Array.isArray(usage?.data) ? usage.data : [];
  const currency = usage?.currency;
  $("#usage-section").setAttribute("aria-busy", String(state.usageLoading));
  showMessage(
    $("#usage-error"),
    (state.usageInvalid && t(state.usageInvalid)) || (state.usageError && t("couldNotLoad", { msg: state.usageError })),
  );

  const columns = [
    GROUP_COLUMNS[state.lang][groupBy],
    t("requests"),
    t("inputTokens"),
    t("outputTokens"),
    t("gpuHours"),
    `${t("cost")}${currency ? ` (${currency})` : ""}`,
  ];
  $("#usage-head").replaceChildren(
    ...columns.map((name, index) => element("th", { scope: "col", className: index ? "num" : null }, name)),
  );
  $("#usage-caption").textContent = query
    ? t("tableCaption", { group: GROUP_NAMES[state.lang][groupBy], from: query.from, to: query.to })
    : t("usageTitle");

  const row = (line, header) =>
    element(
      "tr",
      {},
      header,
      element("td", { className: "num" }, formatNumber(line?.requests)),
      element("td", { className: "num" }, formatNumber(line?.input_tokens)),
      element("td", { className: "num" }, formatNumber(line?.output_tokens)),
      element("td", { className: "num" }, formatNumber(gpuHours(line), 3)),
      element("td", { className: "num" }, formatMoney(line?.cost, currency)),
    );
  const body = $("#usage-body");
  if (!usage) {
    const text = state.usageLoading ? t("loading") : "—";
    body.replaceChildren(element("tr", {}, element("td", { colspan: columns.length, className: "muted" }, text)));
  } else if (lines.length === 0) {
    body.replaceChildren(element("tr", {}, element("td", { colspan: columns.length, className: "muted" }, t("noUsage"))));
  } else {
    body.replaceChildren(
      ...lines.map((line) => {
        const header = element("th", { scope: "row" }, groupLabel(line, groupBy));
        if (groupBy === "key" && line.key_name && line.group) {
          header.append(element("span", { className: "muted small key-id" }, line.group));
        }
        return row(line, header);
      }),
    );
  }
  $("#usage-foot").replaceChildren(
    ...(usage?.total ? [row(usage.total, element("th", { scope: "row" }, t("total")))] : []),
  );
  $("#storage-used").textContent = usage ? formatBytes(usage.storage_bytes) : "—";
  $("#usage-status").textContent = state.usageLoading
    ? t("loading")
    : usage
      ? t("loadedLines", { count: lines.length })
      : "";
  renderCharts(groupBy, lines, currency);
}

// ---- charts --------------------------------------------------------------------------------

function destroyCharts() {
  for (const name of Object.keys(charts)) {
    charts[name]?.destroy();
    charts[name] = null;
  }
}

// The lines a chart shows: by day, every day of the range (a day without usage is a zero, not a gap).
function chartLines(groupBy, lines) {
  const query = state.usageQuery;
  if (groupBy !== "day" || !query) return lines;
  const byDay = new Map(lines.map((line) => [String(line.group), line]));
  const range = daysBetween(query.from, query.to);
  if (range.length > MAX_FILLED_DAYS) return lines;
  const days = [...new Set([...range, ...byDay.keys()])].sort();
  return days.map((day) => byDay.get(day) ?? { group: day, requests: 0, input_tokens: 0, output_tokens: 0, gpu_seconds: 0, cost: 0 });
}

function renderCharts(groupBy, lines, currency) {
  const area = $("#charts");
  const message = $("#chart-message");
  if (!state.usage || lines.length === 0) {
    destroyCharts();
    area.hidden = true;
    showMessage(message, null);
    return;
  }
  const Chart = window.Chart;
  if (typeof Chart !== "function") {
    destroyCharts();
    area.hidden = true;
    showMessage(message, t("chartMissing"));
    return;
  }
  area.hidden = false;
  showMessage(message, null);
  const shown = chartLines(groupBy, lines);
  const labels = shown.map((line) => groupLabel(line, groupBy));
  const values = (pick) => shown.map((line) => {
    const value = pick(line);
    return Number.isFinite(value) ? value : 0;
  });
  const reduceMotion = window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;
  const options = (formatValue) => ({
    responsive: true,
    maintainAspectRatio: false,
    locale: locale(),
    animation: reduceMotion ? false : { duration: 300 },
    interaction: { mode: "index", intersect: false },
    plugins: {
      legend: { display: false },
      tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${formatValue(item.parsed.y)}` } },
    },
    scales: { x: { ticks: { autoSkip: true, maxRotation: 60 } }, y: { beginAtZero: true } },
  });
  try {
    destroyCharts();
    charts.cost = new Chart($("#cost-chart"), {
      type: "bar",
      data: {
        labels,
        datasets: [{ label: t("cost"), data: values((line) => toNumber(line.cost)), backgroundColor: COLORS.cost }],
      },
      options: options((value) => formatMoney(value, currency)),
    });
    const second =
      state.secondMetric === "gpu"
        ? {
            datasets: [{ label: t("gpuHours"), data: values(gpuHours), backgroundColor: COLORS.gpu }],
            format: (value) => formatNumber(value, 3),
          }
        : {
            datasets: [
              { label: t("inputTokens"), data: values((line) => toNumber(line.input_tokens)), backgroundColor: COLORS.input },
              { label: t("outputTokens"), data: values((line) => toNumber(line.output_tokens)), backgroundColor: COLORS.output },
            ],
            format: (value) => formatNumber(value),
          };
    const secondOptions = options(second.format);
    secondOptions.plugins.legend = { display: second.datasets.length > 1, position: "bottom" };
    charts.second = new Chart($("#second-chart"), {
      type: "bar",
      data: { labels, datasets: second.datasets },
      options: secondOptions,
    });
  } catch (error) {
    destroyCharts();
    area.hidden = true;
    showMessage(message, t("chartFailed", { msg: error?.message || String(error) }));
  }
}

function renderToggle() {
  for (const button of document.querySelectorAll(".toggle-button")) {
    button.setAttribute("aria-pressed", String(button.dataset.metric === state.secondMetric));
  }
}

// ---- events --------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const email = $("#email").value.trim();
  const password = $("#password").value;
  const submit = $("#signin-submit");
  const errorBox = $("#signin-error");
  if (form.dataset.busy) return;
  showMessage(errorBox, null);
  form.dataset.busy = "1";
  submit.setAttribute("aria-busy", "true");
  submit.textContent = t("signingIn");
  try {
    const answer = await api("/auth/login", { method: "POST", body: { email, password }, auth: false });
    if (!answer || typeof answer.access_token !== "string") throw new ApiError(t("badResponse"), 200);
    const expiresIn = toNumber(answer.expires_in);
    saveSession({
      token: answer.access_token,
      email,
      expiresAt: Number.isFinite(expiresIn) && expiresIn > 0 ? Date.now() + expiresIn * 1000 : null,
    });
    $("#password").value = "";
    store.set(EMAIL_KEY, email);
    state.notice = null;
    showView();
    renderAll();
    $("#usage-heading").focus();
    loadAll();
  } catch (error) {
    showMessage(errorBox, error.message);
  } finally {
    delete form.dataset.busy;
    submit.removeAttribute("aria-busy");
    submit.textContent = t("signIn");
  }
}

function signOut() {
  endSession("signedOut");
  $("#email").focus();
}

function switchLanguage() {
  state.lang = state.lang === "zh" ? "en" : "zh";
  store.set(LANG_KEY, state.lang);
  renderAll();
}

function start() {
  document.documentElement.classList.toggle("embedded", EMBEDDED);
  const stored = store.get(SESSION_KEY);
  state.session = readSession();
  if (stored !== null && !state.session) state.notice = "sessionExpired";
  $("#email").value = store.get(EMAIL_KEY) ?? "";
  const query = initialQuery();
  $("#from").value = query.from;
  $("#to").value = query.to;
  $("#group-by").value = query.groupBy;

  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", signOut);
  $("#lang-switch").addEventListener("click", switchLanguage);
  $("#range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadUsage();
  });
  $("#group-by").addEventListener("change", () => loadUsage());
  $("#download-csv").addEventListener("click", downloadCsv);
  for (const button of document.querySelectorAll(".toggle-button")) {
    button.addEventListener("click", () => {
      state.secondMetric = button.dataset.metric;
      renderToggle();
      renderUsage();
    });
  }
  // Another tab signed in or out.
  window.addEventListener("storage", (event) => {
    if (event.key !== SESSION_KEY) return;
    const session = readSession();
    if (session?.token === state.session?.token) return;
    if (!session) {
      endSession("signedOut");
      return;
    }
    state.session = session;
    state.notice = null;
    showView();
    renderAll();
    loadAll();
  });

  renderToggle();
  showView();
  renderAll();
  if (state.session) loadAll();
  else ($("#email").value ? $("#password") : $("#email")).focus({ preventScroll: true });
}

// Whatever fails, the page says so rather than going blank.
function reportUnexpected(error) {
  const text = error?.message || String(error ?? "");
  showMessage($("#page-error"), t("unexpected", { msg: text }));
  $("#boot").hidden = true;
}
window.addEventListener("error", (event) => reportUnexpected(event.error ?? event.message));
window.addEventListener("unhandledrejection", (event) => reportUnexpected(event.reason));

try {
  start();
} catch (error) {
  reportUnexpected(error);
}
