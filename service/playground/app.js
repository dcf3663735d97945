// The page: the API key, the model list, the panels of the chosen model, and the live metrics.
// The chosen model is in the URL's fragment (/ui#island-gru), so a link opens the page on it.

import { setKey } from "./api.js";
import { hideError, showError } from "./dom.js";
import { startMetrics } from "./metrics.js";
import { loadModels, markChosen, renderModels } from "./models.js";
import { panelsFor } from "./panels.js";

const byId = (id) => document.getElementById(id);
let models = [];

// The model the URL's fragment names, if it serves.
const fromHash = () => models.find((m) => m.id === decodeURIComponent(location.hash.slice(1)) && m.state === "READY");

function choose(model, { focus = true } = {}) {
  markChosen(byId("model-list"), model.id);
  const panels = panelsFor(model);
  byId("try-title").textContent = `Try ${model.id}`;
  byId("try-hint").textContent = panels.length
    ? model.card?.description || ""
    : `The playground has no panel for ${model.task} models yet; the API serves them (see the OpenAPI docs).`;
  byId("panels").replaceChildren(...panels.map((make) => make(model)));
  if (fromHash() !== model) history.replaceState(null, "", `#${encodeURIComponent(model.id)}`);
  if (focus) byId("try-title").focus(); // keyboard and screen-reader users land on what they chose
}

async function refresh() {
  const error = byId("models-error");
  hideError(error);
  try {
    models = await loadModels();
  } catch (e) {
    showError(error, e);
    if (e.status === 401) byId("api-key").focus(); // the server wants a key: the field is where to go
    return;
  }
  renderModels(byId("model-list"), models, choose);
  const wanted = fromHash();
  if (wanted) choose(wanted, { focus: false });
}

window.addEventListener("hashchange", () => { // a link to #model on the page, or Back and Forward
  const wanted = fromHash();
  if (wanted) choose(wanted);
});

byId("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setKey(byId("api-key").value);
  refresh();
});
refresh();
startMetrics();
