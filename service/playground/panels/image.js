// Image classifiers: POST /v1/models/{m}/classify with the drawing as a pixel array ({"arrays": [...]}), or
// with a chosen or dropped file sent as it is (a multipart upload, as curl -F files=@shirt.png does).

import { modelPath, request } from "../api.js";
import { DrawPad } from "../drawpad.js";
import { fromTemplate, numberField, onSubmit, renderBars, run } from "../dom.js";

export function imagePanel(model) {
  const panel = fromTemplate("tpl-image");
  panel.querySelector(".split").append(fromTemplate("tpl-labels"));
  const form = panel.querySelector("form");
  const error = panel.querySelector(".error");
  const preview = panel.querySelector("[data-preview]");
  const pad = new DrawPad(panel.querySelector("canvas"));

  async function classify(init, query = "") {
    const response = await request(`${modelPath(model.id)}/classify${query}`, { method: "POST", ...init });
    renderBars(panel.querySelector(".bars"), (await response.json()).predictions[0]);
  }

  onSubmit(form, error, () => classify({ json: { arrays: [pad.rows()], top_k: numberField(form, "top_k") } }));
  panel.querySelector("[data-action=clear]").addEventListener("click", () => pad.clear());

  function upload(file) {
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file); // a blob: URL, which the page's CSP allows for images
    preview.alt = `The chosen file, ${file.name}`;
    preview.hidden = false;
    const body = new FormData();
    body.append("files", file, file.name);
    const top_k = numberField(form, "top_k"); // a multipart body has no JSON field for it: the query has
    return run(form, error, () => classify({ body }, top_k === undefined ? "" : `?top_k=${encodeURIComponent(top_k)}`));
  }

  const input = form.elements.file;
  input.addEventListener("change", () => input.files.length && upload(input.files[0]));
  const drop = panel.querySelector("[data-drop]");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
  });
  return panel;
}
