// Which panels a model gets, by the task its card names. A task to come (image-generation, with
// /v1/models/{m}/sample) is one more module in panels/ and one more line here; a model whose task has no
// panel yet is still listed, with a note.

import { generatePanel } from "./panels/generate.js";
import { imagePanel } from "./panels/image.js";
import { scorePanel } from "./panels/score.js";
import { textPanel } from "./panels/text.js";

export const PANELS = {
  "image-classification": [imagePanel],
  "text-classification": [textPanel],
  "language-model": [generatePanel, scorePanel],
};
