// #/fine-tunes: the user's fine-tunes (OpenAI's fine-tuning API), the form that starts one, and a
// fine-tune's page: status, hyperparameters, its log followed live (SSE), a live loss and
// learning-rate chart, events, checkpoints, cancel, download of the result, evaluations.
// The chart is fed by the SUANLI_METRICS lines of the live log and by the events API, polled every
// 2 s while the job runs (no stream of events exists); both are keyed by step, so they agree.

import { api } from "../api.js";
import { registerStrings, t } from "../i18n.js";
import { errorBox, fill, field, formatNumber, formatTime, h, loading, progressBar, showError, statusBadge, table } from "../ui.js";
import { gpuTypeSelect, idempotencyKey, logTail, queryValue } from "./jobs.js";

export const strings = {
  en: {
    "ft.nav": "Fine-tunes",
    "ft.title": "Fine-tunes",
    "ft.intro": "Train an open model on your dataset with LoRA, QLoRA or full fine-tuning.",
    "ft.new": "New fine-tune",
    "ft.refresh": "Refresh",
    "ft.empty": "No fine-tunes yet.",
    "ft.col.id": "ID",
    "ft.col.model": "Base model",
    "ft.col.status": "Status",
    "ft.col.result": "Fine-tuned model",
    "ft.col.method": "Method",
    "ft.col.created": "Created",
    "ft.col.finished": "Finished",
    "ft.newTitle": "Start a fine-tune",
    "ft.model": "Base model",
    "ft.modelHelp": "A ready base or fine-tuned model of the repository.",
    "ft.trainingFile": "Training dataset",
    "ft.validationFile": "Validation dataset (optional)",
    "ft.validationHelp": "Held-out examples; their loss is reported as it trains.",
    "ft.noFile": "None",
    "ft.noDatasets": "No datasets yet: upload one on the Datasets page.",
    "ft.fileOption": "{name} ({examples} examples, {id})",
    "ft.method": "Method",
    "ft.method.lora": "LoRA (adapter; fast, small)",
    "ft.method.qlora": "QLoRA (4-bit base; needs a CUDA GPU)",
    "ft.method.full": "Full (every weight)",
    "ft.loraRank": "LoRA rank",
    "ft.gpuType": "GPU type",
    "ft.gpuCount": "GPU count",
    "ft.hyper": "Hyperparameters",
    "ft.hyperHelp": "“auto” lets the platform choose from the dataset's size.",
    "ft.epochs": "Epochs",
    "ft.batchSize": "Batch size",
    "ft.lrMultiplier": "Learning-rate multiplier",
    "ft.lrHelp": "Scales the method's base learning rate (LoRA 1e-3, full 1e-5).",
    "ft.suffix": "Suffix",
    "ft.suffixHelp": "Up to 40 of A-Z a-z 0-9 . _ -; it goes into the fine-tuned model's name.",
    "ft.submit": "Start fine-tune",
    "ft.submitting": "Starting…",
    "ft.back": "All fine-tunes",
    "ft.cancel": "Cancel fine-tune",
    "ft.cancelling": "Cancelling…",
    "ft.download": "Download model",
    "ft.downloading": "Downloading… {size}",
    "ft.details": "Details",
    "ft.trainingFileShort": "Training file",
    "ft.validationFileShort": "Validation file",
    "ft.adapter": "Adapter",
    "ft.trainedTokens": "Trained tokens",
    "ft.seed": "Seed",
    "ft.error": "Error",
    "ft.progress": "Step {step} of {total}",
    "ft.eta": "about {s} s left",
    "ft.chartTitle": "Loss and learning rate",
    "ft.loss": "Training loss",
    "ft.validLoss": "Validation loss",
    "ft.learningRate": "Learning rate",
    "ft.step": "Step",
    "ft.chartMissing": "The chart library did not load (vendor/chart.umd.min.js; run “make web-assets”). The events below list every step.",
    "ft.chartAria": "Line chart of the training loss and learning rate per step; the events list the same numbers.",
    "ft.noPoints": "No steps yet.",
    "ft.logTitle": "Log",
    "ft.eventsTitle": "Events",
    "ft.col.time": "Time",
    "ft.col.level": "Level",
    "ft.col.message": "Message",
    "ft.checkpointsTitle": "Checkpoints",
    "ft.noCheckpoints": "No checkpoints yet.",
    "ft.col.stepNumber": "Step",
    "ft.col.trainLoss": "Training loss",
    "ft.col.checkpoint": "Checkpoint",
    "ft.evalTitle": "Evaluations",
    "ft.evalIntro": "Score the fine-tuned model and its base side by side on held-out examples.",
    "ft.evalFile": "Held-out dataset",
    "ft.evalMax": "Examples to score",
    "ft.evalStart": "Evaluate",
    "ft.evalNone": "No evaluations yet.",
    "ft.evalOnlySucceeded": "Evaluations can start once the fine-tune has succeeded.",
    "ft.col.bleu": "BLEU",
    "ft.col.exact": "Exact match",
    "ft.col.accuracy": "Accuracy",
    "ft.col.examples": "Examples",
    "ft.col.evalModel": "Model",
  },
  zh: {
    "ft.nav": "微调",
    "ft.title": "微调任务",
    "ft.intro": "使用 LoRA、QLoRA 或全参数微调，在你的数据集上训练开源模型。",
    "ft.new": "新建微调",
    "ft.refresh": "刷新",
    "ft.empty": "还没有微调任务。",
    "ft.col.id": "ID",
    "ft.col.model": "基础模型",
    "ft.col.status": "状态",
    "ft.col.result": "微调后的模型",
    "ft.col.method": "方法",
    "ft.col.created": "创建时间",
    "ft.col.finished": "结束时间",
    "ft.newTitle": "开始微调",
    "ft.model": "基础模型",
    "ft.modelHelp": "模型仓库中已就绪的基础模型或微调模型。",
    "ft.trainingFile": "训练数据集",
    "ft.validationFile": "验证数据集（可选）",
    "ft.validationHelp": "留出的样本；训练过程中会报告其损失。",
    "ft.noFile": "无",
    "ft.noDatasets": "还没有数据集：请先在“数据集”页面上传。",
    "ft.fileOption": "{name}（{examples} 个样本，{id}）",
    "ft.method": "方法",
    "ft.method.lora": "LoRA（适配器；快速、体积小）",
    "ft.method.qlora": "QLoRA（4 位量化基础模型；需要 CUDA GPU）",
    "ft.method.full": "全参数（训练所有权重）",
    "ft.loraRank": "LoRA 秩",
    "ft.gpuType": "GPU 类型",
    "ft.gpuCount": "GPU 数量",
    "ft.hyper": "超参数",
    "ft.hyperHelp": "“auto” 表示由平台根据数据集大小自动选择。",
    "ft.epochs": "训练轮数",
    "ft.batchSize": "批大小",
    "ft.lrMultiplier": "学习率倍数",
    "ft.lrHelp": "按该倍数缩放方法的基础学习率（LoRA 为 1e-3，全参数为 1e-5）。",
    "ft.suffix": "后缀",
    "ft.suffixHelp": "最多 40 个 A-Z a-z 0-9 . _ - 字符；会出现在微调后模型的名称中。",
    "ft.submit": "开始微调",
    "ft.submitting": "正在启动…",
    "ft.back": "全部微调任务",
    "ft.cancel": "取消微调",
    "ft.cancelling": "正在取消…",
    "ft.download": "下载模型",
    "ft.downloading": "正在下载… {size}",
    "ft.details": "详情",
    "ft.trainingFileShort": "训练文件",
    "ft.validationFileShort": "验证文件",
    "ft.adapter": "适配器",
    "ft.trainedTokens": "已训练 Token",
    "ft.seed": "随机种子",
    "ft.error": "错误",
    "ft.progress": "第 {step} 步，共 {total} 步",
    "ft.eta": "预计还需 {s} 秒",
    "ft.chartTitle": "损失与学习率",
    "ft.loss": "训练损失",
    "ft.validLoss": "验证损失",
    "ft.learningRate": "学习率",
    "ft.step": "步数",
    "ft.chartMissing": "图表库未能加载（vendor/chart.umd.min.js；请运行 “make web-assets”）。下方事件列出了每一步。",
    "ft.chartAria": "每一步训练损失和学习率的折线图；事件列表包含相同的数据。",
    "ft.noPoints": "还没有训练步。",
    "ft.logTitle": "日志",
    "ft.eventsTitle": "事件",
    "ft.col.time": "时间",
    "ft.col.level": "级别",
    "ft.col.message": "消息",
    "ft.checkpointsTitle": "检查点",
    "ft.noCheckpoints": "还没有检查点。",
    "ft.col.stepNumber": "步数",
    "ft.col.trainLoss": "训练损失",
    "ft.col.checkpoint": "检查点",
    "ft.evalTitle": "评估",
    "ft.evalIntro": "在留出样本上并排评估微调后的模型与其基础模型。",
    "ft.evalFile": "留出数据集",
    "ft.evalMax": "评估样本数",
    "ft.evalStart": "评估",
    "ft.evalNone": "还没有评估。",
    "ft.evalOnlySucceeded": "微调成功后才能开始评估。",
    "ft.col.bleu": "BLEU",
    "ft.col.exact": "完全匹配",
    "ft.col.accuracy": "准确率",
    "ft.col.examples": "样本数",
    "ft.col.evalModel": "模型",
  },
};
registerStrings(strings);


