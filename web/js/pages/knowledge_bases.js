// Knowledge bases: a knowledge base is an OpenAI vector store (/v1/vector_stores, same id) bound to
// a deployed chat model. Upload documents and watch them indexed, preview their chunks through
// search, and ask questions answered with citations of the source passages.

import { api, streamSSE, upload } from "../api.js";
import { t } from "../i18n.js";
import { errorBox, field, formatBytes, formatTime, h, progressBar, showError, statusBadge, table } from "../ui.js";

const POLL_MS = 1500;
const PREVIEW_RESULTS = 50;

export const strings = {
  en: {
    "kb.nav": "Knowledge bases",
    "kb.title": "Knowledge bases",
    "kb.intro": "Upload documents, then ask questions: answers come from a deployed model, with citations of the passages they rest on.",
    "kb.create": "New knowledge base",
    "kb.name": "Name",
    "kb.namePlaceholder": "handbook",
    "kb.description": "Description",
    "kb.model": "Answering model",
    "kb.modelHelp": "A deployed chat model. Empty: the platform's default model.",
    "kb.modelDefault": "Platform default",
    "kb.creating": "Creating…",
    "kb.submit": "Create",
    "kb.empty": "No knowledge base yet.",
    "kb.documents": "Documents",
    "kb.documentsValue": "{completed} indexed of {total}",
    "kb.size": "Size",
    "kb.created": "Created",
    "kb.actions": "Actions",
    "kb.open": "Open",
    "kb.delete": "Delete",
    "kb.confirmDelete": "Delete the knowledge base {name} and its indexed documents?",
    "kb.back": "All knowledge bases",
    "kb.embedding": "Embedding model",
    "kb.id": "ID",
    "kb.page": "page {page}",
    "kb.chunkingLabel": "Chunking",
    "kb.chunking": "Chunks of {size} tokens, {overlap} shared",
    "kb.upload": "Add documents",
    "kb.uploadHelp": "PDF, DOCX, HTML, Markdown, text or CSV, in English or Chinese.",
    "kb.files": "Files",
    "kb.uploadButton": "Upload",
    "kb.noFiles": "Choose one or more files first.",
    "kb.uploading": "Uploading {name}…",
    "kb.attaching": "Indexing {name}…",
    "kb.indexProgress": "{name}: {chunks} of {total} chunks",
    "kb.indexed": "{name}: indexed",
    "kb.indexFailed": "{name}: failed",
    "kb.filename": "Document",
    "kb.status": "Status",
    "kb.chunks": "Chunks",
    "kb.error": "Error",
    "kb.preview": "Preview chunks",
    "kb.remove": "Remove",
    "kb.noDocuments": "No document yet: upload one above.",
    "kb.previewTitle": "Chunks of {name}",
    "kb.previewHelp": "The passages search finds in this document, in document order.",
    "kb.previewNone": "Search found no chunk of this document.",
    "kb.chunk": "Chunk {n}",
    "kb.score": "score {score}",
    "kb.search": "Search passages",
    "kb.query": "Search for",
    "kb.searchButton": "Search",
    "kb.noResults": "No passage matches.",
    "kb.ask": "Ask",
    "kb.question": "Question",
    "kb.questionPlaceholder": "What is the launch code?",
    "kb.askButton": "Ask",
    "kb.asking": "Answering…",
    "kb.emptyQuestion": "Type a question first.",
    "kb.answer": "Answer",
    "kb.sources": "Sources",
    "kb.cited": "cited",
    "kb.notFound": "Nothing in the documents is about this question.",
    "kb.citationHead": "[{n}] {file} · chunk {chunk} · score {score}",
  },
  zh: {
    "kb.nav": "知识库",
    "kb.title": "知识库",
    "kb.intro": "上传文档后即可提问：由已部署的模型作答，并引用答案所依据的原文段落。",
    "kb.create": "新建知识库",
    "kb.name": "名称",
    "kb.namePlaceholder": "员工手册",
    "kb.description": "描述",
    "kb.model": "回答模型",
    "kb.modelHelp": "已部署的对话模型。留空：使用平台默认模型。",
    "kb.modelDefault": "平台默认",
    "kb.creating": "正在创建…",
    "kb.submit": "创建",
    "kb.empty": "还没有知识库。",
    "kb.documents": "文档",
    "kb.documentsValue": "已索引 {completed} / 共 {total}",
    "kb.size": "大小",
    "kb.created": "创建时间",
    "kb.actions": "操作",
    "kb.open": "打开",
    "kb.delete": "删除",
    "kb.confirmDelete": "删除知识库 {name} 及其已索引的文档？",
    "kb.back": "全部知识库",
    "kb.embedding": "嵌入模型",
    "kb.id": "ID",
    "kb.page": "第 {page} 页",
    "kb.chunkingLabel": "分块方式",
    "kb.chunking": "每块 {size} token，相邻块重叠 {overlap} token",
    "kb.upload": "添加文档",
    "kb.uploadHelp": "支持 PDF、DOCX、HTML、Markdown、纯文本和 CSV，中英文均可。",
    "kb.files": "文件",
    "kb.uploadButton": "上传",
    "kb.noFiles": "请先选择一个或多个文件。",
    "kb.uploading": "正在上传 {name}…",
    "kb.attaching": "正在索引 {name}…",
    "kb.indexProgress": "{name}：已处理 {chunks} / {total} 块",
    "kb.indexed": "{name}：索引完成",
    "kb.indexFailed": "{name}：索引失败",
    "kb.filename": "文档",
    "kb.status": "状态",
    "kb.chunks": "分块数",
    "kb.error": "错误",
    "kb.preview": "预览分块",
    "kb.remove": "移除",
    "kb.noDocuments": "还没有文档：请在上方上传。",
    "kb.previewTitle": "{name} 的分块",
    "kb.previewHelp": "检索在该文档中找到的段落，按文档顺序排列。",
    "kb.previewNone": "检索没有找到该文档的分块。",
    "kb.chunk": "第 {n} 块",
    "kb.score": "相关度 {score}",
    "kb.search": "检索段落",
    "kb.query": "检索内容",
    "kb.searchButton": "检索",
    "kb.noResults": "没有匹配的段落。",
    "kb.ask": "提问",
    "kb.question": "问题",
    "kb.questionPlaceholder": "发布代码是什么？",
    "kb.askButton": "提问",
    "kb.asking": "正在回答…",
    "kb.emptyQuestion": "请先输入问题。",
    "kb.answer": "回答",
    "kb.sources": "来源",
    "kb.cited": "已引用",
    "kb.notFound": "文档中没有与该问题相关的内容。",
    "kb.citationHead": "[{n}] {file} · 第 {chunk} 块 · 相关度 {score}",
  },
};

