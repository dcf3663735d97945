// Language models, scoring: POST /v1/models/{m}/score. The text comes back as the model's tokens, each
// coloured by its log-probability, with the total, nats per token and perplexity.

import { modelPath, postJSON } from "../api.js";
import { element, fromTemplate, onSubmit } from "../dom.js";

const BANDS = [-0.5, -1.5, -3, -5, -8]; // nats; the legend in index.html names the same bands

const band = (logprob) => {
  const i = BANDS.findIndex((edge) => logprob > edge);
  return `lp${i === -1 ? BANDS.length : i}`;
};

// A token as it reads: line breaks stay line breaks, with a mark so that their colour shows.
const shown = (token) => (token === "\n" ? "↵\n" : token);

export function scorePanel(model) {
  const panel = fromTemplate("tpl-score");
  const form = panel.querySelector("form");
  // Word models' tokens are words without their spaces: put one between them to read.
  const gap = model.card?.preprocess?.tokenizer === "word" ? " " : "";
  onSubmit(form, panel.querySelector(".error"), async () => {
    const answer = await postJSON(`${modelPath(model.id)}/score`, { text: form.elements.text.value });
    const spans = answer.tokens.map(({ token, logprob }) => {
      const span = element("span", band(logprob), shown(token));
      span.title = `${JSON.stringify(token)}: log-probability ${logprob.toFixed(3)}`;
      return span;
    });
    panel.querySelector(".scored").replaceChildren(...spans.flatMap((span, i) => (i && gap ? [gap, span] : [span])));
    panel.querySelector(".status").textContent =
      `${answer.token_count} tokens, log-probability ${answer.logprob.toFixed(2)} in all: ` +
      `${answer.cross_entropy.toFixed(3)} nats per token (${answer.bits_per_token.toFixed(3)} bits), ` +
      `perplexity ${answer.perplexity.toFixed(2)}`;
  });
  return panel;
}
