// #/datasets: the user's fine-tune files — upload with progress, the catalog's validation (format,
// examples, tokens; a refused file's errors by line), a preview of the first examples, delete.

import { api, upload } from "../api.js";
import { registerStrings, t } from "../i18n.js";
import { errorBox, fill, field, formatBytes, formatNumber, formatTime, h, loading, progressBar, showError, statusBadge, table } from "../ui.js";

export const strings = {
  en: {
    "ds.nav": "Datasets",
    "ds.title": "Datasets",
    "ds.intro": "Training data for fine-tunes: JSONL in OpenAI messages, alpaca or sharegpt format. Each file is checked as it uploads.",
    "ds.uploadTitle": "Upload a dataset",
    "ds.file": "Dataset file",
    "ds.fileHelp": "A .jsonl file (one example per line) or a .json array of examples.",
    "ds.upload": "Upload",
    "ds.uploading": "Uploading… {pct}%",
    "ds.validating": "100% sent — validating…",
    "ds.uploaded": "100% — uploaded and validated",
    "ds.refused": "Upload refused",
    "ds.chooseFile": "Choose a file first.",
    "ds.invalidTitle": "{name} is not a valid fine-tune file:",
    "ds.line": "Line {line}",
    "ds.wholeFile": "Whole file",
    "ds.accepted": "{name} was accepted: {examples} examples, {tokens} tokens ({format}; counted with {tokenizer}).",
    "ds.listTitle": "Your datasets",
    "ds.refresh": "Refresh",
    "ds.col.name": "File",
    "ds.col.id": "ID",
    "ds.col.size": "Size",
    "ds.col.format": "Format",
    "ds.col.examples": "Examples",
    "ds.col.tokens": "Tokens",
    "ds.col.status": "Status",
    "ds.col.created": "Uploaded",
    "ds.col.actions": "Actions",
    "ds.empty": "No datasets yet: upload one above.",
    "ds.preview": "Preview",
    "ds.fineTune": "Fine-tune",
    "ds.delete": "Delete",
    "ds.confirmDelete": "Delete {name}? Fine-tunes that used it keep their results.",
    "ds.deleted": "{name} was deleted.",
    "ds.previewTitle": "First examples of {name}",
    "ds.previewMore": "Showing the first {count} lines.",
    "ds.previewEmpty": "The file is empty.",
    "ds.close": "Close preview",
  },
  zh: {
    "ds.nav": "数据集",
    "ds.title": "数据集",
    "ds.intro": "用于微调的训练数据：OpenAI messages、alpaca 或 sharegpt 格式的 JSONL。每个文件在上传时都会被校验。",
    "ds.uploadTitle": "上传数据集",
    "ds.file": "数据集文件",
    "ds.fileHelp": ".jsonl 文件（每行一个样本）或包含样本数组的 .json 文件。",
    "ds.upload": "上传",
    "ds.uploading": "正在上传… {pct}%",
    "ds.validating": "已发送 100%，正在校验…",
    "ds.uploaded": "100% — 已上传并通过校验",
    "ds.refused": "上传被拒绝",
    "ds.chooseFile": "请先选择文件。",
    "ds.invalidTitle": "{name} 不是有效的微调文件：",
    "ds.line": "第 {line} 行",
    "ds.wholeFile": "整个文件",
    "ds.accepted": "{name} 已接受：{examples} 个样本，{tokens} 个 Token（{format}；使用 {tokenizer} 计数）。",
    "ds.listTitle": "我的数据集",
    "ds.refresh": "刷新",
    "ds.col.name": "文件",
    "ds.col.id": "ID",
    "ds.col.size": "大小",
    "ds.col.format": "格式",
    "ds.col.examples": "样本数",
    "ds.col.tokens": "Token 数",
    "ds.col.status": "状态",
    "ds.col.created": "上传时间",
    "ds.col.actions": "操作",
    "ds.empty": "还没有数据集：请在上方上传。",
    "ds.preview": "预览",
    "ds.fineTune": "微调",
    "ds.delete": "删除",
    "ds.confirmDelete": "删除 {name}？使用过它的微调任务会保留其结果。",
    "ds.deleted": "{name} 已删除。",
    "ds.previewTitle": "{name} 的前几个样本",
    "ds.previewMore": "显示前 {count} 行。",
    "ds.previewEmpty": "文件为空。",
    "ds.close": "关闭预览",
  },
};
registerStrings(strings);


