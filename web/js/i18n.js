// The console's strings: each page module registers its own (en and zh); t() looks a key up in
// the current language, falls back to English, then to the key itself.

const LANG_KEY = "suanli.lang";
const LANGUAGES = ["en", "zh"];
const tables = { en: {}, zh: {} };

function stored() {
  try {
    return window.localStorage.getItem(LANG_KEY);
  } catch {
    return null; // storage unavailable (a privacy mode): the browser's language decides
  }
}

function browserLanguage() {
  const preferred = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  return preferred.toLowerCase().startsWith("zh") ? "zh" : "en";
}

let current = LANGUAGES.includes(stored()) ? stored() : browserLanguage();

export function language() {
  return current;
}

// "zh-CN" or "en": for Intl formatters and <html lang>.
export function locale() {
  return current === "zh" ? "zh-CN" : "en";
}

export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) throw new Error(`unknown language ${lang}`);
  current = lang;
  try {
    window.localStorage.setItem(LANG_KEY, lang);
  } catch {
    // not remembered across reloads; this page still switches
  }
  document.documentElement.lang = locale();
  window.dispatchEvent(new CustomEvent("suanli:language", { detail: { lang } }));
}

export function registerStrings(strings) {
  for (const lang of LANGUAGES) Object.assign(tables[lang], strings?.[lang] ?? {});
}

export function t(key, vars = {}) {
  const text = tables[current][key] ?? tables.en[key] ?? key;
  return String(text).replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}