export const nav = { path: "/knowledge-bases", label: "kb.nav" };

export const routes = [
  { path: "/knowledge-bases", render: list },
  { path: "/knowledge-bases/:id", render: detail },
];

const storePath = (id) => `/v1/vector_stores/${encodeURIComponent(id)}`;
const score = (value) => Number(value).toFixed(3);

const fact = (label, value) => h("div", {}, h("dt", {}, label), h("dd", {}, value));

function kbLink(kb) {
  return `#/knowledge-bases/${encodeURIComponent(kb.id)}`;
}

// ---- list and create -----------------------------------------------------------------------

function list(root) {
  const body = h("div", {}, t("ui.loading"));
  const formError = h("div");
  const actionError = h("div");
  const nameInput = h("input", { id: "kb-name", type: "text", maxlength: "256", placeholder: t("kb.namePlaceholder") });
  const descriptionInput = h("input", { id: "kb-description", type: "text", maxlength: "512" });
  const modelSelect = h("select", { id: "kb-model" }, h("option", { value: "" }, t("kb.modelDefault")));
  const submit = h("button", { type: "submit", class: "button primary" }, t("kb.submit"));
  const form = h(
    "form",
    { class: "form kb-create" },
    field(t("kb.name"), nameInput),
    field(t("kb.description"), descriptionInput),
    field(t("kb.model"), modelSelect, t("kb.modelHelp")),
    formError,
    h("div", { class: "actions" }, submit),
  );
  root.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("h1", {}, t("kb.title")),
      h("p", { class: "muted" }, t("kb.intro")),
      actionError,
      body,
      h("section", { class: "card" }, h("h2", {}, t("kb.create")), form),
    ),
  );

  api("/v1/models")
    .then((answer) => {
      for (const model of answer?.data || []) modelSelect.append(h("option", { value: model.id }, model.id));
    })
    .catch((err) => formError.replaceChildren(errorBox(err)));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.replaceChildren();
    submit.disabled = true;
    submit.textContent = t("kb.creating");
    try {
      const kb = await api("/v1/vector_stores", {
        method: "POST",
        json: {
          name: nameInput.value.trim() || undefined,
          description: descriptionInput.value.trim() || undefined,
          model: modelSelect.value || undefined,
        },
      });
      window.location.hash = kbLink(kb);
    } catch (err) {
      formError.replaceChildren(errorBox(err));
      submit.disabled = false;
      submit.textContent = t("kb.submit");
    }
  });

  async function remove(kb) {
    if (!window.confirm(t("kb.confirmDelete", { name: kb.name || kb.id }))) return;
    actionError.replaceChildren();
    try {
      await api(storePath(kb.id), { method: "DELETE" });
    } catch (err) {
      actionError.replaceChildren(errorBox(err));
    }
    load();
  }

  async function load() {
    try {
      const answer = await api("/v1/vector_stores?limit=100");
      const columns = [
        { label: t("kb.name"), value: (kb) => h("a", { href: kbLink(kb) }, kb.name || kb.id) },
        { label: t("kb.model"), value: (kb) => kb.model },
        {
          label: t("kb.documents"),
          value: (kb) => t("kb.documentsValue", { completed: kb.file_counts.completed, total: kb.file_counts.total }),
        },
        { label: t("kb.size"), value: (kb) => formatBytes(kb.usage_bytes) },
        { label: t("kb.created"), value: (kb) => formatTime(kb.created_at) },
        {
          label: t("kb.actions"),
          value: (kb) =>
            h(
              "div",
              { class: "actions" },
              h("a", { href: kbLink(kb), class: "button" }, t("kb.open")),
              h("button", { type: "button", class: "button danger", onClick: () => remove(kb) }, t("kb.delete")),
            ),
        },
      ];
      body.replaceChildren(table(columns, answer?.data || [], { empty: t("kb.empty") }));
    } catch (err) {
      showError(body, err, load);
    }
  }

  load();
}

