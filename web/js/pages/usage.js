// #/usage: balance, quotas and usage. The page is usage.html (kept working on its own), shown
// here in a frame: it shares the console's session and language through localStorage, and its
// own header is hidden ("?embed=1"). The frame grows with its content, so only the console scrolls.

import { t } from "../i18n.js";
import { h } from "../ui.js";

export const strings = {
  en: { "usage.nav": "Usage", "usage.title": "Usage and balance", "usage.open": "Open the usage page on its own" },
  zh: { "usage.nav": "用量", "usage.title": "用量与余额", "usage.open": "在单独页面中打开用量" },
};

export const nav = { path: "/usage", label: "usage.nav" };
export const routes = [{ path: "/usage", render }];

function render(root) {
  const frame = h("iframe", { src: "/usage.html?embed=1", class: "embedded-page", title: t("usage.title"), id: "usage-frame" });
  let observer = null;
  const fit = () => {
    const body = frame.contentDocument?.body;
    if (body) frame.style.height = `${body.scrollHeight + 16}px`;
  };
  frame.addEventListener("load", () => {
    const body = frame.contentDocument?.body;
    if (!body) return;
    fit();
    observer = new ResizeObserver(fit);
    observer.observe(body);
  });
  root.append(
    h("p", { class: "small" }, h("a", { href: "/usage.html", target: "_blank", rel: "noopener" }, t("usage.open"))),
    frame,
  );
  return () => observer?.disconnect();
}
