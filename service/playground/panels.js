// Which panels a model gets, by the task its card names (an autoencoder samples only when its card has a
// prior). A task to come is one more module in panels/ and one more line here; a model whose task has no
// panel yet is still listed, with a note.

import { generatePanel } from "./panels/generate.js";
import { imagePanel } from "./panels/image.js";
import { reconstructPanel } from "./panels/reconstruct.js";
import { samplePanel } from "./panels/sample.js";
import { scorePanel } from "./panels/score.js";
import { textPanel } from "./panels/text.js";

const PANELS = {
  "image-classification": [imagePanel],
  "text-classification": [textPanel],
  "language-model": [generatePanel, scorePanel],
  "image-generation": [samplePanel],
  autoencoder: [reconstructPanel],
};

export function panelsFor(model) {
  const panels = PANELS[model.task] || [];
  return model.task === "autoencoder" && model.card?.latent?.prior ? [samplePanel, ...panels] : panels;
}
