// #/keys: the user's API keys: list, create (the secret shown once, with a copy button), revoke.

import { api } from "../api.js";
import { t } from "../i18n.js";
import { copyButton, errorBox, field, formatTime, h, loading, showError, statusBadge, table } from "../ui.js";

export const strings = {
  en: {
    "keys.nav": "API keys",
    "keys.title": "API keys",
    "keys.intro": "Keys let programs call the API (base_url {url}/v1) on your behalf.",
    "keys.name": "Name",
    "keys.nameHelp": "A label to recognise the key by, such as the laptop or service that uses it.",
    "keys.create": "Create key",
    "keys.creating": "Creating…",
    "keys.created": "Your new key “{name}”. Copy it now: it is shown only this once.",
    "keys.prefix": "Key",
    "keys.createdAt": "Created",
    "keys.lastUsed": "Last used",
    "keys.status": "Status",
    "keys.active": "active",
    "keys.revoked": "revoked",
    "keys.never": "never",
    "keys.revoke": "Revoke",
    "keys.revokeNamed": "Revoke key {name}",
    "keys.confirmRevoke": "Revoke the key “{name}”? Programs using it stop working at once.",
    "keys.none": "You have no API keys yet.",
  },
  zh: {
    "keys.nav": "API 密钥",
    "keys.title": "API 密钥",
    "keys.intro": "程序可以用密钥代表您调用 API（base_url 为 {url}/v1）。",
    "keys.name": "名称",
    "keys.nameHelp": "用于识别密钥的标签，例如使用它的电脑或服务。",
    "keys.create": "创建密钥",
    "keys.creating": "正在创建…",
    "keys.created": "新密钥“{name}”已创建。请立即复制：它只显示这一次。",
    "keys.prefix": "密钥",
    "keys.createdAt": "创建时间",
    "keys.lastUsed": "最近使用",
    "keys.status": "状态",
    "keys.active": "有效",
    "keys.revoked": "已吊销",
    "keys.never": "从未使用",
    "keys.revoke": "吊销",
    "keys.revokeNamed": "吊销密钥 {name}",
    "keys.confirmRevoke": "确定吊销密钥“{name}”吗？使用它的程序将立即失效。",
    "keys.none": "您还没有 API 密钥。",
  },
};

export const nav = { path: "/keys", label: "keys.nav" };
export const routes = [{ path: "/keys", render }];

function render(root) {
  const name = h("input", { id: "key-name", maxlength: "128", required: true, autocomplete: "off" });
  const createButton = h("button", { type: "submit", id: "key-create", class: "primary" }, t("keys.create"));
  const formErrors = h("div", { class: "form-errors" });
  const created = h("div", { id: "key-created", "aria-live": "polite" });
  const list = h("div", { id: "key-list" });

  const load = async () => {
    list.replaceChildren(loading());
    try {
      const answer = await api("/api-keys");
      const keys = Array.isArray(answer?.data) ? answer.data : [];
      list.replaceChildren(keysTable(keys));
    } catch (error) {
      showError(list, error, load);
    }
  };

  const keysTable = (keys) =>
    table(
      [
        { label: t("keys.name"), value: (key) => key.name },
        { label: t("keys.prefix"), value: (key) => h("code", {}, `${key.prefix}…`) },
        { label: t("keys.createdAt"), value: (key) => formatTime(key.created_at) },
        { label: t("keys.lastUsed"), value: (key) => (key.last_used_at ? formatTime(key.last_used_at) : t("keys.never")) },
        {
          label: t("keys.status"),
          value: (key) => (key.revoked_at ? statusBadge("revoked") : statusBadge("active")),
        },
        {
          label: "",
          value: (key) =>
            key.revoked_at
              ? null
              : h(
                  "button",
                  {
                    type: "button",
                    class: "danger revoke",
                    "data-key-id": key.id,
                    "aria-label": t("keys.revokeNamed", { name: key.name }),
                    onClick: (event) => revoke(event.currentTarget, key),
                  },
                  t("keys.revoke"),
                ),
        },
      ],
      keys,
      { empty: t("keys.none") },
    );

  const revoke = async (button, key) => {
    if (!window.confirm(t("keys.confirmRevoke", { name: key.name }))) return;
    button.disabled = true;
    try {
      await api(`/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      await load();
    } catch (error) {
      button.disabled = false;
      list.prepend(errorBox(error));
    }
  };

  const form = h(
    "form",
    { class: "stack", novalidate: true },
    field(t("keys.name"), name, t("keys.nameHelp")),
    formErrors,
    h("div", { class: "actions" }, createButton),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (createButton.disabled) return;
    formErrors.replaceChildren();
    createButton.disabled = true;
    createButton.textContent = t("keys.creating");
    try {
      const key = await api("/api-keys", { method: "POST", json: { name: name.value.trim() } });
      created.replaceChildren(
        h(
          "div",
          { class: "success" },
          h("p", {}, t("keys.created", { name: key.name })),
          h("div", { class: "secret" }, h("code", { id: "new-key-secret" }, key.key), copyButton(key.key)),
        ),
      );
      name.value = "";
      await load();
    } catch (error) {
      formErrors.replaceChildren(errorBox(error));
    } finally {
      createButton.disabled = false;
      createButton.textContent = t("keys.create");
    }
  });

  root.append(
    h("h1", {}, t("keys.title")),
    h("p", { class: "muted" }, t("keys.intro", { url: window.location.origin })),
    h("section", { class: "card" }, form, created),
    list,
  );
  load();
}
