// #/models: base models, fine-tunes and adapters with their details; fine-tune, deploy or
// download one. #/models/<id>: one model's facts and files.

import { api } from "../api.js";
import { t } from "../i18n.js";
import { errorBox, formatBytes, formatNumber, formatTime, h, loading, showError, statusBadge, table } from "../ui.js";

export const strings = {
  en: {
    "models.nav": "Models",
    "models.title": "Models",
    "models.base": "Base models",
    "models.fineTuned": "Fine-tuned models",
    "models.adapters": "Adapters",
    "models.embedding": "Embedding models",
    "models.artifact": "Other artifacts",
    "models.none": "None yet.",
    "models.id": "Model",
    "models.kind": "Kind",
    "models.state": "State",
    "models.architecture": "Architecture",
    "models.parameters": "Parameters",
    "models.context": "Context length",
    "models.size": "Size",
    "models.visibility": "Visibility",
    "models.owner": "Owner",
    "models.system": "platform",
    "models.you": "you",
    "models.baseModel": "Base model",
    "models.source": "Source",
    "models.created": "Created",
    "models.default": "default chat model",
    "models.error": "Registration failed: {msg}",
    "models.actions": "Actions",
    "models.fineTune": "Fine-tune",
    "models.deploy": "Deploy",
    "models.download": "Download",
    "models.downloading": "Downloading…",
    "models.downloadAll": "Download all (tar)",
    "models.files": "Files",
    "models.path": "Path",
    "models.back": "All models",
    "models.details": "Details",
  },
  zh: {
    "models.nav": "模型",
    "models.title": "模型",
    "models.base": "基础模型",
    "models.fineTuned": "微调模型",
    "models.adapters": "适配器",
    "models.embedding": "向量模型",
    "models.artifact": "其他产物",
    "models.none": "暂无。",
    "models.id": "模型",
    "models.kind": "类型",
    "models.state": "状态",
    "models.architecture": "架构",
    "models.parameters": "参数量",
    "models.context": "上下文长度",
    "models.size": "大小",
    "models.visibility": "可见性",
    "models.owner": "所有者",
    "models.system": "平台",
    "models.you": "我",
    "models.baseModel": "基础模型",
    "models.source": "来源",
    "models.created": "创建时间",
    "models.default": "默认对话模型",
    "models.error": "注册失败：{msg}",
    "models.actions": "操作",
    "models.fineTune": "微调",
    "models.deploy": "部署",
    "models.download": "下载",
    "models.downloading": "正在下载…",
    "models.downloadAll": "全部下载（tar）",
    "models.files": "文件",
    "models.path": "路径",
    "models.back": "全部模型",
    "models.details": "详情",
  },
};

export const nav = { path: "/models", label: "models.nav" };
export const routes = [
  { path: "/models", render: list },
  { path: "/models/:id*", render: detail },
];

const SECTIONS = [
  { kinds: ["base"], title: "models.base" },
  { kinds: ["fine_tuned"], title: "models.fineTuned" },
  { kinds: ["adapter"], title: "models.adapters" },
  { kinds: ["embedding"], title: "models.embedding" },
  { kinds: ["artifact"], title: "models.artifact" },
];
const FINE_TUNABLE = ["base", "fine_tuned"];
const DEPLOYABLE = ["base", "fine_tuned", "adapter", "embedding"];

// Model ids hold "/" and ":"; the API's routes take them as a path.
function apiPath(id) {
  return `/models/${id.split("/").map(encodeURIComponent).join("/")}`;
}

function detailHref(id) {
  return `#/models/${encodeURIComponent(id)}`;
}

function parameters(count) {
  const n = Number(count);
  if (!Number.isFinite(n) || n <= 0) return "—";
  if (n >= 1e9) return `${formatNumber(n / 1e9, 1)}B`;
  if (n >= 1e6) return `${formatNumber(n / 1e6, 1)}M`;
  return formatNumber(n);
}

