// #/gpus: the cluster's GPU inventory by type and by node, free and used.

import { api } from "../api.js";
import { t } from "../i18n.js";
import { formatNumber, h, loading, progressBar, showError, table } from "../ui.js";

export const strings = {
  en: {
    "gpus.nav": "GPUs",
    "gpus.title": "GPUs",
    "gpus.intro": "Slots of the live nodes. CPU slots run jobs where a node has no GPU.",
    "gpus.byType": "By type",
    "gpus.byNode": "By node",
    "gpus.type": "Type",
    "gpus.node": "Node",
    "gpus.nodes": "Nodes",
    "gpus.total": "Total",
    "gpus.used": "Used",
    "gpus.free": "Free",
    "gpus.memory": "Memory per GPU",
    "gpus.usage": "In use",
    "gpus.usedOf": "{used} of {total} used",
    "gpus.none": "No live node reports any slots.",
    "gpus.refresh": "Refresh",
  },
  zh: {
    "gpus.nav": "GPU",
    "gpus.title": "GPU 资源",
    "gpus.intro": "在线节点的计算槽位。没有 GPU 的节点用 CPU 槽位运行任务。",
    "gpus.byType": "按类型",
    "gpus.byNode": "按节点",
    "gpus.type": "类型",
    "gpus.node": "节点",
    "gpus.nodes": "节点数",
    "gpus.total": "总数",
    "gpus.used": "已用",
    "gpus.free": "空闲",
    "gpus.memory": "单卡显存",
    "gpus.usage": "使用情况",
    "gpus.usedOf": "已用 {used} / {total}",
    "gpus.none": "没有在线节点报告槽位。",
    "gpus.refresh": "刷新",
  },
};

export const nav = { path: "/gpus", label: "gpus.nav" };
export const routes = [{ path: "/gpus", render }];

function usage(row) {
  const bar = progressBar();
  bar.set(row.total ? row.used / row.total : 0, t("gpus.usedOf", { used: row.used, total: row.total }));
  return bar.el;
}

function memory(mb) {
  return mb ? `${formatNumber(mb / 1024, 1)} GiB` : "—";
}

function render(root) {
  const content = h("div", { id: "gpu-inventory" });
  const load = async () => {
    content.replaceChildren(loading());
    try {
      const answer = await api("/gpus");
      const nodes = Array.isArray(answer?.data) ? answer.data : [];
      const types = Array.isArray(answer?.by_type) ? answer.by_type : [];
      const num = (pick) => (row) => formatNumber(pick(row));
      content.replaceChildren(
        h("h2", {}, t("gpus.byType")),
        table(
          [
            { label: t("gpus.type"), value: (r) => r.gpu_type },
            { label: t("gpus.nodes"), value: num((r) => r.nodes), class: "num" },
            { label: t("gpus.total"), value: num((r) => r.total), class: "num" },
            { label: t("gpus.used"), value: num((r) => r.used), class: "num" },
            { label: t("gpus.free"), value: num((r) => r.free), class: "num" },
            { label: t("gpus.usage"), value: usage },
          ],
          types,
          { empty: t("gpus.none") },
        ),
        h("h2", {}, t("gpus.byNode")),
        table(
          [
            { label: t("gpus.node"), value: (r) => h("span", { class: "mono" }, r.node_id) },
            { label: t("gpus.type"), value: (r) => r.gpu_type },
            { label: t("gpus.memory"), value: (r) => memory(r.memory_mb), class: "num" },
            { label: t("gpus.total"), value: num((r) => r.total), class: "num" },
            { label: t("gpus.used"), value: num((r) => r.used), class: "num" },
            { label: t("gpus.free"), value: num((r) => r.free), class: "num" },
          ],
          nodes,
          { empty: t("gpus.none") },
        ),
      );
    } catch (error) {
      showError(content, error, load);
    }
  };
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, t("gpus.title")),
      h("button", { type: "button", id: "gpus-refresh", onClick: () => load() }, t("gpus.refresh")),
    ),
    h("p", { class: "muted" }, t("gpus.intro")),
    content,
  );
  load();
}
