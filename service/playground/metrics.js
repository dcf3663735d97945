// The live panel: GET /metrics every 2 seconds while the page is visible, the Prometheus text format parsed
// here. Requests per second come from the change since the last read; batch sizes and queue waits are
// means since the server started (histogram _sum / _count).

import { request } from "./api.js";
import { element, hideError, showError } from "./dom.js";

const EVERY_MS = 2000;

// `name{label="value",...} value [timestamp]` lines -> [{name, labels, value}]; # HELP and # TYPE skipped.
export function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const m = !line.startsWith("#") && line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const [, key, value] of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) }); // Number("+Inf") is Infinity, as it should be
  }
  return samples;
}

// The sum of a metric's samples per model ("" for requests that named no known model).
function perModel(samples, name, keep = () => true) {
  const sums = new Map();
  for (const s of samples) {
    if (s.name === name && keep(s.labels)) sums.set(s.labels.model ?? "", (sums.get(s.labels.model ?? "") || 0) + s.value);
  }
  return sums;
}

const notScrapes = (labels) => labels.endpoint !== "/metrics"; // the panel's own reads are not traffic

function summary(samples) {
  const mean = (name, model) => {
    const count = perModel(samples, `${name}_count`).get(model) || 0;
    return count ? perModel(samples, `${name}_sum`).get(model) / count : null;
  };
  const requests = perModel(samples, "zooserve_requests_total", notScrapes);
  const batches = perModel(samples, "zooserve_batch_size_count");
  const models = [...new Set([...requests.keys(), ...batches.keys()])].filter((m) => m).sort();
  return {
    total: [...requests.values()].reduce((a, b) => a + b, 0),
    requests,
    rows: models.map((model) => ({
      model,
      batches: batches.get(model) || 0,
      batch: mean("zooserve_batch_size", model),
      wait: mean("zooserve_queue_wait_seconds", model),
      step: mean("zooserve_generation_step_batch_size", model),
    })),
  };
}

const fixed = (x, digits) => (x === null ? "–" : x.toFixed(digits));

function render(now, before, seconds) {
  // A rate needs two reads: "–" until there is a previous one.
  const perSecond = (pick) => (before ? ((pick(now) - pick(before)) / seconds).toFixed(1) : "–");
  document.getElementById("rps").textContent = perSecond((s) => s.total);
  document.getElementById("metrics-rows").replaceChildren(...now.rows.map((row) => {
    const name = element("th", null, row.model);
    name.scope = "row";
    const cells = [perSecond((s) => s.requests.get(row.model) || 0), String(row.batches), fixed(row.batch, 2),
      row.wait === null ? "–" : `${(1000 * row.wait).toFixed(2)} ms`, fixed(row.step, 2)];
    const tr = element("tr");
    tr.append(name, ...cells.map((text) => element("td", null, text)));
    return tr;
  }));
}

export function startMetrics() {
  const error = document.getElementById("metrics-error");
  let before = null;
  let at = 0;
  async function tick() {
    if (!document.hidden) {
      try {
        const now = summary(parse(await (await request("metrics")).text()));
        const t = performance.now();
        render(now, before, (t - at) / 1000);
        [before, at] = [now, t];
        hideError(error);
      } catch (e) {
        showError(error, e);
      }
    }
    setTimeout(tick, EVERY_MS);
  }
  tick();
}
