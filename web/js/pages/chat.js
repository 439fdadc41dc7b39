// Chat with a deployed model: a multi-turn conversation streamed from /v1/chat/completions, the
// sampling parameters, and the OpenAI-client snippet that reproduces the conversation.

import { api, streamSSE } from "../api.js";
import { t } from "../i18n.js";
import { copyButton, errorBox, field, h, showError } from "../ui.js";

const DEFAULTS = { temperature: 0.7, max_tokens: 256, top_p: 1 };

export const strings = {
  en: {
    "chat.nav": "Chat",
    "chat.title": "Chat",
    "chat.intro": "Talk to a deployed model. Answers stream in as the model writes them.",
    "chat.model": "Model",
    "chat.noModels": "No model is deployed for you yet.",
    "chat.deployOne": "Deploy a model",
    "chat.settings": "Parameters",
    "chat.system": "System prompt",
    "chat.systemHelp": "Optional instructions the model sees before the conversation.",
    "chat.temperature": "Temperature",
    "chat.temperatureHelp": "0 answers the same way every time; higher is more varied (up to 2).",
    "chat.maxTokens": "Max tokens",
    "chat.topP": "Top p",
    "chat.conversation": "Conversation",
    "chat.empty": "Ask something to start the conversation.",
    "chat.you": "You",
    "chat.assistant": "Assistant",
    "chat.message": "Message",
    "chat.placeholder": "Type a message; Enter sends, Shift+Enter starts a new line",
    "chat.send": "Send",
    "chat.stop": "Stop",
    "chat.clear": "New conversation",
    "chat.stopped": "(stopped)",
    "chat.thinking": "Writing…",
    "chat.emptyMessage": "Type a message first.",
    "chat.chooseModel": "Choose a model first.",
    "chat.badNumber": "{field} must be a number.",
    "chat.snippet": "Use it from code",
    "chat.snippetHelp": "The OpenAI Python client with this conversation and these parameters. Replace YOUR_API_KEY with a key from the API keys page.",
    "chat.usage": "{prompt} tokens in, {completion} out",
  },
  zh: {
    "chat.nav": "对话",
    "chat.title": "对话",
    "chat.intro": "与已部署的模型对话。模型边写边显示回答。",
    "chat.model": "模型",
    "chat.noModels": "您还没有可用的已部署模型。",
    "chat.deployOne": "部署模型",
    "chat.settings": "参数",
    "chat.system": "系统提示词",
    "chat.systemHelp": "可选：模型在对话开始前看到的指令。",
    "chat.temperature": "温度",
    "chat.temperatureHelp": "为 0 时每次回答相同；越高回答越多样（最大 2）。",
    "chat.maxTokens": "最大 token 数",
    "chat.topP": "Top p",
    "chat.conversation": "对话记录",
    "chat.empty": "输入问题开始对话。",
    "chat.you": "我",
    "chat.assistant": "助手",
    "chat.message": "消息",
    "chat.placeholder": "输入消息；回车发送，Shift+回车换行",
    "chat.send": "发送",
    "chat.stop": "停止",
    "chat.clear": "新对话",
    "chat.stopped": "（已停止）",
    "chat.thinking": "正在生成…",
    "chat.emptyMessage": "请先输入消息。",
    "chat.chooseModel": "请先选择模型。",
    "chat.badNumber": "{field}必须是数字。",
    "chat.snippet": "在代码中使用",
    "chat.snippetHelp": "使用 OpenAI Python 客户端复现本次对话和参数。请把 YOUR_API_KEY 换成“API 密钥”页面中的密钥。",
    "chat.usage": "输入 {prompt} token，输出 {completion} token",
  },
};

export const nav = { path: "/chat", label: "chat.nav" };

export const routes = [{ path: "/chat", render: chat }];