// Fetches with the session's token (a plain link would carry none) and hands the file over.
async function download(button, model, path = null, errors) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = t("models.downloading");
  try {
    const query = path ? `?path=${encodeURIComponent(path)}` : "";
    const response = await api(`${apiPath(model.id)}/download${query}`, { raw: true, headers: { Accept: "*/*" } });
    const blob = await response.blob();
    const fallback = path ? path.split("/").pop() : `${model.id.replaceAll("/", "_")}.tar`;
    const link = h("a", { href: URL.createObjectURL(blob), download: fallback, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  } catch (error) {
    errors.replaceChildren(errorBox(error));
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

function actions(model, errors) {
  const ready = model.state === "ready";
  const id = encodeURIComponent(model.id);
  return h(
    "div",
    { class: "actions" },
    ready && FINE_TUNABLE.includes(model.kind)
      ? h("a", { class: "button", href: `#/fine-tunes/new?model=${id}`, "data-action": "fine-tune" }, t("models.fineTune"))
      : null,
    ready && DEPLOYABLE.includes(model.kind)
      ? h("a", { class: "button", href: `#/deployments/new?model=${id}`, "data-action": "deploy" }, t("models.deploy"))
      : null,
    ready
      ? h(
          "button",
          { type: "button", "data-action": "download", onClick: (event) => download(event.currentTarget, model, null, errors) },
          t("models.download"),
        )
      : null,
  );
}

function ownerText(model) {
  return model.owner === "system" ? t("models.system") : t("models.you");
}

function list(root) {
  const content = h("div");
  const errors = h("div");
  root.append(h("h1", {}, t("models.title")), errors, content);
  const load = async () => {
    content.replaceChildren(loading());
    let models;
    try {
      const answer = await api("/models");
      models = Array.isArray(answer?.data) ? answer.data : [];
    } catch (error) {
      showError(content, error, load);
      return;
    }
    const columns = [
      {
        label: t("models.id"),
        value: (m) =>
          h(
            "div",
            {},
            h("a", { href: detailHref(m.id), class: "model-link" }, m.id),
            m.is_default ? h("div", { class: "small muted" }, t("models.default")) : null,
            m.error ? h("div", { class: "small error-text" }, t("models.error", { msg: m.error })) : null,
          ),
      },
      { label: t("models.state"), value: (m) => statusBadge(m.state) },
      { label: t("models.architecture"), value: (m) => m.architecture || "—" },
      { label: t("models.parameters"), value: (m) => parameters(m.parameter_count), class: "num" },
      { label: t("models.context"), value: (m) => (m.context_length ? formatNumber(m.context_length) : "—"), class: "num" },
      { label: t("models.size"), value: (m) => formatBytes(m.size_bytes), class: "num" },
      { label: t("models.owner"), value: ownerText },
      { label: t("models.actions"), value: (m) => actions(m, errors) },
    ];
    const sections = SECTIONS.map((section) => {
      const rows = models.filter((m) => section.kinds.includes(m.kind));
      if (!rows.length && !["base", "fine_tuned", "adapter"].includes(section.kinds[0])) return null;
      const withBase = section.kinds[0] === "base" ? columns : [
        ...columns.slice(0, 1),
        { label: t("models.baseModel"), value: (m) => (m.base_model_id ? h("a", { href: detailHref(m.base_model_id) }, m.base_model_id) : "—") },
        ...columns.slice(1),
      ];
      return h(
        "section",
        { class: "models-section", "data-kind": section.kinds[0] },
        h("h2", {}, t(section.title)),
        table(withBase, rows, { empty: t("models.none") }),
      );
    });
    content.replaceChildren(...sections.filter(Boolean));
  };
  load();
}

function detail(root, params) {
  const id = params.id;
  const content = h("div");
  const errors = h("div");
  root.append(h("p", {}, h("a", { href: "#/models" }, `← ${t("models.back")}`)), h("h1", { class: "mono" }, id), errors, content);
  const load = async () => {
    content.replaceChildren(loading());
    let model;
    let files;
    try {
      [model, files] = await Promise.all([api(apiPath(id)), api(`${apiPath(id)}/files`).catch((error) => error)]);
    } catch (error) {
      showError(content, error, load);
      return;
    }
    const fact = (label, value) => h("div", {}, h("dt", {}, label), h("dd", {}, value));
    const facts = h(
      "dl",
      { class: "facts" },
      fact(t("models.kind"), model.kind),
      fact(t("models.state"), statusBadge(model.state)),
      fact(t("models.architecture"), model.architecture || "—"),
      fact(t("models.parameters"), parameters(model.parameter_count)),
      fact(t("models.context"), model.context_length ? formatNumber(model.context_length) : "—"),
      fact(t("models.size"), formatBytes(model.size_bytes)),
      fact(t("models.visibility"), model.visibility),
      fact(t("models.owner"), ownerText(model)),
      model.base_model_id ? fact(t("models.baseModel"), h("a", { href: detailHref(model.base_model_id) }, model.base_model_id)) : null,
      fact(t("models.source"), h("span", { class: "mono" }, model.source || "—")),
      fact(t("models.created"), formatTime(model.created_at)),
    );
    const filesPart =
      files instanceof Error
        ? errorBox(files)
        : table(
            [
              { label: t("models.path"), value: (f) => h("span", { class: "mono" }, f.path) },
              { label: t("models.size"), value: (f) => formatBytes(f.bytes), class: "num" },
              {
                label: "",
                value: (f) =>
                  h("button", { type: "button", onClick: (event) => download(event.currentTarget, model, f.path, errors) }, t("models.download")),
              },
            ],
            Array.isArray(files?.data) ? files.data : [],
          );
    content.replaceChildren(
      h("section", { class: "card" }, h("h2", {}, t("models.details")), facts, model.error ? errorBox(t("models.error", { msg: model.error })) : null),
      h("div", { class: "actions" }, actions(model, errors)),
      h("section", {}, h("h2", {}, t("models.files")), filesPart),
    );
  };
  load();
}
