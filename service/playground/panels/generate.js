// Language models, generation: POST /v2/models/{m}/generate_stream (the generate extension), read as
// server-sent events while they arrive. The text grows token by token; at the end come the finish reason,
// the rate, and the seed that replays the run.

import { ApiError, errorMessage, events, seededJSON, seedOf, v2ModelPath } from "../api.js";
import { fromTemplate, numberField, onSubmit, outField, seedButton } from "../dom.js";

const NUMBERS = ["max_tokens", "temperature", "top_k", "top_p", "repetition_penalty"];

// The request as JSON text, the seed as typed (api.seededJSON).
function body(form) {
  const parameters = {};
  for (const name of NUMBERS) parameters[name] = numberField(form, name); // empty: left out, the default
  const stop = form.elements.stop.value.split("\n").filter((s) => s !== "").map((s) => s.replaceAll("\\n", "\n"));
  if (stop.length) parameters.stop = stop;
  return seededJSON((seed) => ({ text_input: form.elements.prompt.value, parameters: { ...parameters, seed } }),
    form.elements.seed.value);
}

const field = outField;

export function generatePanel(model) {
  const panel = fromTemplate("tpl-generate");
  const form = panel.querySelector("form");
  const status = panel.querySelector(".status");
  const stop = panel.querySelector("[data-action=stop]");
  let controller = null;
  stop.addEventListener("click", () => controller?.abort());

  function report(run, finish, seed) {
    const seconds = (performance.now() - run.start) / 1000;
    const parts = [
      finish ? [field("finish", finish), " (finish reason)"] : ["Stopped"],
      [field("tokens", String(run.tokens)), " tokens in ", field("chunks", String(run.chunks)), " network reads"],
      [`${seconds.toFixed(2)} s, `, field("rate", (run.tokens / seconds).toFixed(1)), " tokens/s",
        run.first ? `, first after ${((run.first - run.start) / 1000).toFixed(2)} s` : ""],
    ];
    if (seed) parts.push(["seed ", field("seed", seed), " ", seedButton(form, seed)]);
    status.replaceChildren(...parts.flatMap((part, i) => (i ? [" · ", ...part] : part)));
  }

  onSubmit(form, panel.querySelector(".error"), async () => {
    panel.querySelector(".prompt").textContent = form.elements.prompt.value;
    const out = document.createTextNode("");
    panel.querySelector(".generated").replaceChildren(out);
    status.replaceChildren("Generating…");
    const run = { tokens: 0, chunks: 0, start: performance.now(), first: null };
    controller = new AbortController();
    stop.disabled = false;
    try {
      for await (const ready of events(`${v2ModelPath(model.id)}/generate_stream`, body(form), controller.signal)) {
        run.chunks += 1;
        for (const { raw, doc } of ready) {
          // Once the stream has begun, an error can only come in-band, as an event of its own.
          if (doc.error !== undefined) throw new ApiError(200, errorMessage(doc));
          run.first ??= performance.now();
          run.tokens += 1;
          out.appendData(doc.text_output);
          if (doc.details) report(run, doc.details.finish_reason, seedOf(raw));
        }
      }
    } catch (error) {
      if (error.name !== "AbortError") {
        status.replaceChildren();
        throw error;
      }
      report(run, null, null); // the user pressed Stop; the server ends the sequence when we hang up
    } finally {
      stop.disabled = true;
      controller = null;
    }
  });
  return panel;
}
