// Generators and VAEs: POST /v1/models/{m}/sample. n images from a seed (typed, or drawn by the server and
// reported back to replay), of one class for a conditional generator (or classes drawn from the seed),
// shown as a grid of the PNGs the API answered.

import { modelPath, request, seededJSON, seedOf } from "../api.js";
import { element, fromTemplate, numberField, onSubmit, outField, seedButton } from "../dom.js";

// The class choices of a conditional generator: its card's labels, by name; none for other models.
function classChoices(select, model) {
  const labels = model.card?.latent?.condition ? model.card.labels || [] : [];
  select.append(...labels.map((label) => {
    const option = element("option", null, label);
    option.value = label;
    return option;
  }));
  select.closest("div").hidden = labels.length === 0;
}

export function samplePanel(model) {
  const panel = fromTemplate("tpl-sample");
  const form = panel.querySelector("form");
  const grid = panel.querySelector(".samples");
  const status = panel.querySelector(".status");
  classChoices(form.elements.class, model);

  onSubmit(form, panel.querySelector(".error"), async () => {
    const chosen = form.elements.class.value; // "": classes drawn from the seed
    const body = seededJSON((seed) => ({ n: numberField(form, "n"), seed, class: chosen || undefined }),
      form.elements.seed.value);
    const start = performance.now();
    const raw = await (await request(`${modelPath(model.id)}/sample`, { method: "POST", json: body })).text();
    const answer = JSON.parse(raw);
    grid.replaceChildren(...answer.images.map((png, i) => {
      const img = element("img");
      img.src = `data:image/png;base64,${png}`;
      img.alt = answer.classes ? `Sample ${i + 1}: ${answer.classes[i]}` : `Sample ${i + 1}`;
      img.title = img.alt;
      return img;
    }));
    const seed = seedOf(raw);
    status.replaceChildren(outField("count", String(answer.images.length)), " images in ",
      `${((performance.now() - start) / 1000).toFixed(2)} s · seed `, outField("seed", seed), " ", seedButton(form, seed));
  });
  return panel;
}
