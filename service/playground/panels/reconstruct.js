// Autoencoders: POST /v1/models/{m}/reconstruct with the drawing as a pixel array, and /embed for its code.
// The reconstruction shows beside the drawing, scaled up as the pad is; the code as its numbers.

import { modelPath, postJSON } from "../api.js";
import { DrawPad } from "../drawpad.js";
import { fromTemplate, onSubmit } from "../dom.js";

export function reconstructPanel(model) {
  const panel = fromTemplate("tpl-reconstruct");
  const form = panel.querySelector("form");
  const pad = new DrawPad(panel.querySelector("canvas"));
  const out = panel.querySelector("[data-reconstruction]");
  const code = panel.querySelector(".code");

  onSubmit(form, panel.querySelector(".error"), async () => {
    const arrays = [pad.rows()];
    const [made, embedded] = await Promise.all([
      postJSON(`${modelPath(model.id)}/reconstruct`, { arrays, format: "png" }),
      postJSON(`${modelPath(model.id)}/embed`, { arrays }),
    ]);
    out.src = `data:image/png;base64,${made.images[0]}`;
    out.hidden = false;
    code.textContent = `code (${embedded.codes[0].length} numbers): ` +
      embedded.codes[0].map((v) => v.toFixed(3)).join(", ");
  });
  panel.querySelector("[data-action=clear]").addEventListener("click", () => pad.clear());
  return panel;
}
