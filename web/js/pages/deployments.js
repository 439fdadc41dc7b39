// Deployments: the models served behind the OpenAI API (the caller's own and the platform's shared
// ones), with their status and why, replicas and GPU slots; a form to deploy a model of the repository.

import { api } from "../api.js";
import { t } from "../i18n.js";
import { errorBox, field, formatTime, h, showError, statusBadge, table } from "../ui.js";

const POLL_MS = 4000;
// While a deployment is in one of these, its status changes without the user doing anything.
const MOVING = new Set(["pending", "deploying", "stopping"]);

export const strings = {
  en: {
    "dep.nav": "Deployments",
    "dep.title": "Deployments",
    "dep.intro": "Models served behind the OpenAI-compatible API (/v1). Chat with a ready one here or from any OpenAI client.",
    "dep.new": "New deployment",
    "dep.empty": "No deployment yet. Deploy a model to chat with it.",
    "dep.model": "Model",
    "dep.status": "Status",
    "dep.replicas": "Replicas",
    "dep.replicasValue": "{ready} ready of {min}–{max}",
    "dep.slots": "GPU slots",
    "dep.slotsValue": "{count} × {type} per replica",
    "dep.anyType": "any type",
    "dep.owner": "Owner",
    "dep.shared": "Shared by the platform",
    "dep.yours": "Yours",
    "dep.created": "Created",
    "dep.actions": "Actions",
    "dep.chat": "Chat",
    "dep.delete": "Delete",
    "dep.deleting": "Deleting…",
    "dep.confirmDelete": "Delete the deployment of {model}? Its GPU slots are released.",
    "dep.loading": "Loading…",
    "dep.base": "base {model}",
    "dep.newTitle": "Deploy a model",
    "dep.newIntro": "The model gets GPU slots of the chosen type on the cluster; once ready it answers on /v1/chat/completions under its own name.",
    "dep.chooseModel": "Choose a model…",
    "dep.modelHelp": "A ready model of the repository: a base model, a fine-tune or an embedding model.",
    "dep.gpuType": "GPU type",
    "dep.gpuTypeAny": "Any free type",
    "dep.gpuTypeFree": "{type} ({free} of {total} free)",
    "dep.gpuCount": "GPUs per replica",
    "dep.gpuCountHelp": "More than one shards the model over the GPUs (tensor parallelism).",
    "dep.minReplicas": "Minimum replicas",
    "dep.maxReplicas": "Maximum replicas",
    "dep.maxReplicasHelp": "Empty: the same as the minimum.",
    "dep.maxModelLen": "Maximum model length (tokens)",
    "dep.maxModelLenHelp": "Empty: the model's own context length.",
    "dep.submit": "Deploy",
    "dep.submitting": "Deploying…",
    "dep.cancel": "Cancel",
    "dep.badNumber": "{field} must be a whole number.",
  },
  zh: {
    "dep.nav": "部署",
    "dep.title": "模型部署",
    "dep.intro": "通过 OpenAI 兼容接口（/v1）提供服务的模型。就绪的模型可以在这里对话，也可以用任何 OpenAI 客户端调用。",
    "dep.new": "新建部署",
    "dep.empty": "还没有部署。部署一个模型即可与它对话。",
    "dep.model": "模型",
    "dep.status": "状态",
    "dep.replicas": "副本",
    "dep.replicasValue": "{ready} 个就绪（{min}–{max}）",
    "dep.slots": "GPU 卡位",
    "dep.slotsValue": "每副本 {count} × {type}",
    "dep.anyType": "任意类型",
    "dep.owner": "所有者",
    "dep.shared": "平台共享",
    "dep.yours": "我的",
    "dep.created": "创建时间",
    "dep.actions": "操作",
    "dep.chat": "对话",
    "dep.delete": "删除",
    "dep.deleting": "正在删除…",
    "dep.confirmDelete": "删除 {model} 的部署？其占用的 GPU 卡位将被释放。",
    "dep.loading": "加载中…",
    "dep.base": "基座 {model}",
    "dep.newTitle": "部署模型",
    "dep.newIntro": "模型会在集群上占用所选类型的 GPU 卡位；就绪后以自己的名称在 /v1/chat/completions 上提供服务。",
    "dep.chooseModel": "选择模型…",
    "dep.modelHelp": "模型仓库中已就绪的模型：基座模型、微调模型或嵌入模型。",
    "dep.gpuType": "GPU 类型",
    "dep.gpuTypeAny": "任意空闲类型",
    "dep.gpuTypeFree": "{type}（空闲 {free} / 共 {total}）",
    "dep.gpuCount": "每副本 GPU 数",
    "dep.gpuCountHelp": "大于 1 时模型切分到多张 GPU 上（张量并行）。",
    "dep.minReplicas": "最少副本数",
    "dep.maxReplicas": "最多副本数",
    "dep.maxReplicasHelp": "留空：与最少副本数相同。",
    "dep.maxModelLen": "最大上下文长度（token）",
    "dep.maxModelLenHelp": "留空：使用模型自身的上下文长度。",
    "dep.submit": "部署",
    "dep.submitting": "正在部署…",
    "dep.cancel": "取消",
    "dep.badNumber": "{field}必须是整数。",
  },
};

