// #/login (password or an e-mailed one-time code) and #/signup. Sign-out is the header's.

import { api, ApiError, session } from "../api.js";
import { t } from "../i18n.js";
import { errorBox, field, h } from "../ui.js";

export const strings = {
  en: {
    "auth.loginTitle": "Sign in",
    "auth.signupTitle": "Create an account",
    "auth.email": "Email",
    "auth.password": "Password",
    "auth.code": "Code from the e-mail",
    "auth.withPassword": "Password",
    "auth.withCode": "E-mail code",
    "auth.method": "Sign in with",
    "auth.signIn": "Sign in",
    "auth.signingIn": "Signing in…",
    "auth.sendCode": "Send me a code",
    "auth.sending": "Sending…",
    "auth.codeSent": "If an account exists for {email}, a code is on its way. It is valid for {minutes} minutes.",
    "auth.needEmail": "Enter your e-mail address first.",
    "auth.signUp": "Create account",
    "auth.signingUp": "Creating…",
    "auth.noAccount": "No account yet?",
    "auth.toSignup": "Create one",
    "auth.haveAccount": "Already have an account?",
    "auth.toLogin": "Sign in",
    "auth.passwordHelp": "Choose a password you use nowhere else.",
    "auth.badAnswer": "The server did not send a sign-in token.",
  },
  zh: {
    "auth.loginTitle": "登录",
    "auth.signupTitle": "注册账户",
    "auth.email": "邮箱",
    "auth.password": "密码",
    "auth.code": "邮件中的验证码",
    "auth.withPassword": "密码",
    "auth.withCode": "邮箱验证码",
    "auth.method": "登录方式",
    "auth.signIn": "登录",
    "auth.signingIn": "正在登录…",
    "auth.sendCode": "发送验证码",
    "auth.sending": "正在发送…",
    "auth.codeSent": "如果 {email} 已注册，验证码已发出，{minutes} 分钟内有效。",
    "auth.needEmail": "请先填写邮箱地址。",
    "auth.signUp": "注册",
    "auth.signingUp": "正在注册…",
    "auth.noAccount": "还没有账户？",
    "auth.toSignup": "立即注册",
    "auth.haveAccount": "已有账户？",
    "auth.toLogin": "去登录",
    "auth.passwordHelp": "请使用一个未在其他地方用过的密码。",
    "auth.badAnswer": "服务器没有返回登录令牌。",
  },
};

export const routes = [
  { path: "/login", render: login, public: true },
  { path: "/signup", render: signup, public: true },
];

const LAST_EMAIL = "suanli.email";

function rememberedEmail() {
  try {
    return window.localStorage.getItem(LAST_EMAIL) ?? "";
  } catch {
    return "";
  }
}

// Signs in with {email, password} or {email, code} and goes where the guard was sent from.
async function signInWith(body, query) {
  const answer = await api("/auth/login", { method: "POST", json: body });
  if (!answer || typeof answer.access_token !== "string") throw new ApiError(t("auth.badAnswer"));
  session.set(answer.access_token, body.email, Number(answer.expires_in));
  try {
    window.localStorage.setItem(LAST_EMAIL, body.email);
  } catch {
    // not remembered
  }
  const next = query?.get?.("next") ?? "";
  window.location.hash = next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/";
}

// Runs `action` with the button busy; its failure is shown in `errors`.
async function busy(button, busyLabel, errors, action) {
  if (button.getAttribute("aria-busy") === "true") return;
  const label = button.textContent;
  errors.replaceChildren();
  button.setAttribute("aria-busy", "true");
  button.textContent = busyLabel;
  try {
    await action();
  } catch (error) {
    errors.replaceChildren(errorBox(error));
  } finally {
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

function login(root, params, query) {
  let mode = "password";
  const email = h("input", { id: "login-email", type: "email", autocomplete: "username", required: true, value: rememberedEmail() });
  const password = h("input", { id: "login-password", type: "password", autocomplete: "current-password" });
  const code = h("input", { id: "login-code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "64" });
  const errors = h("div", { class: "form-errors" });
  const notice = h("p", { class: "notice", role: "status", hidden: true });
  const submit = h("button", { type: "submit", id: "login-submit", class: "primary" }, t("auth.signIn"));
  const sendCode = h("button", { type: "button", id: "login-send-code" }, t("auth.sendCode"));
  const passwordField = field(t("auth.password"), password);
  const codeFields = h("div", { class: "stack" }, h("div", { class: "actions" }, sendCode), notice, field(t("auth.code"), code));
  const modeButtons = {
    password: h("button", { type: "button", id: "login-mode-password" }, t("auth.withPassword")),
    code: h("button", { type: "button", id: "login-mode-code" }, t("auth.withCode")),
  };

  const showMode = () => {
    passwordField.hidden = mode !== "password";
    codeFields.hidden = mode !== "code";
    password.required = mode === "password";
    code.required = mode === "code";
    for (const [name, button] of Object.entries(modeButtons)) button.setAttribute("aria-pressed", String(name === mode));
    errors.replaceChildren();
  };
  for (const [name, button] of Object.entries(modeButtons)) {
    button.addEventListener("click", () => {
      mode = name;
      showMode();
    });
  }

  sendCode.addEventListener("click", () =>
    busy(sendCode, t("auth.sending"), errors, async () => {
      const address = email.value.trim();
      if (!address) {
        email.focus();
        throw t("auth.needEmail");
      }
      const answer = await api("/auth/email-code", { method: "POST", json: { email: address } });
      const minutes = Math.max(1, Math.round(Number(answer?.expires_in ?? 600) / 60));
      notice.textContent = t("auth.codeSent", { email: address, minutes });
      notice.hidden = false;
      code.focus();
    }),
  );

  const form = h(
    "form",
    { class: "stack", novalidate: true },
    field(t("auth.email"), email),
    passwordField,
    codeFields,
    errors,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, t("auth.signingIn"), errors, async () => {
      const body = { email: email.value.trim() };
      if (mode === "password") body.password = password.value;
      else body.code = code.value.trim();
      await signInWith(body, query);
    });
  });

  root.append(
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "login-title" },
      h("h1", { id: "login-title" }, t("auth.loginTitle")),
      h("div", { class: "tabs", role: "group", "aria-label": t("auth.method") }, modeButtons.password, modeButtons.code),
      form,
      h("p", { class: "small" }, `${t("auth.noAccount")} `, h("a", { href: "#/signup", id: "to-signup" }, t("auth.toSignup"))),
    ),
  );
  showMode();
  (email.value ? password : email).focus();
}

function signup(root, params, query) {
  const email = h("input", { id: "signup-email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "signup-password", type: "password", autocomplete: "new-password", required: true });
  const errors = h("div", { class: "form-errors" });
  const submit = h("button", { type: "submit", id: "signup-submit", class: "primary" }, t("auth.signUp"));
  const form = h(
    "form",
    { class: "stack", novalidate: true },
    field(t("auth.email"), email),
    field(t("auth.password"), password, t("auth.passwordHelp")),
    errors,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, t("auth.signingUp"), errors, async () => {
      const body = { email: email.value.trim(), password: password.value };
      await api("/auth/signup", { method: "POST", json: body });
      await signInWith(body, query);
    });
  });
  root.append(
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "signup-title" },
      h("h1", { id: "signup-title" }, t("auth.signupTitle")),
      form,
      h("p", { class: "small" }, `${t("auth.haveAccount")} `, h("a", { href: "#/login" }, t("auth.toLogin"))),
    ),
  );
  email.focus();
}
