// The dev lab: JupyterLab, TensorBoard and LLaMA-Factory servers placed on the cluster like jobs,
// with their reserved resources; stop, start, delete, and open one through the gateway.

import { api } from "../api.js";
import { t } from "../i18n.js";
import { errorBox, field, formatTime, h, showError, statusBadge, table } from "../ui.js";

const POLL_MS = 4000;
const KINDS = ["jupyterlab", "tensorboard", "llamafactory"];
const MOVING = new Set(["queued", "starting", "stopping"]);

export const strings = {
  en: {
    "inst.nav": "Dev lab",
    "inst.title": "Dev lab",
    "inst.intro": "JupyterLab, TensorBoard and LLaMA-Factory servers on the cluster, with the models, datasets and jobs you mount. Files in work/ survive stop and start.",
    "inst.empty": "No instance yet: create one below.",
    "inst.name": "Name",
    "inst.nameHelp": "Unique among your instances: letters, digits, '.', '_', '-'.",
    "inst.kind": "Kind",
    "inst.kind.jupyterlab": "JupyterLab",
    "inst.kind.tensorboard": "TensorBoard",
    "inst.kind.llamafactory": "LLaMA-Factory",
    "inst.status": "Status",
    "inst.resources": "Resources",
    "inst.resourcesValue": "{cpu} CPU · {memory} GB memory · {gpus} · {storage} GB storage",
    "inst.gpusValue": "{count} × {type}",
    "inst.noGpu": "no GPU",
    "inst.anyType": "any type",
    "inst.created": "Created",
    "inst.actions": "Actions",
    "inst.open": "Open",
    "inst.stop": "Stop",
    "inst.start": "Start",
    "inst.delete": "Delete",
    "inst.confirmDelete": "Delete {name}? Its files in work/ are removed too.",
    "inst.create": "New instance",
    "inst.cpu": "CPU cores",
    "inst.memory": "Memory (GB)",
    "inst.gpus": "GPUs",
    "inst.gpusHelp": "GPU slots (CPU slots on nodes without GPUs).",
    "inst.gpuType": "GPU type",
    "inst.gpuTypeAny": "Any type",
    "inst.storage": "Storage (GB)",
    "inst.mountModels": "Models to mount",
    "inst.mountDatasets": "Datasets to mount (file ids)",
    "inst.mountAdapters": "Adapters to mount",
    "inst.mountJobs": "Jobs whose TensorBoard logs to show",
    "inst.listHelp": "Ids separated by commas or spaces; mounted read-only.",
    "inst.submit": "Create",
    "inst.creating": "Creating…",
    "inst.badNumber": "{field} must be a number.",
  },
  zh: {
    "inst.nav": "开发实验室",
    "inst.title": "开发实验室",
    "inst.intro": "运行在集群上的 JupyterLab、TensorBoard 和 LLaMA-Factory 服务，可挂载模型、数据集和任务。work/ 目录中的文件在停止和启动后保留。",
    "inst.empty": "还没有实例：请在下方创建。",
    "inst.name": "名称",
    "inst.nameHelp": "在您的实例中唯一：字母、数字、“.”、“_”、“-”。",
    "inst.kind": "类型",
    "inst.kind.jupyterlab": "JupyterLab",
    "inst.kind.tensorboard": "TensorBoard",
    "inst.kind.llamafactory": "LLaMA-Factory",
    "inst.status": "状态",
    "inst.resources": "资源",
    "inst.resourcesValue": "{cpu} 核 CPU · {memory} GB 内存 · {gpus} · {storage} GB 存储",
    "inst.gpusValue": "{count} × {type}",
    "inst.noGpu": "无 GPU",
    "inst.anyType": "任意类型",
    "inst.created": "创建时间",
    "inst.actions": "操作",
    "inst.open": "打开",
    "inst.stop": "停止",
    "inst.start": "启动",
    "inst.delete": "删除",
    "inst.confirmDelete": "删除 {name}？其 work/ 目录中的文件也会被删除。",
    "inst.create": "新建实例",
    "inst.cpu": "CPU 核数",
    "inst.memory": "内存（GB）",
    "inst.gpus": "GPU 数",
    "inst.gpusHelp": "GPU 卡位（没有 GPU 的节点上为 CPU 卡位）。",
    "inst.gpuType": "GPU 类型",
    "inst.gpuTypeAny": "任意类型",
    "inst.storage": "存储（GB）",
    "inst.mountModels": "挂载的模型",
    "inst.mountDatasets": "挂载的数据集（文件 ID）",
    "inst.mountAdapters": "挂载的适配器",
    "inst.mountJobs": "显示其 TensorBoard 日志的任务",
    "inst.listHelp": "多个 ID 用逗号或空格分隔；以只读方式挂载。",
    "inst.submit": "创建",
    "inst.creating": "正在创建…",
    "inst.badNumber": "{field}必须是数字。",
  },
};

