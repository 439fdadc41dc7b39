// #/jobs: custom GPU jobs — the list, the submit form (command or image over nodes x GPUs, paths,
// volume, environment, a maximum run time) and a job's page with its log followed live (SSE).

import { api, streamSSE } from "../api.js";
import { registerStrings, t } from "../i18n.js";
import { errorBox, fill, field, formatTime, h, loading, showError, statusBadge, table } from "../ui.js";

export const strings = {
  en: {
    "jobs.nav": "Jobs",
    "jobs.title": "Custom jobs",
    "jobs.intro": "Run your own command or container over the cluster's GPU slots.",
    "jobs.new": "New job",
    "jobs.refresh": "Refresh",
    "jobs.empty": "No jobs yet.",
    "jobs.col.id": "ID",
    "jobs.col.name": "Name",
    "jobs.col.status": "Status",
    "jobs.col.type": "Type",
    "jobs.col.gpus": "Nodes × GPUs",
    "jobs.col.gpuType": "GPU type",
    "jobs.col.created": "Created",
    "jobs.col.finished": "Finished",
    "jobs.newTitle": "Submit a custom job",
    "jobs.name": "Name",
    "jobs.nameHelp": "A label to recognise the job by.",
    "jobs.command": "Command",
    "jobs.commandHelp": "A shell command. Without an image it runs on the node; with one, inside the container.",
    "jobs.image": "Container image",
    "jobs.imageHelp": "Optional, e.g. pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime (needs docker or podman on the node).",
    "jobs.jobType": "Job type",
    "jobs.type.pytorch": "PyTorch DDP (RANK, WORLD_SIZE, MASTER_ADDR set)",
    "jobs.type.mpi": "MPI",
    "jobs.nodes": "Nodes",
    "jobs.gpusPerNode": "GPUs per node",
    "jobs.gpuType": "GPU type",
    "jobs.anyGpu": "Any type",
    "jobs.gpuFree": "{type} ({free} of {total} free)",
    "jobs.ckptPath": "Checkpoint path",
    "jobs.ckptHelp": "A folder inside the job's volume, e.g. ckpt.",
    "jobs.savePath": "Model save path",
    "jobs.saveHelp": "A folder inside the job's volume where the job writes its model, e.g. out.",
    "jobs.volume": "Volume size (GB)",
    "jobs.volumeHelp": "0 means no limit.",
    "jobs.env": "Environment variables",
    "jobs.envKey": "Name",
    "jobs.envValue": "Value",
    "jobs.addEnv": "Add variable",
    "jobs.removeEnv": "Remove",
    "jobs.termination": "Termination condition",
    "jobs.toCompletion": "Run to completion",
    "jobs.maxRuntime": "Stop after a maximum run time",
    "jobs.maxMinutes": "Maximum run time (minutes)",
    "jobs.submit": "Submit job",
    "jobs.submitting": "Submitting…",
    "jobs.cancel": "Cancel job",
    "jobs.cancelling": "Cancelling…",
    "jobs.back": "All jobs",
    "jobs.logTitle": "Log",
    "jobs.logWaiting": "Waiting for the job's first line…",
    "jobs.logEnded": "— the job ended: {status} —",
    "jobs.logLost": "The live log stopped ({msg}); reconnecting…",
    "jobs.details": "Details",
    "jobs.reason": "Reason",
    "jobs.output": "Output on the volume",
    "jobs.nodesUsed": "Nodes",
    "jobs.progress": "Preparing",
    "jobs.noLimit": "none (runs to completion)",
    "jobs.minutes": "{n} min",
  },
  zh: {
    "jobs.nav": "任务",
    "jobs.title": "自定义任务",
    "jobs.intro": "在集群的 GPU 上运行你自己的命令或容器。",
    "jobs.new": "新建任务",
    "jobs.refresh": "刷新",
    "jobs.empty": "还没有任务。",
    "jobs.col.id": "ID",
    "jobs.col.name": "名称",
    "jobs.col.status": "状态",
    "jobs.col.type": "类型",
    "jobs.col.gpus": "节点 × GPU",
    "jobs.col.gpuType": "GPU 类型",
    "jobs.col.created": "创建时间",
    "jobs.col.finished": "结束时间",
    "jobs.newTitle": "提交自定义任务",
    "jobs.name": "名称",
    "jobs.nameHelp": "用于识别任务的标签。",
    "jobs.command": "命令",
    "jobs.commandHelp": "Shell 命令。不指定镜像时在节点上运行；指定镜像时在容器内运行。",
    "jobs.image": "容器镜像",
    "jobs.imageHelp": "可选，例如 pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime（节点上需要 docker 或 podman）。",
    "jobs.jobType": "任务类型",
    "jobs.type.pytorch": "PyTorch DDP（设置 RANK、WORLD_SIZE、MASTER_ADDR）",
    "jobs.type.mpi": "MPI",
    "jobs.nodes": "节点数",
    "jobs.gpusPerNode": "每节点 GPU 数",
    "jobs.gpuType": "GPU 类型",
    "jobs.anyGpu": "任意类型",
    "jobs.gpuFree": "{type}（{total} 个中 {free} 个空闲）",
    "jobs.ckptPath": "检查点路径",
    "jobs.ckptHelp": "任务存储卷内的目录，例如 ckpt。",
    "jobs.savePath": "模型保存路径",
    "jobs.saveHelp": "任务存储卷内保存模型的目录，例如 out。",
    "jobs.volume": "存储卷大小（GB）",
    "jobs.volumeHelp": "0 表示不限制。",
    "jobs.env": "环境变量",
    "jobs.envKey": "变量名",
    "jobs.envValue": "值",
    "jobs.addEnv": "添加变量",
    "jobs.removeEnv": "移除",
    "jobs.termination": "终止条件",
    "jobs.toCompletion": "运行至完成",
    "jobs.maxRuntime": "达到最长运行时间后停止",
    "jobs.maxMinutes": "最长运行时间（分钟）",
    "jobs.submit": "提交任务",
    "jobs.submitting": "正在提交…",
    "jobs.cancel": "取消任务",
    "jobs.cancelling": "正在取消…",
    "jobs.back": "全部任务",
    "jobs.logTitle": "日志",
    "jobs.logWaiting": "等待任务输出第一行…",
    "jobs.logEnded": "— 任务已结束：{status} —",
    "jobs.logLost": "实时日志中断（{msg}），正在重新连接…",
    "jobs.details": "详情",
    "jobs.reason": "原因",
    "jobs.output": "存储卷上的输出",
    "jobs.nodesUsed": "节点",
    "jobs.progress": "准备进度",
    "jobs.noLimit": "无（运行至完成）",
    "jobs.minutes": "{n} 分钟",
  },
};
registerStrings(strings);