export const nav = { path: "/datasets", label: "ds.nav" };

const PREVIEW_LINES = 5;
const PREVIEW_BYTES = 64 * 1024;

// The catalog refuses a bad file with one message: "NAME is not a valid fine-tune file: line 2: X;
// line 5: Y" (services/catalog/suanli_catalog/validation.py). Split back into rows by line.
export function validationIssues(message) {
  const marker = " is not a valid fine-tune file: ";
  const at = message.indexOf(marker);
  if (at < 0) return null;
  return message
    .slice(at + marker.length)
    .split("; ")
    .map((part) => {
      const match = /^(?:(.+?) )?line (\d+): (.*)$/s.exec(part);
      if (!match) return { line: 0, source: "", message: part };
      return { line: Number(match[2]), source: match[1] ?? "", message: match[3] };
    });
}

function refusal(err, filename) {
  const issues = err?.code === "invalid_file" ? validationIssues(err.message) : null;
  if (!issues) return errorBox(err);
  return h(
    "div",
    { class: "error-box validation-errors", role: "alert" },
    h("p", { class: "error-message" }, t("ds.invalidTitle", { name: filename })),
    h(
      "ol",
      { class: "issues" },
      issues.map((issue) =>
        h(
          "li",
          { "data-line": String(issue.line) },
          h("strong", {}, [issue.source, issue.line ? t("ds.line", { line: issue.line }) : t("ds.wholeFile")].filter(Boolean).join(" ")),
          ": ",
          issue.message,
        ),
      ),
    ),
  );
}