export const nav = { path: "/instances", label: "inst.nav" };

export const routes = [{ path: "/instances", render: instances }];

const instancePath = (id) => `/api/v1/instances/${encodeURIComponent(id)}`;

function ids(input) {
  return input.value
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function instances(root) {
  let timer = null;
  let stopped = false;
  const body = h("div", {}, t("ui.loading"));
  const actionError = h("div");

  const nameInput = h("input", { id: "inst-name", type: "text", maxlength: "63", autocomplete: "off" });
  const kindSelect = h(
    "select",
    { id: "inst-kind" },
    KINDS.map((kind) => h("option", { value: kind }, t(`inst.kind.${kind}`))),
  );
  const number = (id, value, step) => h("input", { id, type: "number", min: "0", step, value: String(value) });
  const cpuInput = number("inst-cpu", 1, "0.5");
  const memoryInput = number("inst-memory", 2, "0.5");
  const gpusInput = number("inst-gpus", 0, "1");
  const gpuTypeSelect = h("select", { id: "inst-gpu-type" }, h("option", { value: "" }, t("inst.gpuTypeAny")));
  const storageInput = number("inst-storage", 1, "1");
  const modelsInput = h("input", { id: "inst-models", type: "text" });
  const datasetsInput = h("input", { id: "inst-datasets", type: "text" });
  const adaptersInput = h("input", { id: "inst-adapters", type: "text" });
  const jobsInput = h("input", { id: "inst-jobs", type: "text" });
  const formError = h("div");
  const submit = h("button", { type: "submit", class: "button primary" }, t("inst.submit"));
  const form = h(
    "form",
    { class: "form inst-create" },
    field(t("inst.name"), nameInput, t("inst.nameHelp")),
    field(t("inst.kind"), kindSelect),
    field(t("inst.cpu"), cpuInput),
    field(t("inst.memory"), memoryInput),
    field(t("inst.gpus"), gpusInput, t("inst.gpusHelp")),
    field(t("inst.gpuType"), gpuTypeSelect),
    field(t("inst.storage"), storageInput),
    field(t("inst.mountModels"), modelsInput, t("inst.listHelp")),
    field(t("inst.mountDatasets"), datasetsInput, t("inst.listHelp")),
    field(t("inst.mountAdapters"), adaptersInput, t("inst.listHelp")),
    field(t("inst.mountJobs"), jobsInput, t("inst.listHelp")),
    formError,
    h("div", { class: "actions" }, submit),
  );
  // The API names the wrong field in its message; the browser's own bubbles would hide it.
  form.noValidate = true;

  root.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("h1", {}, t("inst.title")),
      h("p", { class: "muted" }, t("inst.intro")),
      actionError,
      body,
      h("section", { class: "card" }, h("h2", {}, t("inst.create")), form),
    ),
  );

  api("/api/v1/gpus")
    .then((inventory) => {
      for (const g of inventory?.by_type || []) gpuTypeSelect.append(h("option", { value: g.gpu_type }, g.gpu_type));
    })
    .catch(() => {
      // Without the inventory the form still offers "any type"; the API checks the choice.
    });

  // Opening waits for the session cookie; the tab is opened first, while the click still counts
  // as the user's, so that popup blockers let it through.
  async function open(instance) {
    actionError.replaceChildren();
    const tab = window.open("about:blank", "_blank");
    try {
      await api(`${instancePath(instance.id)}/session`, { method: "POST" });
      if (tab) {
        tab.opener = null;
        tab.location.href = instance.url;
      } else {
        window.location.href = instance.url;
      }
    } catch (err) {
      tab?.close();
      actionError.replaceChildren(errorBox(err));
    }
  }

  async function act(instance, action) {
    if (action === "delete" && !window.confirm(t("inst.confirmDelete", { name: instance.name }))) return;
    actionError.replaceChildren();
    try {
      if (action === "delete") await api(instancePath(instance.id), { method: "DELETE" });
      else await api(`${instancePath(instance.id)}/${action}`, { method: "POST" });
    } catch (err) {
      actionError.replaceChildren(errorBox(err));
    }
    load();
  }

  function resources(i) {
    const gpus = i.gpus ? t("inst.gpusValue", { count: i.gpus, type: i.gpu_type || t("inst.anyType") }) : t("inst.noGpu");
    return t("inst.resourcesValue", { cpu: i.cpu, memory: i.memory_gb, gpus, storage: i.storage_gb });
  }

  function actions(i) {
    const button = (label, onClick, extra = "") =>
      h("button", { type: "button", class: `button ${extra}`.trim(), onClick }, label);
    return h(
      "div",
      { class: "actions", style: { whiteSpace: "nowrap" } },
      i.status === "running" ? button(t("inst.open"), () => open(i), "primary") : null,
      ["queued", "starting", "running"].includes(i.status) ? button(t("inst.stop"), () => act(i, "stop")) : null,
      ["stopped", "failed"].includes(i.status) ? button(t("inst.start"), () => act(i, "start")) : null,
      button(t("inst.delete"), () => act(i, "delete"), "danger"),
    );
  }

  async function load() {
    window.clearTimeout(timer);
    try {
      const answer = await api("/api/v1/instances");
      if (stopped) return;
      const rows = (answer?.data || []).filter((i) => i.status !== "deleted");
      const columns = [
        { label: t("inst.name"), value: (i) => h("strong", {}, i.name) },
        { label: t("inst.kind"), value: (i) => t(`inst.kind.${i.kind}`) },
        {
          label: t("inst.status"),
          value: (i) =>
            h(
              "div",
              { "data-status": i.status },
              statusBadge(i.status),
              i.status_reason ? h("div", { class: "muted small status-reason" }, i.status_reason) : null,
            ),
        },
        { label: t("inst.resources"), value: resources },
        { label: t("inst.created"), value: (i) => formatTime(i.created_at) },
        { label: t("inst.actions"), value: actions },
      ];
      body.replaceChildren(table(columns, rows, { empty: t("inst.empty") }));
      if (rows.some((i) => MOVING.has(i.status))) timer = window.setTimeout(load, POLL_MS);
    } catch (err) {
      if (!stopped) showError(body, err, load);
    }
  }

  function readNumber(input, label) {
    const value = Number(input.value);
    if (input.value.trim() === "" || !Number.isFinite(value)) throw new Error(t("inst.badNumber", { field: label }));
    return value;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.replaceChildren();
    let request;
    try {
      request = {
        name: nameInput.value.trim(),
        kind: kindSelect.value,
        cpu: readNumber(cpuInput, t("inst.cpu")),
        memory_gb: readNumber(memoryInput, t("inst.memory")),
        gpus: readNumber(gpusInput, t("inst.gpus")),
        gpu_type: gpuTypeSelect.value || undefined,
        storage_gb: readNumber(storageInput, t("inst.storage")),
        mounts: {
          models: ids(modelsInput),
          datasets: ids(datasetsInput),
          adapters: ids(adaptersInput),
          jobs: ids(jobsInput),
        },
      };
    } catch (err) {
      formError.replaceChildren(errorBox(err));
      return;
    }
    submit.disabled = true;
    submit.textContent = t("inst.creating");
    try {
      await api("/api/v1/instances", { method: "POST", json: request });
      nameInput.value = "";
      await load();
    } catch (err) {
      formError.replaceChildren(errorBox(err));
    } finally {
      submit.disabled = false;
      submit.textContent = t("inst.submit");
    }
  });

  load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