export const nav = { path: "/jobs", label: "jobs.nav" };

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
const LIST_POLL_MS = 5000;
const MAX_LOG_LINES = 1000;
const RECONNECT_MS = 2000;

export function queryValue(query, name) {
  if (!query) return null;
  if (query instanceof URLSearchParams) return query.get(name);
  return query[name] ?? null;
}

export function idempotencyKey() {
  return window.crypto?.randomUUID ? window.crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// A <pre> that follows a job's log over SSE (GET /api/v1/jobs/{id}/logs), keeping the last lines;
// reconnects after a dropped connection. onLine(text) sees every line; a line it answers `false`
// for is not shown. Returns {el, stop}.
export function logTail(jobId, { onEnd = null, onLine = null } = {}) {
  const pre = h("pre", { class: "log-tail", "aria-live": "off", tabindex: "0" }, t("jobs.logWaiting"));
  const note = h("p", { class: "small muted", role: "status" });
  const el = h("div", { class: "log" }, pre, note);
  const controller = new AbortController();
  const lines = [];
  let ended = false;

  const render = () => {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.join("\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };

  async function follow() {
    while (!ended && !controller.signal.aborted) {
      lines.length = 0;
      try {
        await streamSSE(`/api/v1/jobs/${encodeURIComponent(jobId)}/logs`, { method: "GET", signal: controller.signal }, (data) => {
          if (data && typeof data === "object" && typeof data.line === "string") {
            if (onLine?.(data.line) === false) return;
            lines.push(data.line);
            if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
            note.textContent = "";
            render();
          } else if (data && typeof data === "object" && data.status) {
            ended = true;
            note.textContent = t("jobs.logEnded", { status: data.status });
            onEnd?.(data);
          }
        });
        if (!lines.length) pre.textContent = "";
        // The stream ends after the job's end event; a clean end without it is a dropped connection.
        if (ended) return;
      } catch (err) {
        if (controller.signal.aborted) return;
        note.textContent = t("jobs.logLost", { msg: err?.message || String(err) });
        if (err?.status && err.status >= 400 && err.status < 500) {
          el.append(errorBox(err));
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  follow();
  return { el, stop: () => controller.abort() };
}

function jobsTable(jobs) {
  return table(
    [
      { label: t("jobs.col.id"), value: (j) => h("a", { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.id) },
      { label: t("jobs.col.name"), value: (j) => j.name || "—" },
      { label: t("jobs.col.status"), value: (j) => statusBadge(j.status) },
      { label: t("jobs.col.type"), value: (j) => j.job_type },
      { label: t("jobs.col.gpus"), value: (j) => `${j.nodes} × ${j.gpus_per_node}` },
      { label: t("jobs.col.gpuType"), value: (j) => j.gpu_type || t("jobs.anyGpu") },
      { label: t("jobs.col.created"), value: (j) => formatTime(j.created_at) },
      { label: t("jobs.col.finished"), value: (j) => formatTime(j.finished_at) },
    ],
    jobs,
    { empty: t("jobs.empty") },
  );
}

function list(root) {
  const box = h("div", {}, loading());
  let timer = null;
  let stopped = false;
  async function refresh() {
    clearTimeout(timer);
    try {
      const jobs = (await api("/api/v1/jobs")).data ?? [];
      jobs.sort((a, b) => b.created_at - a.created_at);
      if (stopped) return;
      fill(box, jobsTable(jobs));
      if (jobs.some((j) => !TERMINAL.has(j.status))) timer = setTimeout(refresh, LIST_POLL_MS);
    } catch (err) {
      showError(box, err, refresh);
    }
  }
  fill(root,
    h("div", { class: "row" }, h("h1", {}, t("jobs.title")), h("a", { class: "button primary", href: "#/jobs/new" }, t("jobs.new"))),
    h("p", { class: "muted" }, t("jobs.intro")),
    h("div", { class: "row" }, h("button", { type: "button", onClick: refresh }, t("jobs.refresh"))),
    box,
  );
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// A <select> of the cluster's GPU types ("" = any), filled from /api/v1/gpus when it answers.
export function gpuTypeSelect(id) {
  const select = h("select", { id, name: "gpu_type" }, h("option", { value: "" }, t("jobs.anyGpu")));
  api("/api/v1/gpus")
    .then((inventory) => {
      for (const kind of inventory.by_type ?? []) {
        select.append(h("option", { value: kind.gpu_type }, t("jobs.gpuFree", { type: kind.gpu_type, free: kind.free, total: kind.total })));
      }
    })
    .catch(() => {}); // the form still works with "any"; the API names a wrong type on submit
  return select;
}

function envRow(rows) {
  const key = h("input", { type: "text", class: "env-key", "aria-label": t("jobs.envKey"), placeholder: t("jobs.envKey") });
  const value = h("input", { type: "text", class: "env-value", "aria-label": t("jobs.envValue"), placeholder: t("jobs.envValue") });
  const row = h("div", { class: "env-row row" }, key, value);
  row.append(h("button", { type: "button", onClick: () => row.remove() }, t("jobs.removeEnv")));
  rows.append(row);
  return row;
}

// An integer field's value for the API: omitted when blank (the API's default), else as typed so
// the API names a wrong one.
function integer(input) {
  const text = input.value.trim();
  if (!text) return undefined;
  const number = Number(text);
  return Number.isFinite(number) ? number : text;
}

function newJob(root) {
  const inputs = {
    name: h("input", { type: "text", id: "job-name", name: "name", maxlength: "200" }),
    command: h("textarea", { id: "job-command", name: "command", rows: "3", spellcheck: "false" }),
    image: h("input", { type: "text", id: "job-image", name: "image" }),
    job_type: h(
      "select",
      { id: "job-type", name: "job_type" },
      h("option", { value: "pytorch" }, t("jobs.type.pytorch")),
      h("option", { value: "mpi" }, t("jobs.type.mpi")),
    ),
    nodes: h("input", { type: "number", id: "job-nodes", name: "nodes", min: "1", value: "1" }),
    gpus_per_node: h("input", { type: "number", id: "job-gpus", name: "gpus_per_node", min: "1", value: "1" }),
    gpu_type: gpuTypeSelect("job-gpu-type"),
    ckpt_path: h("input", { type: "text", id: "job-ckpt", name: "ckpt_path", placeholder: "ckpt" }),
    model_save_path: h("input", { type: "text", id: "job-save", name: "model_save_path", placeholder: "out" }),
    volume_gb: h("input", { type: "number", id: "job-volume", name: "volume_gb", min: "0", value: "0" }),
    max_runtime_minutes: h("input", { type: "number", id: "job-max-minutes", name: "max_runtime_minutes", min: "1", value: "60", disabled: true }),
  };
  const toCompletion = h("input", { type: "radio", id: "job-run-to-end", name: "termination", value: "complete", checked: true });
  const limited = h("input", { type: "radio", id: "job-run-limited", name: "termination", value: "limit" });
  const syncTermination = () => {
    inputs.max_runtime_minutes.disabled = !limited.checked;
  };
  toCompletion.addEventListener("change", syncTermination);
  limited.addEventListener("change", syncTermination);

  const envRows = h("div", { class: "env-rows" });
  const result = h("div", { class: "form-result", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, t("jobs.submit"));

  async function send(event) {
    event.preventDefault();
    for (const input of Object.values(inputs)) input.removeAttribute("aria-invalid");
    const env = {};
    for (const row of envRows.querySelectorAll(".env-row")) {
      const key = row.querySelector(".env-key").value.trim();
      if (key) env[key] = row.querySelector(".env-value").value;
    }
    const body = {
      name: inputs.name.value.trim(),
      command: inputs.command.value.trim() || undefined,
      image: inputs.image.value.trim() || undefined,
      job_type: inputs.job_type.value,
      nodes: integer(inputs.nodes),
      gpus_per_node: integer(inputs.gpus_per_node),
      gpu_type: inputs.gpu_type.value || undefined,
      ckpt_path: inputs.ckpt_path.value.trim(),
      model_save_path: inputs.model_save_path.value.trim(),
      volume_gb: integer(inputs.volume_gb),
      env,
      max_runtime_minutes: limited.checked ? integer(inputs.max_runtime_minutes) : undefined,
    };
    submit.disabled = true;
    submit.textContent = t("jobs.submitting");
    fill(result);
    try {
      const job = await api("/api/v1/jobs", { method: "POST", json: body, headers: { "Idempotency-Key": idempotencyKey() } });
      window.location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      const wrong = err?.param ? inputs[String(err.param).split(".")[0]] : null;
      if (wrong) {
        wrong.setAttribute("aria-invalid", "true");
        wrong.focus();
      }
      fill(result, errorBox(err));
    } finally {
      submit.disabled = false;
      submit.textContent = t("jobs.submit");
    }
  }

  const form = h(
    "form",
    { class: "job-form", novalidate: true, onSubmit: send },
    field(t("jobs.name"), inputs.name, t("jobs.nameHelp")),
    field(t("jobs.command"), inputs.command, t("jobs.commandHelp")),
    field(t("jobs.image"), inputs.image, t("jobs.imageHelp")),
    field(t("jobs.jobType"), inputs.job_type),
    h("div", { class: "row" }, field(t("jobs.nodes"), inputs.nodes), field(t("jobs.gpusPerNode"), inputs.gpus_per_node), field(t("jobs.gpuType"), inputs.gpu_type)),
    h("div", { class: "row" }, field(t("jobs.ckptPath"), inputs.ckpt_path, t("jobs.ckptHelp")), field(t("jobs.savePath"), inputs.model_save_path, t("jobs.saveHelp"))),
    field(t("jobs.volume"), inputs.volume_gb, t("jobs.volumeHelp")),
    h(
      "fieldset",
      {},
      h("legend", {}, t("jobs.env")),
      envRows,
      h("button", { type: "button", onClick: () => envRow(envRows).querySelector("input").focus() }, t("jobs.addEnv")),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, t("jobs.termination")),
      h("div", {}, toCompletion, h("label", { for: toCompletion.id }, t("jobs.toCompletion"))),
      h("div", {}, limited, h("label", { for: limited.id }, t("jobs.maxRuntime"))),
      field(t("jobs.maxMinutes"), inputs.max_runtime_minutes),
    ),
    submit,
    result,
  );
  fill(root, h("p", {}, h("a", { href: "#/jobs" }, t("jobs.back"))), h("h1", {}, t("jobs.newTitle")), h("section", { class: "card" }, form));
}

function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, value]) => value !== null && value !== undefined && value !== "").map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

function detail(root, params) {
  const id = params.id;
  const head = h("div", {}, loading());
  const info = h("section", { class: "card" });
  let timer = null;
  let stopped = false;
  let tail = null;

  async function load() {
    clearTimeout(timer);
    let job;
    try {
      job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      if (!stopped) showError(head, err, load);
      return;
    }
    if (stopped) return;
    const ended = TERMINAL.has(job.status);
    const cancel = h("button", { type: "button", class: "danger", disabled: ended }, t("jobs.cancel"));
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      cancel.textContent = t("jobs.cancelling");
      try {
        await api(`/api/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
        await load();
      } catch (err) {
        head.append(errorBox(err));
        cancel.disabled = false;
        cancel.textContent = t("jobs.cancel");
      }
    });
    fill(head,
      h("div", { class: "row" }, h("h1", {}, job.name || job.id), statusBadge(job.status), ended ? null : cancel),
      job.status_reason ? h("p", { class: job.status === "failed" ? "error-message" : "muted" }, `${t("jobs.reason")}: ${job.status_reason}`) : null,
    );
    fill(info,
      h("h2", {}, t("jobs.details")),
      facts([
        [t("jobs.col.id"), h("code", {}, job.id)],
        [t("jobs.command"), job.command ? h("code", {}, job.command) : null],
        [t("jobs.image"), job.image],
        [t("jobs.jobType"), job.job_type],
        [t("jobs.col.gpus"), `${job.nodes} × ${job.gpus_per_node}`],
        [t("jobs.gpuType"), job.gpu_type || t("jobs.anyGpu")],
        [t("jobs.ckptPath"), job.ckpt_path],
        [t("jobs.savePath"), job.model_save_path],
        [t("jobs.output"), job.output_path],
        [t("jobs.volume"), String(job.volume_gb)],
        [t("jobs.env"), Object.keys(job.env ?? {}).length ? Object.entries(job.env).map(([k, v]) => `${k}=${v}`).join(" ") : null],
        [t("jobs.termination"), job.max_runtime_minutes ? t("jobs.minutes", { n: job.max_runtime_minutes }) : t("jobs.noLimit")],
        [t("jobs.nodesUsed"), job.node_ids?.join(", ")],
        [t("jobs.progress"), job.status === "preparing" ? `${Math.round(job.progress * 100)}%` : null],
        [t("jobs.col.created"), formatTime(job.created_at)],
        [t("jobs.col.finished"), job.finished_at ? formatTime(job.finished_at) : null],
      ]),
    );
    if (!ended) timer = setTimeout(load, 2000);
  }

  tail = logTail(id, { onEnd: () => load() });
  fill(root,
    h("p", {}, h("a", { href: "#/jobs" }, t("jobs.back"))),
    head,
    info,
    h("section", { class: "card" }, h("h2", {}, t("jobs.logTitle")), tail.el),
  );
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
    tail.stop();
  };
}

export const routes = [
  { path: "/jobs", render: list },
  { path: "/jobs/new", render: newJob },
  { path: "/jobs/:id", render: detail },
];