// The first lines of a file, read from its content route without fetching all of it.
async function firstLines(fileId) {
  const response = await api(`/v1/files/${encodeURIComponent(fileId)}/content`, { raw: true });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let read = 0;
  try {
    while (read < PREVIEW_BYTES && text.split("\n").length <= PREVIEW_LINES) {
      const { value, done } = await reader.read();
      if (done) break;
      read += value.length;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return text.split("\n").slice(0, PREVIEW_LINES).filter((line, i) => line.trim() || i === 0);
}

function pretty(line) {
  try {
    return JSON.stringify(JSON.parse(line), null, 2);
  } catch {
    return line;
  }
}

async function showPreview(panel, file) {
  fill(panel, loading());
  panel.hidden = false;
  try {
    const lines = (await firstLines(file.id)).filter((line) => line.trim());
    fill(panel,
      h("div", { class: "row" }, h("h3", {}, t("ds.previewTitle", { name: file.filename })), h("button", { type: "button", onClick: () => { panel.hidden = true; } }, t("ds.close"))),
      lines.length
        ? h("ol", { class: "preview-lines" }, lines.map((line) => h("li", {}, h("pre", {}, pretty(line)))))
        : h("p", { class: "muted" }, t("ds.previewEmpty")),
      lines.length ? h("p", { class: "small muted" }, t("ds.previewMore", { count: lines.length })) : null,
    );
  } catch (err) {
    showError(panel, err, () => showPreview(panel, file));
  }
}

function datasets(root) {
  const input = h("input", { type: "file", name: "file", accept: ".jsonl,.json,.zip,.tar,.gz,application/json" });
  const bar = progressBar();
  bar.el.hidden = true;
  const result = h("div", { class: "upload-result", "aria-live": "polite" });
  const listBox = h("div", { class: "datasets-list" });
  const notice = h("p", { class: "muted", role: "status" });
  const preview = h("section", { class: "card preview", hidden: true, "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, t("ds.upload"));

  async function refresh() {
    fill(listBox, loading());
    try {
      const files = (await api("/v1/files?purpose=fine-tune")).data ?? [];
      files.sort((a, b) => b.created_at - a.created_at);
      fill(listBox,
        table(
          [
            { label: t("ds.col.name"), value: (f) => f.filename },
            { label: t("ds.col.id"), value: (f) => h("code", {}, f.id) },
            { label: t("ds.col.size"), value: (f) => formatBytes(f.bytes) },
            { label: t("ds.col.format"), value: (f) => f.validation?.format ?? "—" },
            { label: t("ds.col.examples"), value: (f) => formatNumber(f.validation?.examples) },
            { label: t("ds.col.tokens"), value: (f) => formatNumber(f.validation?.tokens) },
            { label: t("ds.col.status"), value: (f) => statusBadge(f.status) },
            { label: t("ds.col.created"), value: (f) => formatTime(f.created_at) },
            {
              label: t("ds.col.actions"),
              value: (f) =>
                h(
                  "div",
                  { class: "actions" },
                  h("button", { type: "button", onClick: () => showPreview(preview, f) }, t("ds.preview")),
                  h("a", { class: "button", href: `#/fine-tunes/new?file=${encodeURIComponent(f.id)}` }, t("ds.fineTune")),
                  h("button", { type: "button", class: "danger", onClick: () => remove(f) }, t("ds.delete")),
                ),
            },
          ],
          files,
          { empty: t("ds.empty") },
        ),
      );
    } catch (err) {
      showError(listBox, err, refresh);
    }
  }

  async function remove(file) {
    if (!window.confirm(t("ds.confirmDelete", { name: file.filename }))) return;
    try {
      await api(`/v1/files/${encodeURIComponent(file.id)}`, { method: "DELETE" });
      notice.textContent = t("ds.deleted", { name: file.filename });
      preview.hidden = true;
      await refresh();
    } catch (err) {
      fill(result, errorBox(err));
    }
  }

  async function send(event) {
    event.preventDefault();
    const file = input.files?.[0];
    fill(result);
    if (!file) {
      fill(result, errorBox(t("ds.chooseFile")));
      return;
    }
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", file, file.name);
    bar.el.hidden = false;
    bar.set(0, t("ds.uploading", { pct: 0 }));
    submit.disabled = true;
    try {
      const stored = await upload("/v1/files", form, (fraction) => {
        bar.set(fraction, fraction >= 1 ? t("ds.validating") : t("ds.uploading", { pct: Math.floor(fraction * 100) }));
      });
      bar.set(1, t("ds.uploaded"));
      const v = stored.validation;
      if (v) {
        fill(result,
          h("p", { class: "ok", role: "status" }, t("ds.accepted", { name: stored.filename, examples: formatNumber(v.examples), tokens: formatNumber(v.tokens), format: v.format, tokenizer: v.tokenizer })),
        );
      }
      input.value = "";
      await refresh();
    } catch (err) {
      bar.el.hidden = true;
      fill(result, h("h3", {}, t("ds.refused")), refusal(err, file.name));
    } finally {
      submit.disabled = false;
    }
  }

  fill(root,
    h("h1", {}, t("ds.title")),
    h("p", { class: "muted" }, t("ds.intro")),
    h(
      "section",
      { class: "card", "aria-labelledby": "ds-upload-title" },
      h("h2", { id: "ds-upload-title" }, t("ds.uploadTitle")),
      h("form", { class: "upload-form", onSubmit: send }, field(t("ds.file"), input, t("ds.fileHelp")), submit),
      h("div", { class: "upload-progress" }, bar.el),
      result,
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "ds-list-title" },
      h("div", { class: "row" }, h("h2", { id: "ds-list-title" }, t("ds.listTitle")), h("button", { type: "button", onClick: refresh }, t("ds.refresh"))),
      notice,
      listBox,
    ),
    preview,
  );
  refresh();
}

export const routes = [{ path: "/datasets", render: datasets }];