export const nav = { path: "/fine-tunes", label: "ft.nav" };

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 2000;
const EVENT_PAGE = 100; // the API's largest page
const MAX_EVENT_PAGES = 50;
const SHOWN_EVENTS = 200;
const METRICS_PREFIX = "SUANLI_METRICS ";
const path = (id) => `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;

function percent(value) {
  return value === null || value === undefined ? "—" : `${formatNumber(value * 100, 1)}%`;
}

// ---- list ----

function list(root) {
  const box = h("div", {}, loading());
  let timer = null;
  let stopped = false;
  async function refresh() {
    clearTimeout(timer);
    try {
      const jobs = (await api("/v1/fine_tuning/jobs?limit=100")).data ?? [];
      if (stopped) return;
      fill(box,
        table(
          [
            { label: t("ft.col.id"), value: (j) => h("a", { href: `#/fine-tunes/${encodeURIComponent(j.id)}` }, j.id) },
            { label: t("ft.col.model"), value: (j) => j.model },
            { label: t("ft.col.method"), value: (j) => j.method?.supervised?.training ?? "—" },
            { label: t("ft.col.status"), value: (j) => statusBadge(j.status) },
            { label: t("ft.col.result"), value: (j) => (j.fine_tuned_model ? h("code", {}, j.fine_tuned_model) : "—") },
            { label: t("ft.col.created"), value: (j) => formatTime(j.created_at) },
            { label: t("ft.col.finished"), value: (j) => formatTime(j.finished_at) },
          ],
          jobs,
          { empty: t("ft.empty") },
        ),
      );
      if (jobs.some((j) => !TERMINAL.has(j.status))) timer = setTimeout(refresh, 5000);
    } catch (err) {
      if (!stopped) showError(box, err, refresh);
    }
  }
  fill(root,
    h("div", { class: "row" }, h("h1", {}, t("ft.title")), h("a", { class: "button primary", href: "#/fine-tunes/new" }, t("ft.new"))),
    h("p", { class: "muted" }, t("ft.intro")),
    h("div", { class: "row" }, h("button", { type: "button", onClick: refresh }, t("ft.refresh"))),
    box,
  );
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---- new ----

