// Text classifiers: POST /v1/models/{m}/classify with {"text": "...", "top_k": k}; labels as bars.

import { modelPath, postJSON } from "../api.js";
import { fromTemplate, numberField, onSubmit, renderBars } from "../dom.js";

export function textPanel(model) {
  const panel = fromTemplate("tpl-text");
  panel.querySelector(".split").append(fromTemplate("tpl-labels"));
  const form = panel.querySelector("form");
  onSubmit(form, panel.querySelector(".error"), async () => {
    const answer = await postJSON(`${modelPath(model.id)}/classify`,
      { text: form.elements.text.value, top_k: numberField(form, "top_k") }); // undefined: left out
    renderBars(panel.querySelector(".bars"), answer.predictions[0]);
  });
  return panel;
}