// ---- one knowledge base --------------------------------------------------------------------

function detail(root, params) {
  const id = params.id;
  const timers = new Set();
  let stopped = false;
  let askController = null;

  const later = (fn, ms) => {
    const timer = window.setTimeout(() => {
      timers.delete(timer);
      if (!stopped) fn();
    }, ms);
    timers.add(timer);
  };

  const header = h("div", {}, t("ui.loading"));
  const documents = h("div", {}, t("ui.loading"));
  const preview = h("div", { class: "kb-preview" });

  // Upload
  const fileInput = h("input", { id: "kb-files", type: "file", multiple: true, accept: ".pdf,.docx,.html,.htm,.md,.markdown,.txt,.csv" });
  const uploadButton = h("button", { type: "submit", class: "button primary" }, t("kb.uploadButton"));
  const uploads = h("ul", { class: "kb-uploads plain-list" });
  const uploadError = h("div");
  const uploadForm = h(
    "form",
    { class: "form" },
    field(t("kb.files"), fileInput, t("kb.uploadHelp")),
    uploadError,
    h("div", { class: "actions" }, uploadButton),
    uploads,
  );

  // Search
  const queryInput = h("input", { id: "kb-query", type: "search" });
  const searchResults = h("div");
  const searchForm = h(
    "form",
    { class: "form" },
    field(t("kb.query"), queryInput),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button" }, t("kb.searchButton"))),
    searchResults,
  );

  // Ask
  const questionInput = h("textarea", { id: "kb-question", rows: "2", placeholder: t("kb.questionPlaceholder") });
  const askButton = h("button", { type: "submit", class: "button primary" }, t("kb.askButton"));
  const answerArea = h("div", { class: "kb-answer-area", "aria-live": "polite" });
  const askForm = h(
    "form",
    { class: "form" },
    field(t("kb.question"), questionInput),
    h("div", { class: "actions" }, askButton),
    answerArea,
  );

  root.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("p", {}, h("a", { href: "#/knowledge-bases" }, `← ${t("kb.back")}`)),
      header,
      h("section", { class: "card" }, h("h2", {}, t("kb.upload")), uploadForm),
      h("section", { class: "card" }, h("h2", {}, t("kb.documents")), documents, preview),
      h("section", { class: "card" }, h("h2", {}, t("kb.ask")), askForm),
      h("section", { class: "card" }, h("h2", {}, t("kb.search")), searchForm),
    ),
  );

  async function loadHeader() {
    try {
      const kb = await api(storePath(id));
      const chunking = kb.chunking_strategy?.static;
      header.replaceChildren(
        h("h1", {}, kb.name || kb.id),
        h(
          "dl",
          { class: "facts" },
          fact(t("kb.id"), h("code", {}, kb.id)),
          fact(t("kb.model"), kb.model),
          fact(t("kb.embedding"), kb.embedding_model),
          fact(t("kb.documents"), t("kb.documentsValue", { completed: kb.file_counts.completed, total: kb.file_counts.total })),
          chunking
            ? fact(
                t("kb.chunkingLabel"),
                t("kb.chunking", { size: chunking.max_chunk_size_tokens, overlap: chunking.chunk_overlap_tokens }),
              )
            : null,
        ),
      );
    } catch (err) {
      header.replaceChildren(h("h1", {}, t("kb.title")));
      header.append(errorBox(err, loadHeader));
    }
  }

  async function removeDocument(doc) {
    try {
      await api(`${storePath(id)}/files/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
    } catch (err) {
      documents.prepend(errorBox(err));
      return;
    }
    loadDocuments();
  }

  async function loadDocuments() {
    try {
      const answer = await api(`${storePath(id)}/files?limit=100`);
      const docs = answer?.data || [];
      const columns = [
        { label: t("kb.filename"), value: (d) => d.filename || d.id },
        {
          label: t("kb.status"),
          value: (d) =>
            h(
              "div",
              { "data-status": d.status },
              statusBadge(d.status),
              d.last_error ? h("div", { class: "error-message small" }, d.last_error.message) : null,
            ),
        },
        {
          label: t("kb.chunks"),
          value: (d) => (d.progress?.chunks_total ? `${d.progress.chunks} / ${d.progress.chunks_total}` : "—"),
        },
        { label: t("kb.size"), value: (d) => formatBytes(d.usage_bytes) },
        {
          label: t("kb.actions"),
          value: (d) =>
            h(
              "div",
              { class: "actions" },
              d.status === "completed"
                ? h("button", { type: "button", class: "button", onClick: () => showChunks(d) }, t("kb.preview"))
                : null,
              h("button", { type: "button", class: "button danger", onClick: () => removeDocument(d) }, t("kb.remove")),
            ),
        },
      ];
      documents.replaceChildren(table(columns, docs, { empty: t("kb.noDocuments") }));
      if (docs.some((d) => d.status === "in_progress")) later(loadDocuments, POLL_MS * 2);
    } catch (err) {
      showError(documents, err, loadDocuments);
    }
  }

  async function search(query, maxResults) {
    const answer = await api(`${storePath(id)}/search`, {
      method: "POST",
      json: { query, max_num_results: maxResults },
    });
    return answer?.data || [];
  }

  function passage(result) {
    const text = (result.content || []).map((c) => c.text).join("\n");
    return h(
      "li",
      { class: "kb-passage" },
      h(
        "div",
        { class: "small muted" },
        `${result.filename} · ${t("kb.chunk", { n: result.chunk_index })} · ${t("kb.score", { score: score(result.score) })}`,
        result.heading_path ? ` · ${result.heading_path}` : "",
      ),
      h("blockquote", { style: { whiteSpace: "pre-wrap" } }, text),
    );
  }

  // There is no route that lists a document's chunks, so the preview searches with the document's
  // own name and words and keeps this document's hits, in document order.
  async function showChunks(doc) {
    const name = doc.filename || doc.id;
    preview.replaceChildren(h("h3", {}, t("kb.previewTitle", { name })), h("p", { class: "muted" }, t("kb.previewHelp")), h("p", {}, t("ui.loading")));
    try {
      const words = name.replace(/\.[^.]+$/, "").replace(/[_\-.]+/g, " ");
      const hits = (await search(words, PREVIEW_RESULTS)).filter((r) => r.file_id === doc.id);
      hits.sort((a, b) => a.chunk_index - b.chunk_index);
      preview.lastChild.replaceWith(
        hits.length ? h("ol", { class: "plain-list" }, hits.map(passage)) : h("p", { class: "muted" }, t("kb.previewNone")),
      );
    } catch (err) {
      preview.lastChild.replaceWith(errorBox(err));
    }
  }

  // One file: upload (with progress), attach, then poll until indexed or failed.
  async function addFile(file) {
    const bar = progressBar();
    const note = h("div", { class: "small" });
    const row = h("li", { class: "kb-upload", "data-file": file.name }, bar.el, note);
    uploads.append(row);
    bar.set(0, t("kb.uploading", { name: file.name }));
    try {
      const form = new FormData();
      form.append("purpose", "assistants");
      form.append("file", file, file.name);
      const uploaded = await upload("/v1/files", form, (fraction) =>
        bar.set(fraction, t("kb.uploading", { name: file.name })),
      );
      bar.set(0, t("kb.attaching", { name: file.name }));
      let doc = await api(`${storePath(id)}/files`, { method: "POST", json: { file_id: uploaded.id } });
      loadDocuments();
      while (!stopped && doc.status === "in_progress") {
        const total = doc.progress?.chunks_total || 0;
        bar.set(total ? doc.progress.chunks / total : 0, total ? t("kb.indexProgress", { name: file.name, chunks: doc.progress.chunks, total }) : t("kb.attaching", { name: file.name }));
        await new Promise((resolve) => later(resolve, POLL_MS));
        if (stopped) return;
        doc = await api(`${storePath(id)}/files/${encodeURIComponent(uploaded.id)}`);
      }
      if (doc.status === "completed") {
        bar.set(1, t("kb.indexed", { name: file.name }));
      } else {
        bar.set(1, t("kb.indexFailed", { name: file.name }));
        if (doc.last_error) note.replaceChildren(errorBox(doc.last_error.message));
      }
      note.prepend(statusBadge(doc.status));
    } catch (err) {
      note.replaceChildren(errorBox(err));
    }
    if (!stopped) {
      loadDocuments();
      loadHeader();
    }
  }

  uploadForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    uploadError.replaceChildren();
    const files = [...fileInput.files];
    if (files.length === 0) {
      uploadError.replaceChildren(errorBox(t("kb.noFiles")));
      return;
    }
    fileInput.value = "";
    await Promise.all(files.map(addFile));
  });

  searchForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = queryInput.value.trim();
    if (!query) return;
    searchResults.replaceChildren(h("p", {}, t("ui.loading")));
    try {
      const hits = await search(query, 10);
      searchResults.replaceChildren(
        hits.length ? h("ol", { class: "plain-list" }, hits.map(passage)) : h("p", { class: "muted" }, t("kb.noResults")),
      );
    } catch (err) {
      showError(searchResults, err);
    }
  });

  function citationCard(citation) {
    return h(
      "li",
      { class: "kb-citation", id: `kb-cite-${citation.number}`, "data-number": String(citation.number) },
      h(
        "div",
        { class: "small muted kb-citation-head" },
        t("kb.citationHead", {
          n: citation.number,
          file: citation.filename || citation.document,
          chunk: citation.chunk,
          score: score(citation.score),
        }),
        citation.heading_path ? ` · ${citation.heading_path}` : "",
        citation.page ? ` · ${t("kb.page", { page: citation.page })}` : "",
        " ",
        h("span", { class: "badge ok kb-cited", hidden: true }, t("kb.cited")),
      ),
      h("blockquote", { class: "kb-citation-text", style: { whiteSpace: "pre-wrap" } }, citation.text),
    );
  }

  askForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (askController) return;
    const question = questionInput.value.trim();
    if (!question) {
      answerArea.replaceChildren(errorBox(t("kb.emptyQuestion")));
      return;
    }
    const answerText = h("div", { class: "kb-answer-text", style: { whiteSpace: "pre-wrap" } });
    const sources = h("ul", { class: "kb-citations", style: { listStyle: "none", padding: "0", margin: "0" } });
    const status = h("p", { class: "small muted" }, t("kb.asking"));
    answerArea.replaceChildren(
      h(
        "div",
        { class: "kb-answer", style: { display: "flex", flexWrap: "wrap", gap: "1.5rem" } },
        h("div", { style: { flex: "1 1 20rem" } }, h("h3", {}, t("kb.answer")), answerText, status),
        h("div", { style: { flex: "1 1 20rem" } }, h("h3", {}, t("kb.sources")), sources),
      ),
    );
    askController = new AbortController();
    askButton.disabled = true;
    let text = "";
    let citations = [];
    try {
      await streamSSE(
        `/api/v1/knowledge-bases/${encodeURIComponent(id)}/ask`,
        { json: { question, stream: true }, signal: askController.signal },
        (data) => {
          if (data?.object === "knowledge_base.citations") {
            citations = data.citations || [];
            sources.replaceChildren(...citations.map(citationCard));
          } else if (data?.object === "knowledge_base.answer") {
            text = data.found === false ? t("kb.notFound") : data.answer;
            answerText.textContent = text;
          } else {
            const delta = data?.choices?.[0]?.delta?.content;
            if (delta) {
              text += delta;
              answerText.textContent = text;
            }
          }
        },
      );
      status.textContent = "";
      // The answer refers to passages as [n]: mark those the model used.
      for (const citation of citations) {
        if (text.includes(`[${citation.number}]`)) {
          const card = sources.querySelector(`[data-number="${citation.number}"]`);
          card?.classList.add("cited");
          const badge = card?.querySelector(".kb-cited");
          if (badge) badge.hidden = false;
        }
      }
    } catch (err) {
      if (err?.name !== "AbortError") status.replaceChildren(errorBox(err));
    } finally {
      askController = null;
      askButton.disabled = false;
    }
  });

  loadHeader();
  loadDocuments();
  return () => {
    stopped = true;
    for (const timer of timers) window.clearTimeout(timer);
    askController?.abort();
  };
}