// The conversation as Python source: JSON literals of strings and lists are valid Python.
export function pythonSnippet(baseUrl, model, messages, params) {
  const lines = [
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(baseUrl)}, api_key="YOUR_API_KEY")`,
    "",
    `messages = ${JSON.stringify(messages, null, 4)}`,
    "",
    "stream = client.chat.completions.create(",
    `    model=${JSON.stringify(model)},`,
    "    messages=messages,",
    `    temperature=${params.temperature},`,
    `    max_tokens=${params.max_tokens},`,
    `    top_p=${params.top_p},`,
    "    stream=True,",
    ")",
    "for chunk in stream:",
    "    if chunk.choices and chunk.choices[0].delta.content:",
    '        print(chunk.choices[0].delta.content, end="", flush=True)',
    "print()",
  ];
  return lines.join("\n");
}

function numberField(id, value, { min, max, step }) {
  return h("input", { id, type: "number", min, max, step, value: String(value), inputmode: "decimal" });
}

function chat(root, params, query) {
  const history = []; // {role, content} of the finished turns
  let controller = null; // the AbortController of the answer being streamed

  const modelSelect = h("select", { id: "chat-model" });
  const systemInput = h("textarea", { id: "chat-system", rows: "3" });
  const temperatureInput = numberField("chat-temperature", DEFAULTS.temperature, { min: "0", max: "2", step: "0.1" });
  const maxTokensInput = numberField("chat-max-tokens", DEFAULTS.max_tokens, { min: "1", max: "8192", step: "1" });
  const topPInput = numberField("chat-top-p", DEFAULTS.top_p, { min: "0", max: "1", step: "0.05" });
  const modelArea = h("div", {}, field(t("chat.model"), modelSelect));
  const transcript = h(
    "div",
    {
      class: "chat-transcript",
      role: "log",
      "aria-live": "polite",
      "aria-label": t("chat.conversation"),
      style: { maxHeight: "60vh", overflowY: "auto", marginBottom: "1rem" },
    },
    h("p", { class: "muted chat-empty" }, t("chat.empty")),
  );
  const messageInput = h("textarea", { id: "chat-message", rows: "3", placeholder: t("chat.placeholder") });
  const sendButton = h("button", { type: "submit", class: "button primary" }, t("chat.send"));
  const stopButton = h("button", { type: "button", class: "button", disabled: true }, t("chat.stop"));
  const clearButton = h("button", { type: "button", class: "button" }, t("chat.clear"));
  const composeError = h("div");
  const snippetArea = h("div", { class: "chat-snippet" });
  const composer = h(
    "form",
    { class: "chat-composer" },
    field(t("chat.message"), messageInput),
    composeError,
    h("div", { class: "actions" }, sendButton, stopButton, clearButton),
  );

  root.replaceChildren(
    h(
      "section",
      { class: "page chat-page" },
      h("h1", {}, t("chat.title")),
      h("p", { class: "muted" }, t("chat.intro")),
      h(
        "div",
        { class: "chat-layout", style: { display: "flex", flexWrap: "wrap", gap: "1.5rem", alignItems: "flex-start" } },
        h(
          "div",
          { class: "chat-main", style: { flex: "3 1 24rem", minWidth: "0" } },
          h("h2", {}, t("chat.conversation")),
          transcript,
          composer,
        ),
        h(
          "aside",
          { class: "chat-settings", style: { flex: "1 1 16rem" } },
          h("h2", {}, t("chat.settings")),
          modelArea,
          field(t("chat.system"), systemInput, t("chat.systemHelp")),
          field(t("chat.temperature"), temperatureInput, t("chat.temperatureHelp")),
          field(t("chat.maxTokens"), maxTokensInput),
          field(t("chat.topP"), topPInput),
        ),
      ),
      h(
        "section",
        { class: "card", style: { marginTop: "1.5rem" } },
        h("h2", {}, t("chat.snippet")),
        h("p", { class: "muted" }, t("chat.snippetHelp")),
        snippetArea,
      ),
    ),
  );

  function readNumber(input, label, integer = false) {
    const value = Number(input.value);
    if (input.value.trim() === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
      throw new Error(t("chat.badNumber", { field: label }));
    }
    return value;
  }

  function readParams() {
    return {
      temperature: readNumber(temperatureInput, t("chat.temperature")),
      max_tokens: readNumber(maxTokensInput, t("chat.maxTokens"), true),
      top_p: readNumber(topPInput, t("chat.topP")),
    };
  }

  function requestMessages(turns) {
    const system = systemInput.value.trim();
    return system ? [{ role: "system", content: system }, ...turns] : [...turns];
  }

  function updateSnippet() {
    let settings;
    try {
      settings = readParams();
    } catch {
      settings = DEFAULTS; // the form shows what is wrong when the user sends
    }
    const model = modelSelect.value || "MODEL";
    const text = pythonSnippet(`${window.location.origin}/v1`, model, requestMessages(history), settings);
    snippetArea.replaceChildren(h("pre", {}, h("code", { class: "language-python" }, text)), copyButton(text));
  }

  function bubble(role, text) {
    const body = h("div", { class: "chat-text", style: { whiteSpace: "pre-wrap", overflowWrap: "anywhere" } }, text);
    const node = h(
      "div",
      {
        class: `chat-message ${role}`,
        "data-role": role,
        style: {
          padding: "0.5rem 0.75rem",
          margin: "0 0 0.75rem",
          borderRadius: "10px",
          border: "1px solid var(--line, #ddd)",
          background: role === "user" ? "var(--surface-alt, #eef4ff)" : "var(--surface, #fff)",
          marginLeft: role === "user" ? "2rem" : "0",
          marginRight: role === "user" ? "0" : "2rem",
        },
      },
      h("div", { class: "chat-speaker small muted" }, role === "user" ? t("chat.you") : t("chat.assistant")),
      body,
    );
    transcript.querySelector(".chat-empty")?.remove();
    transcript.append(node);
    node.scrollIntoView({ block: "end" });
    return { node, body };
  }

  function setBusy(busy) {
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
    clearButton.disabled = busy;
    modelSelect.disabled = busy;
  }

  async function send() {
    composeError.replaceChildren();
    const content = messageInput.value.trim();
    const model = modelSelect.value;
    let settings;
    try {
      if (!model) throw new Error(t("chat.chooseModel"));
      if (!content) throw new Error(t("chat.emptyMessage"));
      settings = readParams();
    } catch (err) {
      composeError.replaceChildren(errorBox(err));
      return;
    }
    const turns = [...history, { role: "user", content }];
    bubble("user", content);
    messageInput.value = "";
    const answer = bubble("assistant", "");
    answer.node.setAttribute("aria-busy", "true");
    const status = h("div", { class: "small muted chat-status" }, t("chat.thinking"));
    answer.node.append(status);
    controller = new AbortController();
    setBusy(true);
    let text = "";
    let usage = null;
    try {
      await streamSSE(
        "/v1/chat/completions",
        {
          json: {
            model,
            messages: requestMessages(turns),
            stream: true,
            stream_options: { include_usage: true },
            ...settings,
          },
          signal: controller.signal,
        },
        (data) => {
          const delta = data?.choices?.[0]?.delta?.content;
          if (delta) {
            text += delta;
            answer.body.textContent = text;
          }
          if (data?.usage) usage = data.usage;
        },
      );
      status.textContent = usage
        ? t("chat.usage", { prompt: usage.prompt_tokens, completion: usage.completion_tokens })
        : "";
      history.push(...turns.slice(history.length), { role: "assistant", content: text });
    } catch (err) {
      if (err?.name === "AbortError") {
        // What came before the stop is kept: the next turn builds on it.
        status.textContent = t("chat.stopped");
        history.push(...turns.slice(history.length), { role: "assistant", content: text });
      } else {
        status.replaceChildren(errorBox(err));
        // The failed question is not part of the conversation; it goes back to the input.
        if (!messageInput.value) messageInput.value = content;
      }
    } finally {
      answer.node.removeAttribute("aria-busy");
      controller = null;
      setBusy(false);
      updateSnippet();
      messageInput.focus();
    }
  }

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!controller) send();
  });
  messageInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!controller) send();
    }
  });
  stopButton.addEventListener("click", () => controller?.abort());
  clearButton.addEventListener("click", () => {
    history.length = 0;
    transcript.replaceChildren(h("p", { class: "muted chat-empty" }, t("chat.empty")));
    composeError.replaceChildren();
    updateSnippet();
  });
  for (const input of [modelSelect, systemInput, temperatureInput, maxTokensInput, topPInput]) {
    input.addEventListener("input", updateSnippet);
    input.addEventListener("change", updateSnippet);
  }

  async function loadModels() {
    modelArea.replaceChildren(field(t("chat.model"), modelSelect));
    try {
      const answer = await api("/v1/models");
      const ids = (answer?.data || []).map((m) => m.id);
      const wanted = query?.get("model");
      if (ids.length === 0) {
        modelArea.append(
          h("p", { class: "muted" }, t("chat.noModels"), " ", h("a", { href: "#/deployments/new" }, t("chat.deployOne"))),
        );
      }
      modelSelect.replaceChildren(...ids.map((id) => h("option", { value: id }, id)));
      if (wanted && ids.includes(wanted)) modelSelect.value = wanted;
    } catch (err) {
      const retry = h("div");
      modelArea.append(retry);
      showError(retry, err, loadModels);
    }
    updateSnippet();
  }

  updateSnippet();
  loadModels();
  return () => controller?.abort();
}