export const nav = { path: "/deployments", label: "dep.nav" };

export const routes = [
  { path: "/deployments", render: list },
  { path: "/deployments/new", render: create },
];

function chatLink(model) {
  return `#/chat?model=${encodeURIComponent(model)}`;
}

function list(root) {
  let timer = null;
  let stopped = false;
  const body = h("div", { class: "deployments-body", "aria-live": "polite" }, t("dep.loading"));
  const actionError = h("div");
  root.replaceChildren(
    h(
      "section",
      { class: "page" },
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, t("dep.title")),
        h("a", { href: "#/deployments/new", class: "button primary" }, t("dep.new")),
      ),
      h("p", { class: "muted" }, t("dep.intro")),
      actionError,
      body,
    ),
  );

  async function remove(deployment, button) {
    if (!window.confirm(t("dep.confirmDelete", { model: deployment.model }))) return;
    button.disabled = true;
    button.textContent = t("dep.deleting");
    actionError.replaceChildren();
    try {
      await api(`/api/v1/deployments/${encodeURIComponent(deployment.id)}`, { method: "DELETE" });
    } catch (err) {
      actionError.replaceChildren(errorBox(err));
    }
    await load();
  }

  function render(deployments) {
    if (deployments.length === 0) {
      body.replaceChildren(h("p", { class: "empty" }, t("dep.empty")));
      return;
    }
    const columns = [
      {
        label: t("dep.model"),
        value: (d) =>
          h(
            "div",
            {},
            h("strong", {}, d.model),
            d.base_model && d.base_model !== d.model
              ? h("div", { class: "muted" }, t("dep.base", { model: d.base_model }))
              : null,
          ),
      },
      {
        label: t("dep.status"),
        value: (d) =>
          h(
            "div",
            { "data-status": d.status },
            statusBadge(d.status),
            d.status_reason ? h("div", { class: "muted status-reason" }, d.status_reason) : null,
          ),
      },
      {
        label: t("dep.replicas"),
        value: (d) => t("dep.replicasValue", { ready: d.ready_replicas, min: d.min_replicas, max: d.max_replicas }),
      },
      {
        label: t("dep.slots"),
        value: (d) => t("dep.slotsValue", { count: d.gpu_count, type: d.gpu_type || t("dep.anyType") }),
      },
      { label: t("dep.owner"), value: (d) => (d.public ? t("dep.shared") : t("dep.yours")) },
      { label: t("dep.created"), value: (d) => (d.created_at ? formatTime(d.created_at) : "") },
      {
        label: t("dep.actions"),
        value: (d) => {
          const actions = h("div", { class: "actions", style: { flexWrap: "nowrap", whiteSpace: "nowrap" } });
          if (d.status === "ready") {
            actions.append(h("a", { href: chatLink(d.model), class: "button" }, t("dep.chat")));
          }
          if (!d.public) {
            const button = h("button", { type: "button", class: "button danger" }, t("dep.delete"));
            button.addEventListener("click", () => remove(d, button));
            actions.append(button);
          }
          return actions;
        },
      },
    ];
    body.replaceChildren(table(columns, deployments));
  }

  async function load() {
    window.clearTimeout(timer);
    try {
      const answer = await api("/api/v1/deployments");
      if (stopped) return;
      const deployments = answer.data || [];
      render(deployments);
      if (deployments.some((d) => MOVING.has(d.status))) timer = window.setTimeout(load, POLL_MS);
    } catch (err) {
      if (!stopped) showError(body, err, load);
    }
  }

  load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

