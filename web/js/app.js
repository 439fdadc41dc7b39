// The console's shell: loads the page modules, routes on location.hash, guards sign-in and draws
// the header (nav, language switch, sign-out).

import { session } from "./api.js";
import { language, locale, registerStrings, setLanguage, t } from "./i18n.js";
import { errorBox, h } from "./ui.js";

// Each names web/js/pages/<name>.js; one that does not exist (yet) is skipped.
const PAGES = [
  "auth",
  "keys",
  "models",
  "datasets",
  "fine_tunes",
  "jobs",
  "gpus",
  "deployments",
  "chat",
  "knowledge_bases",
  "instances",
  "usage",
];

registerStrings({
  en: {
    "app.title": "Suanli console",
    "app.brand": "Suanli",
    "app.menu": "Menu",
    "app.nav": "Main",
    "app.switchLang": "中文",
    "app.switchLangLabel": "切换到中文 (switch to Chinese)",
    "app.signOut": "Sign out",
    "app.signedInAs": "Signed in as {email}",
    "app.notFound": "There is no page at {path}.",
    "app.home": "Go to the start page",
    "app.pageFailed": "This page could not be shown: {msg}",
    "app.skip": "Skip to content",
  },
  zh: {
    "app.title": "算力控制台",
    "app.brand": "算力",
    "app.menu": "菜单",
    "app.nav": "主导航",
    "app.switchLang": "English",
    "app.switchLangLabel": "Switch to English（切换到英文）",
    "app.signOut": "退出登录",
    "app.signedInAs": "当前账户：{email}",
    "app.notFound": "页面 {path} 不存在。",
    "app.home": "返回首页",
    "app.pageFailed": "页面无法显示：{msg}",
    "app.skip": "跳到正文",
  },
});

const routes = []; // {path, render, public, segments}
const navEntries = [];
let cleanup = null;
let mountSeq = 0;

async function loadPages() {
  const modules = await Promise.all(
    PAGES.map((name) =>
      import(`./pages/${name}.js`).catch((error) => {
        // A page not written yet is simply absent; a broken one says why in the console log.
        console.warn(`console page ${name} not loaded:`, error);
        return null;
      }),
    ),
  );
  for (const module of modules) {
    if (!module) continue;
    if (module.strings) registerStrings(module.strings);
    if (module.nav) navEntries.push(module.nav);
    for (const route of module.routes ?? []) routes.push({ ...route, segments: splitPath(route.path) });
  }
}

function splitPath(path) {
  return path.split("/").filter(Boolean);
}

// "#/fine-tunes/ftjob-1?x=1" -> {path: "/fine-tunes/ftjob-1", query}
function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?", 2);
  const params = new URLSearchParams(search);
  // Both query.get("model") and query.model work.
  for (const [key, value] of params) if (!(key in params)) params[key] = value;
  return { path: path || "/", query: params };
}

// The route that matches with the most literal segments ("/fine-tunes/new" over "/fine-tunes/:id");
// ":name*" as the last segment takes the rest of the path (model ids hold "/").
function match(path) {
  const parts = splitPath(path);
  let best = null;
  for (const route of routes) {
    const params = {};
    let literal = 0;
    let ok = true;
    const segs = route.segments;
    for (let i = 0; i < segs.length && ok; i += 1) {
      const seg = segs[i];
      if (seg.startsWith(":") && seg.endsWith("*") && i === segs.length - 1) {
        if (i >= parts.length) ok = false;
        else params[seg.slice(1, -1)] = parts.slice(i).map(decodeURIComponent).join("/");
        i = parts.length;
        break;
      }
      if (i >= parts.length) ok = false;
      else if (seg.startsWith(":")) params[seg.slice(1)] = decodeURIComponent(parts[i]);
      else if (seg === parts[i]) literal += 1;
      else ok = false;
    }
    const rest = segs.length && segs[segs.length - 1].endsWith("*");
    if (ok && (rest || segs.length === parts.length) && (!best || literal > best.literal)) {
      best = { route, params, literal };
    }
  }
  return best;
}

function homePath() {
  const preferred = ["/models", "/fine-tunes", "/keys"];
  for (const path of preferred) if (navEntries.some((entry) => entry.path === path)) return path;
  return navEntries[0]?.path ?? "/login";
}

