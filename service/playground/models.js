// The model list: GET /v1/models for names, states and tasks; for each model GET /v2/models/{m} (versions,
// execution provider) and, when it serves, GET /v1/models/{m}/card (size, test figures).

import { formatBytes, fromTemplate } from "./dom.js";
import { getJSON, modelPath, v2ModelPath } from "./api.js";

// One entry per model name: /v1/models lists every loaded version, and the task endpoints use the one that
// serves by default, the newest ready version (else the newest, whose state says why it does not serve).
function byName(entries) {
  const rank = (entry) => (entry.state === "READY" ? 2 ** 40 : 0) + entry.version;
  const models = new Map();
  for (const entry of entries) {
    const seen = models.get(entry.id);
    if (!seen || rank(entry) > rank(seen)) models.set(entry.id, entry);
  }
  return [...models.values()];
}

// The list with each model's metadata and card; a model whose details cannot be had is still listed.
export async function loadModels() {
  const entries = byName((await getJSON("v1/models")).data);
  return Promise.all(entries.map(async (entry) => {
    const [meta, card] = await Promise.allSettled([
      getJSON(v2ModelPath(entry.id)),
      entry.state === "READY" ? getJSON(`${modelPath(entry.id)}/card`) : null, // only a serving version has one
    ]);
    return { ...entry, meta: meta.value ?? null, card: card.value ?? null };
  }));
}

const TASKS = {
  "image-classification": "image classification",
  "text-classification": "text classification",
  "language-model": "language model",
  "image-generation": "image generation",
  autoencoder: "autoencoder",
};

// The card's headline figures on its test split: accuracy for classifiers; nats per token and perplexity for
// language models (a token is a character or a word, as the card's tokenizer says).
export function headline(card) {
  if (!card || !card.metrics.length) return "none in the card";
  const m = card.metrics.find((s) => s.split === "test") || card.metrics[card.metrics.length - 1];
  const figures = [];
  if (m.accuracy != null) figures.push(`accuracy ${m.accuracy.toFixed(4)}`);
  if (m.macro_f1 != null) figures.push(`macro F1 ${m.macro_f1.toFixed(4)}`);
  if (card.task === "language-model" && m.cross_entropy != null) {
    const unit = { char: "char", word: "word" }[card.preprocess.tokenizer] || "token";
    figures.push(`${m.cross_entropy.toFixed(4)} nats/${unit}`);
  }
  if (m.perplexity != null) figures.push(`perplexity ${m.perplexity.toFixed(2)}`);
  if (m.reconstruction_mse != null) figures.push(`reconstruction MSE ${m.reconstruction_mse.toFixed(4)}`);
  if (m.negative_elbo != null) figures.push(`-ELBO ${m.negative_elbo.toFixed(1)} nats/image`);
  if (m.frechet_distance != null) figures.push(`Fréchet distance ${m.frechet_distance.toFixed(2)}`);
  return `${figures.join(", ")} (${m.split} split, ${m.examples} examples)`;
}

function size(card) {
  if (!card) return "unknown";
  const onnx = card.artifact.bytes;
  const others = card.extra_files.reduce((sum, f) => sum + f.bytes, 0); // vocabularies, tokenizers, ARPA files
  return others ? `${formatBytes(onnx)} ONNX + ${formatBytes(others)} other files` : `${formatBytes(onnx)} ONNX`;
}

function fields(model) {
  const versions = model.meta ? model.meta.versions : [String(model.version)];
  const others = versions.filter((v) => v !== String(model.version));
  return {
    task: TASKS[model.task] || model.task || "not known until it loads",
    version: others.length ? `${model.version} (also on the server: ${others.join(", ")})` : String(model.version),
    state: model.reason ? `${model.state}: ${model.reason}` : model.state,
    provider: model.meta?.parameters?.execution_provider || "not loaded",
    size: size(model.card),
    figures: headline(model.card),
  };
}

// The list items; `choose(model)` runs when the user picks one.
export function renderModels(list, models, choose) {
  list.replaceChildren(...models.map((model) => {
    const item = fromTemplate("tpl-model");
    const button = item.querySelector(".pick");
    button.textContent = model.id;
    button.dataset.model = model.id;
    button.disabled = model.state !== "READY";
    button.addEventListener("click", () => choose(model));
    item.dataset.state = model.state;
    for (const [name, text] of Object.entries(fields(model))) {
      item.querySelector(`[data-field=${name}]`).textContent = text;
    }
    return item;
  }));
  list.removeAttribute("aria-busy");
}

export function markChosen(list, name) {
  for (const button of list.querySelectorAll(".pick")) {
    button.setAttribute("aria-pressed", String(button.dataset.model === name));
  }
}