// A <select> of the user's fine-tune files; `optional` adds a "none" choice.
function fileSelect(id, name, files, chosen, optional) {
  const select = h("select", { id, name }, optional ? h("option", { value: "" }, t("ft.noFile")) : null);
  for (const file of files) {
    select.append(
      h("option", { value: file.id, selected: file.id === chosen }, t("ft.fileOption", { name: file.filename, examples: file.validation?.examples ?? "?", id: file.id })),
    );
  }
  if (chosen && !files.some((f) => f.id === chosen)) select.append(h("option", { value: chosen, selected: true }, chosen));
  return select;
}

// "auto" (or blank) -> "auto"; a number as a number; anything else as typed, for the API to name.
function autoOr(input) {
  const text = input.value.trim();
  if (!text || text.toLowerCase() === "auto") return "auto";
  const number = Number(text);
  return Number.isFinite(number) ? number : text;
}

async function newFineTune(root, params, query) {
  fill(root, h("h1", {}, t("ft.newTitle")), loading());
  let models = [];
  let files = [];
  try {
    const [modelList, fileList] = await Promise.all([api("/api/v1/models"), api("/v1/files?purpose=fine-tune")]);
    models = (modelList.data ?? []).filter((m) => m.state === "ready" && m.kind !== "adapter");
    files = (fileList.data ?? []).filter((f) => f.status === "processed");
  } catch (err) {
    fill(root, h("h1", {}, t("ft.newTitle")), errorBox(err, () => newFineTune(root, params, query)));
    return;
  }
  files.sort((a, b) => b.created_at - a.created_at);
  const listId = "ft-model-list";
  const inputs = {
    model: h("input", { type: "text", id: "ft-model", name: "model", list: listId, value: queryValue(query, "model") ?? models.find((m) => m.kind === "base")?.id ?? "", autocomplete: "off" }),
    training_file: fileSelect("ft-training-file", "training_file", files, queryValue(query, "file") ?? files[0]?.id ?? "", false),
    validation_file: fileSelect("ft-validation-file", "validation_file", files, "", true),
    training: h(
      "select",
      { id: "ft-method", name: "training" },
      ["lora", "qlora", "full"].map((m) => h("option", { value: m }, t(`ft.method.${m}`))),
    ),
    rank: h("input", { type: "number", id: "ft-rank", name: "rank", min: "1", max: "256", value: "16" }),
    gpu_type: gpuTypeSelect("ft-gpu-type"),
    gpu_count: h("input", { type: "number", id: "ft-gpu-count", name: "gpu_count", min: "1", value: "1" }),
    n_epochs: h("input", { type: "text", id: "ft-epochs", name: "n_epochs", value: "auto", inputmode: "numeric" }),
    batch_size: h("input", { type: "text", id: "ft-batch-size", name: "batch_size", value: "auto", inputmode: "numeric" }),
    learning_rate_multiplier: h("input", { type: "text", id: "ft-lr", name: "learning_rate_multiplier", value: "auto", inputmode: "decimal" }),
    suffix: h("input", { type: "text", id: "ft-suffix", name: "suffix", maxlength: "40", pattern: "[A-Za-z0-9._-]{1,40}" }),
  };
  const rankField = field(t("ft.loraRank"), inputs.rank);
  inputs.training.addEventListener("change", () => {
    rankField.hidden = inputs.training.value === "full";
  });
  const result = h("div", { class: "form-result", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary", id: "ft-submit" }, t("ft.submit"));

  async function send(event) {
    event.preventDefault();
    for (const input of Object.values(inputs)) input.removeAttribute("aria-invalid");
    const training = inputs.training.value;
    const supervised = {
      training,
      hyperparameters: {
        n_epochs: autoOr(inputs.n_epochs),
        batch_size: autoOr(inputs.batch_size),
        learning_rate_multiplier: autoOr(inputs.learning_rate_multiplier),
      },
    };
    if (training !== "full" && inputs.rank.value.trim()) supervised.lora = { rank: Number(inputs.rank.value) };
    const body = { model: inputs.model.value.trim(), training_file: inputs.training_file.value, method: { type: "supervised", supervised } };
    if (inputs.validation_file.value) body.validation_file = inputs.validation_file.value;
    if (inputs.suffix.value.trim()) body.suffix = inputs.suffix.value.trim();
    const metadata = {};
    if (inputs.gpu_type.value) metadata.gpu_type = inputs.gpu_type.value;
    if (inputs.gpu_count.value.trim()) metadata.gpu_count = inputs.gpu_count.value.trim();
    if (Object.keys(metadata).length) body.metadata = metadata;
    submit.disabled = true;
    submit.textContent = t("ft.submitting");
    fill(result);
    try {
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", json: body, headers: { "Idempotency-Key": idempotencyKey() } });
      window.location.hash = `#/fine-tunes/${encodeURIComponent(job.id)}`;
    } catch (err) {
      const name = String(err?.param ?? "").split(".").pop();
      const wrong = inputs[name] ?? (String(err?.param ?? "").startsWith("metadata") ? inputs.gpu_type : null);
      if (wrong) {
        wrong.setAttribute("aria-invalid", "true");
        wrong.focus();
      }
      fill(result, errorBox(err));
    } finally {
      submit.disabled = false;
      submit.textContent = t("ft.submit");
    }
  }

  fill(root,
    h("p", {}, h("a", { href: "#/fine-tunes" }, t("ft.back"))),
    h("h1", {}, t("ft.newTitle")),
    files.length ? null : h("p", { class: "muted" }, h("a", { href: "#/datasets" }, t("ft.noDatasets"))),
    h(
      "section",
      { class: "card" },
      h(
        "form",
        { class: "ft-form", novalidate: true, onSubmit: send },
        field(t("ft.model"), inputs.model, t("ft.modelHelp")),
        h("datalist", { id: listId }, models.map((m) => h("option", { value: m.id }, `${m.id} (${m.kind})`))),
        field(t("ft.trainingFile"), inputs.training_file),
        field(t("ft.validationFile"), inputs.validation_file, t("ft.validationHelp")),
        h("div", { class: "row" }, field(t("ft.method"), inputs.training), rankField),
        h("div", { class: "row" }, field(t("ft.gpuType"), inputs.gpu_type), field(t("ft.gpuCount"), inputs.gpu_count)),
        h(
          "fieldset",
          {},
          h("legend", {}, t("ft.hyper")),
          h("p", { class: "help small muted" }, t("ft.hyperHelp")),
          h("div", { class: "row" }, field(t("ft.epochs"), inputs.n_epochs), field(t("ft.batchSize"), inputs.batch_size), field(t("ft.lrMultiplier"), inputs.learning_rate_multiplier, t("ft.lrHelp"))),
        ),
        field(t("ft.suffix"), inputs.suffix, t("ft.suffixHelp")),
        submit,
        result,
      ),
    ),
  );
}

// ---- detail ----

// The loss / learning-rate chart, keyed by step (a resumed attempt's step replaces the old one).
function lossChart() {
  const canvas = h("canvas", { id: "ft-chart", role: "img", "aria-label": t("ft.chartAria") });
  // Sized here: the chart fills its box (maintainAspectRatio off), so the box needs a height.
  const el = h("div", { class: "chart-box", style: { position: "relative", height: "320px", maxWidth: "100%" } });
  const points = new Map(); // step -> {loss, lr, valid}
  let chart = null;
  if (typeof window.Chart === "function") {
    el.append(canvas);
    try {
      chart = new window.Chart(canvas, {
        type: "line",
        data: {
          datasets: [
            { label: t("ft.loss"), data: [], yAxisID: "y", borderColor: "#2563eb", backgroundColor: "#2563eb", pointRadius: 2, tension: 0.2 },
            { label: t("ft.learningRate"), data: [], yAxisID: "lr", borderColor: "#d97706", backgroundColor: "#d97706", pointRadius: 0, borderDash: [4, 3] },
            { label: t("ft.validLoss"), data: [], yAxisID: "y", borderColor: "#059669", backgroundColor: "#059669", pointRadius: 3, showLine: false },
          ],
        },
        options: {
          animation: false,
          parsing: false,
          normalized: true,
          maintainAspectRatio: false,
          interaction: { mode: "nearest", axis: "x", intersect: false },
          scales: {
            x: { type: "linear", title: { display: true, text: t("ft.step") }, ticks: { precision: 0 } },
            y: { type: "linear", position: "left", title: { display: true, text: t("ft.loss") } },
            lr: { type: "linear", position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: t("ft.learningRate") } },
          },
        },
      });
    } catch (err) {
      fill(el, errorBox(err));
    }
  } else {
    el.append(h("p", { class: "muted" }, t("ft.chartMissing")));
  }
  return {
    el,
    add(metrics) {
      const step = metrics?.step;
      if (!Number.isInteger(step)) return false;
      const loss = metrics.train_loss ?? metrics.loss ?? null;
      const known = points.get(step);
      const next = { loss, lr: metrics.learning_rate ?? null, valid: metrics.valid_loss ?? null };
      if (known && known.loss === next.loss && known.lr === next.lr && known.valid === next.valid) return false;
      points.set(step, next);
      return true;
    },
    draw() {
      if (!chart) return;
      const steps = [...points.keys()].sort((a, b) => a - b);
      const series = (key) => steps.filter((s) => points.get(s)[key] !== null).map((s) => ({ x: s, y: points.get(s)[key] }));
      chart.data.datasets[0].data = series("loss");
      chart.data.datasets[1].data = series("lr");
      chart.data.datasets[2].data = series("valid");
      chart.update("none");
    },
    destroy() {
      chart?.destroy();
    },
  };
}

// Fetches a model through the API (it needs the session's token) and hands it to the browser.
async function download(model, button) {
  const label = button.textContent;
  button.disabled = true;
  try {
    const response = await api(`/api/v1/models/${model.split("/").map(encodeURIComponent).join("/")}/download`, { raw: true });
    const reader = response.body.getReader();
    const parts = [];
    let size = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.length;
      button.textContent = t("ft.downloading", { size: `${formatNumber(size / 1048576, 1)} MiB` });
    }
    const href = URL.createObjectURL(new Blob(parts, { type: "application/x-tar" }));
    const link = h("a", { href, download: `${model.replace(/[/:]/g, "_")}.tar` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, value]) => value !== null && value !== undefined && value !== "").map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

function evaluationsSection(jobId) {
  const box = h("div", {}, loading());
  const form = h("div", {});
  const el = h("section", { class: "card", "aria-labelledby": "ft-eval-title" }, h("h2", { id: "ft-eval-title" }, t("ft.evalTitle")), h("p", { class: "muted" }, t("ft.evalIntro")), form, box);
  let timer = null;
  let stopped = false;
  let formShown = false;

  async function refresh() {
    clearTimeout(timer);
    try {
      const evaluations = (await api(`/api/v1/evaluations?fine_tuning_job=${encodeURIComponent(jobId)}`)).data ?? [];
      if (stopped) return;
      const rows = evaluations.flatMap((e) => (e.results?.length ? e.results.map((r) => ({ e, r })) : [{ e, r: null }]));
      fill(box,
        table(
          [
            { label: t("ft.col.id"), value: ({ e }) => e.id },
            { label: t("ft.col.status"), value: ({ e }) => [statusBadge(e.status), e.error ? ` ${e.error.message}` : null] },
            { label: t("ft.col.evalModel"), value: ({ e, r }) => r?.model ?? e.model },
            { label: t("ft.col.bleu"), value: ({ r }) => formatNumber(r?.bleu, 1) },
            { label: t("ft.col.exact"), value: ({ r }) => percent(r?.exact_match) },
            { label: t("ft.col.accuracy"), value: ({ r }) => percent(r?.accuracy) },
            { label: t("ft.col.examples"), value: ({ r }) => formatNumber(r?.examples) },
          ],
          rows,
          { empty: t("ft.evalNone") },
        ),
      );
      if (evaluations.some((e) => !TERMINAL.has(e.status))) timer = setTimeout(refresh, POLL_MS);
    } catch (err) {
      if (!stopped) showError(box, err, refresh);
    }
  }

  async function showForm(job) {
    if (formShown) return;
    formShown = true;
    if (job.status !== "succeeded") {
      fill(form, h("p", { class: "small muted" }, t("ft.evalOnlySucceeded")));
      formShown = false;
      return;
    }
    let files = [];
    try {
      files = ((await api("/v1/files?purpose=fine-tune")).data ?? []).filter((f) => f.status === "processed");
    } catch (err) {
      fill(form, errorBox(err));
      return;
    }
    const file = fileSelect("ft-eval-file", "file", files, job.validation_file ?? job.training_file, false);
    const max = h("input", { type: "number", id: "ft-eval-max", name: "max_examples", min: "1", value: "20" });
    const result = h("div", { "aria-live": "polite" });
    const start = h("button", { type: "submit" }, t("ft.evalStart"));
    fill(form,
      h(
        "form",
        {
          class: "row",
          novalidate: true,
          onSubmit: async (event) => {
            event.preventDefault();
            start.disabled = true;
            fill(result);
            try {
              await api("/api/v1/evaluations", {
                method: "POST",
                json: { fine_tuning_job: jobId, file: file.value, max_examples: Number(max.value) || 20 },
                headers: { "Idempotency-Key": idempotencyKey() },
              });
              await refresh();
            } catch (err) {
              fill(result, errorBox(err));
            } finally {
              start.disabled = false;
            }
          },
        },
        field(t("ft.evalFile"), file),
        field(t("ft.evalMax"), max),
        start,
      ),
      result,
    );
  }

  refresh();
  return {
    el,
    update: showForm,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

function detail(root, params) {
  const id = params.id;
  const head = h("div", {}, loading());
  const info = h("section", { class: "card" });
  const progress = progressBar();
  progress.el.hidden = true;
  const chart = lossChart();
  const eventsBox = h("div", { class: "events" });
  const checkpointsBox = h("div", { class: "checkpoints" });
  const seen = new Set();
  const events = []; // newest first
  let job = null;
  let timer = null;
  let stopped = false;
  let polling = false;
  let checkpointsWanted = true;
  let lastStep = null;

  const noteStep = (metrics) => {
    if (Number.isInteger(metrics?.step) && (!lastStep || metrics.step >= lastStep.step)) lastStep = metrics;
  };
  const tail = logTail(id, {
    onLine(line) {
      if (!line.startsWith(METRICS_PREFIX)) return line.startsWith("SUANLI_") ? false : true;
      try {
        const metrics = JSON.parse(line.slice(METRICS_PREFIX.length));
        noteStep(metrics);
        if (chart.add(metrics)) chart.draw();
        showProgress();
      } catch {
        // a cut line: the events API has the same step
      }
      return false; // the human line that follows says the same
    },
    onEnd: () => poll(),
  });
  const evaluations = evaluationsSection(id);

  function showProgress() {
    if (!lastStep?.total_steps || (job && TERMINAL.has(job.status))) {
      progress.el.hidden = true;
      return;
    }
    progress.el.hidden = false;
    const eta = Number.isFinite(lastStep.eta_seconds) ? ` — ${t("ft.eta", { s: Math.round(lastStep.eta_seconds) })}` : "";
    progress.set(lastStep.step / lastStep.total_steps, t("ft.progress", { step: lastStep.step, total: lastStep.total_steps }) + eta);
  }

  // New events since the last look: pages until one already seen (they come newest first).
  async function newEvents() {
    const found = [];
    let after = null;
    for (let page = 0; page < MAX_EVENT_PAGES; page += 1) {
      const answer = await api(`${path(id)}/events?limit=${EVENT_PAGE}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      const data = answer.data ?? [];
      let reachedSeen = false;
      for (const event of data) {
        if (seen.has(event.id)) {
          reachedSeen = true;
          break;
        }
        found.push(event);
      }
      if (reachedSeen || !answer.has_more || !data.length) break;
      after = data[data.length - 1].id;
    }
    return found;
  }

  function renderHead() {
    const ended = TERMINAL.has(job.status);
    const actions = h("div", { class: "actions" });
    if (!ended) {
      const cancel = h("button", { type: "button", class: "danger", id: "ft-cancel" }, t("ft.cancel"));
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        cancel.textContent = t("ft.cancelling");
        try {
          job = await api(`${path(id)}/cancel`, { method: "POST" });
          renderHead();
          poll();
        } catch (err) {
          actions.append(errorBox(err));
          cancel.disabled = false;
          cancel.textContent = t("ft.cancel");
        }
      });
      actions.append(cancel);
    }
    if (job.status === "succeeded" && job.fine_tuned_model) {
      const button = h("button", { type: "button", id: "ft-download" }, t("ft.download"));
      button.addEventListener("click", () => download(job.fine_tuned_model, button).catch((err) => actions.append(errorBox(err))));
      actions.append(button);
    }
    fill(head,
      h("div", { class: "row" }, h("h1", {}, job.user_provided_suffix ? `${job.id} (${job.user_provided_suffix})` : job.id), h("span", { id: "ft-status" }, statusBadge(job.status)), actions),
      job.error ? errorBox(job.error.message) : null,
      progress.el,
    );
    const supervised = job.method?.supervised ?? {};
    const hp = supervised.hyperparameters ?? job.hyperparameters ?? {};
    fill(info,
      h("h2", {}, t("ft.details")),
      facts([
        [t("ft.model"), job.model],
        [t("ft.method"), supervised.training ? t(`ft.method.${supervised.training}`) : null],
        [t("ft.loraRank"), supervised.training !== "full" ? supervised.lora?.rank : null],
        [t("ft.trainingFileShort"), h("code", {}, job.training_file)],
        [t("ft.validationFileShort"), job.validation_file],
        [t("ft.epochs"), String(hp.n_epochs ?? "auto")],
        [t("ft.batchSize"), String(hp.batch_size ?? "auto")],
        [t("ft.lrMultiplier"), String(hp.learning_rate_multiplier ?? "auto")],
        [t("ft.gpuType"), job.metadata?.gpu_type],
        [t("ft.gpuCount"), job.metadata?.gpu_count],
        [t("ft.seed"), String(job.seed)],
        [t("ft.col.result"), job.fine_tuned_model ? h("code", {}, job.fine_tuned_model) : null],
        [t("ft.adapter"), job.adapter_model ? h("code", {}, job.adapter_model) : null],
        [t("ft.trainedTokens"), job.trained_tokens ? formatNumber(job.trained_tokens) : null],
        [t("ft.col.created"), formatTime(job.created_at)],
        [t("ft.col.finished"), job.finished_at ? formatTime(job.finished_at) : null],
      ]),
    );
  }

  function renderEvents() {
    fill(eventsBox,
      table(
        [
          { label: t("ft.col.time"), value: (e) => formatTime(e.created_at) },
          { label: t("ft.col.level"), value: (e) => h("span", { class: `level-${e.level}` }, e.level) },
          { label: t("ft.col.message"), value: (e) => e.message },
        ],
        events.slice(0, SHOWN_EVENTS),
      ),
    );
  }

  async function loadCheckpoints() {
    try {
      const page = await api(`${path(id)}/checkpoints?limit=100`);
      fill(checkpointsBox,
        table(
          [
            { label: t("ft.col.stepNumber"), value: (c) => String(c.step_number) },
            { label: t("ft.col.trainLoss"), value: (c) => formatNumber(c.metrics?.train_loss, 4) },
            { label: t("ft.col.checkpoint"), value: (c) => h("code", {}, c.fine_tuned_model_checkpoint) },
            { label: t("ft.col.time"), value: (c) => formatTime(c.created_at) },
          ],
          page.data ?? [],
          { empty: t("ft.noCheckpoints") },
        ),
      );
      checkpointsWanted = false;
    } catch (err) {
      showError(checkpointsBox, err, loadCheckpoints);
    }
  }

  async function poll() {
    if (stopped || polling) return;
    polling = true;
    clearTimeout(timer);
    try {
      job = await api(path(id));
      if (stopped) return;
      const fresh = await newEvents();
      if (stopped) return;
      let drawn = false;
      for (const event of fresh.slice().reverse()) {
        seen.add(event.id);
        events.unshift(event);
        if (event.type === "metrics" && event.data) {
          noteStep(event.data);
          drawn = chart.add(event.data) || drawn;
        }
        if (event.message.startsWith("Checkpoint")) checkpointsWanted = true;
      }
      if (drawn) chart.draw();
      renderHead();
      showProgress();
      if (fresh.length || !eventsBox.firstChild) renderEvents();
      const ended = TERMINAL.has(job.status);
      if (checkpointsWanted || (ended && fresh.length)) await loadCheckpoints();
      if (ended) evaluations.update(job);
      else timer = setTimeout(poll, POLL_MS);
    } catch (err) {
      if (stopped) return;
      if (!job) showError(head, err, poll);
      else {
        head.append(errorBox(err));
        timer = setTimeout(poll, POLL_MS * 2);
      }
    } finally {
      polling = false;
    }
  }

  fill(root,
    h("p", {}, h("a", { href: "#/fine-tunes" }, t("ft.back"))),
    head,
    h("section", { class: "card", "aria-labelledby": "ft-chart-title" }, h("h2", { id: "ft-chart-title" }, t("ft.chartTitle")), chart.el),
    h("section", { class: "card", "aria-labelledby": "ft-log-title" }, h("h2", { id: "ft-log-title" }, t("ft.logTitle")), tail.el),
    info,
    h("section", { class: "card", "aria-labelledby": "ft-events-title" }, h("h2", { id: "ft-events-title" }, t("ft.eventsTitle")), eventsBox),
    h("section", { class: "card", "aria-labelledby": "ft-ckpt-title" }, h("h2", { id: "ft-ckpt-title" }, t("ft.checkpointsTitle")), checkpointsBox),
    evaluations.el,
  );
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
    tail.stop();
    evaluations.stop();
    chart.destroy();
  };
}

export const routes = [
  { path: "/fine-tunes", render: list },
  { path: "/fine-tunes/new", render: newFineTune },
  { path: "/fine-tunes/:id", render: detail },
];