function renderHeader(activePath) {
  const signedIn = Boolean(session.token);
  document.title = t("app.title");
  document.documentElement.lang = locale();
  document.getElementById("brand").textContent = t("app.brand");
  document.getElementById("skip-link").textContent = t("app.skip");
  const nav = document.getElementById("nav");
  nav.setAttribute("aria-label", t("app.nav"));
  nav.hidden = !signedIn;
  const toggle = document.getElementById("nav-toggle");
  toggle.textContent = t("app.menu");
  toggle.hidden = !signedIn;
  const list = document.getElementById("nav-list");
  list.replaceChildren(
    ...navEntries.map((entry) => {
      const active = activePath === entry.path || activePath.startsWith(`${entry.path}/`);
      return h(
        "li",
        {},
        h("a", { href: `#${entry.path}`, "aria-current": active ? "page" : null }, t(entry.label)),
      );
    }),
  );
  const lang = document.getElementById("lang-switch");
  lang.textContent = t("app.switchLang");
  lang.setAttribute("aria-label", t("app.switchLangLabel"));
  lang.lang = language() === "zh" ? "en" : "zh-CN";
  const who = document.getElementById("who");
  who.textContent = signedIn && session.email ? t("app.signedInAs", { email: session.email }) : "";
  who.hidden = !signedIn;
  const signOut = document.getElementById("sign-out");
  signOut.textContent = t("app.signOut");
  signOut.hidden = !signedIn;
}

function closeNav() {
  document.getElementById("nav-toggle").setAttribute("aria-expanded", "false");
  document.body.classList.remove("nav-open");
}

function runCleanup() {
  const previous = cleanup;
  cleanup = null;
  if (typeof previous === "function") {
    try {
      previous();
    } catch (error) {
      console.warn("page cleanup failed:", error);
    }
  }
}

async function route() {
  const seq = ++mountSeq;
  const { path, query } = parseHash();
  closeNav();
  if (path === "/") {
    window.location.replace(`#${session.token ? homePath() : "/login"}`);
    return;
  }
  const found = match(path);
  if (found && !found.route.public && !session.token) {
    const next = encodeURIComponent(window.location.hash);
    window.location.replace(`#/login?next=${next}`);
    return;
  }
  runCleanup();
  renderHeader(path);
  window.scrollTo(0, 0);
  const root = document.getElementById("page");
  root.replaceChildren();
  root.removeAttribute("aria-busy");
  if (!found) {
    root.append(
      h("h1", {}, t("app.title")),
      errorBox(t("app.notFound", { path })),
      h("p", {}, h("a", { href: "#/" }, t("app.home"))),
    );
    return;
  }
  try {
    const result = await found.route.render(root, found.params, query);
    if (seq !== mountSeq) {
      // Another page was asked for while this one loaded: this one's cleanup runs now.
      if (typeof result === "function") result();
      return;
    }
    cleanup = result;
    // Keyboard and screen-reader users land on the new page, not on the link they left.
    if (!root.contains(document.activeElement)) root.focus({ preventScroll: true });
  } catch (error) {
    if (seq !== mountSeq) return;
    root.append(errorBox(t("app.pageFailed", { msg: error?.message || String(error) }), () => route()));
  }
}

function showUnexpected(error) {
  if (error?.name === "AbortError") return;
  const banner = document.getElementById("app-error");
  banner.replaceChildren(errorBox(error));
  banner.hidden = false;
}

async function start() {
  window.addEventListener("error", (event) => showUnexpected(event.error ?? event.message));
  window.addEventListener("unhandledrejection", (event) => showUnexpected(event.reason));
  await loadPages();
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault(); // "#page" is no route: focus the page instead
    document.getElementById("page").focus();
  });
  document.getElementById("lang-switch").addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh");
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    session.clear();
    window.location.hash = "#/login";
  });
  document.getElementById("nav-toggle").addEventListener("click", (event) => {
    const open = event.currentTarget.getAttribute("aria-expanded") !== "true";
    event.currentTarget.setAttribute("aria-expanded", String(open));
    document.body.classList.toggle("nav-open", open);
  });
  // A new language redraws the header and the page.
  window.addEventListener("suanli:language", () => route());
  window.addEventListener("suanli:session", () => renderHeader(parseHash().path));
  // Another tab signed out.
  window.addEventListener("storage", (event) => {
    if (event.key === "suanli.session" && !session.token) route();
  });
  window.addEventListener("hashchange", () => {
    document.getElementById("app-error").hidden = true;
    route();
  });
  await route();
}

start().catch(showUnexpected);