function numberInput(id, { value = "", min, max } = {}) {
  return h("input", { id, name: id, type: "number", inputmode: "numeric", step: "1", min, max, value });
}

// An empty field is left out of the request (the API's default applies); anything else must be a
// whole number, checked here so that a typo gets a message naming the field.
function readInteger(input, label) {
  const raw = input.value.trim();
  if (raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(t("dep.badNumber", { field: label }));
  return value;
}

function create(root, params, query) {
  const wanted = query?.get("model") || "";
  const formError = h("div");
  const modelSelect = h("select", { id: "dep-model", name: "model" });
  const gpuSelect = h("select", { id: "dep-gpu-type", name: "gpu_type" });
  const gpuCount = numberInput("dep-gpu-count", { value: "1", min: "1", max: "8" });
  const minReplicas = numberInput("dep-min-replicas", { value: "1", min: "1", max: "16" });
  const maxReplicas = numberInput("dep-max-replicas", { min: "1", max: "16" });
  const maxModelLen = numberInput("dep-max-model-len", { min: "16" });
  const submit = h("button", { type: "submit", class: "button primary" }, t("dep.submit"));
  const form = h(
    "form",
    { class: "form" },
    field(t("dep.model"), modelSelect, t("dep.modelHelp")),
    field(t("dep.gpuType"), gpuSelect),
    field(t("dep.gpuCount"), gpuCount, t("dep.gpuCountHelp")),
    field(t("dep.minReplicas"), minReplicas),
    field(t("dep.maxReplicas"), maxReplicas, t("dep.maxReplicasHelp")),
    field(t("dep.maxModelLen"), maxModelLen, t("dep.maxModelLenHelp")),
    formError,
    h("div", { class: "actions" }, submit, h("a", { href: "#/deployments", class: "button" }, t("dep.cancel"))),
  );
  // The API checks the values and names the wrong field; the browser's own bubbles would not.
  form.noValidate = true;
  root.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("h1", {}, t("dep.newTitle")),
      h("p", { class: "muted" }, t("dep.newIntro")),
      form,
    ),
  );

  function fillModels(models) {
    const ids = models.filter((m) => m.state === "ready" && m.kind !== "artifact").map((m) => m.id);
    if (wanted && !ids.includes(wanted)) ids.unshift(wanted);
    modelSelect.replaceChildren(
      h("option", { value: "" }, t("dep.chooseModel")),
      ...ids.map((id) => h("option", { value: id }, id)),
    );
    modelSelect.value = wanted;
  }

  function fillGpuTypes(inventory) {
    gpuSelect.replaceChildren(
      h("option", { value: "" }, t("dep.gpuTypeAny")),
      ...(inventory.by_type || []).map((g) =>
        h("option", { value: g.gpu_type }, t("dep.gpuTypeFree", { type: g.gpu_type, free: g.free, total: g.total })),
      ),
    );
  }

  // Without the lists the form still works with the model of the link; their errors are shown.
  fillModels([]);
  fillGpuTypes({});
  api("/api/v1/models")
    .then((answer) => fillModels(answer.data || []))
    .catch((err) => formError.append(errorBox(err)));
  api("/api/v1/gpus")
    .then(fillGpuTypes)
    .catch((err) => formError.append(errorBox(err)));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.replaceChildren();
    let request;
    try {
      request = {
        model: modelSelect.value,
        gpu_type: gpuSelect.value || undefined,
        gpu_count: readInteger(gpuCount, t("dep.gpuCount")),
        min_replicas: readInteger(minReplicas, t("dep.minReplicas")),
        max_replicas: readInteger(maxReplicas, t("dep.maxReplicas")),
        max_model_len: readInteger(maxModelLen, t("dep.maxModelLen")),
      };
    } catch (err) {
      formError.replaceChildren(errorBox(err));
      return;
    }
    submit.disabled = true;
    submit.textContent = t("dep.submitting");
    try {
      await api("/api/v1/deployments", { method: "POST", json: request });
      window.location.hash = "#/deployments";
    } catch (err) {
      formError.replaceChildren(errorBox(err));
      submit.disabled = false;
      submit.textContent = t("dep.submit");
    }
  });
}
