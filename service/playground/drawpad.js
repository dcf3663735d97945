// A drawing pad at the size the image classifiers read (28 x 28, their card's preprocess), light ink on a
// black ground as Fashion-MNIST's images are, shown scaled up with square pixels (style.css).
//
// The ink is kept in a Float32Array (0..1, one value per pixel, row by row) and the canvas only shows it,
// so the keyboard cursor drawn on the canvas never reaches the pixels that are sent.

const BRUSH = 1.5; // radius in pixels: a stroke about three pixels wide, as the dataset's outlines are

export class DrawPad {
  constructor(canvas) {
    this.canvas = canvas;
    this.size = canvas.width;
    this.context = canvas.getContext("2d");
    this.ink = new Float32Array(this.size * this.size);
    this.cursor = null; // {x, y} from the first key press until the pad loses focus
    this.last = null; // the previous pointer position of a stroke
    this.listen();
    this.render();
  }

  clear() {
    this.ink.fill(0);
    this.render();
  }

  isBlank() {
    return this.ink.every((v) => v === 0);
  }

  // The pixels as the classify endpoint's "arrays" take them: rows of 0-255 integers.
  rows() {
    return Array.from({ length: this.size }, (_, y) =>
      Array.from(this.ink.subarray(y * this.size, (y + 1) * this.size), (v) => Math.round(255 * v)));
  }

  // A soft round dab centred on (x, y), in pixel units.
  dab(x, y) {
    const r = Math.ceil(BRUSH);
    for (let j = Math.floor(y) - r; j <= Math.floor(y) + r; j++) {
      for (let i = Math.floor(x) - r; i <= Math.floor(x) + r; i++) {
        if (i < 0 || j < 0 || i >= this.size || j >= this.size) continue;
        const d = Math.hypot(i + 0.5 - x, j + 0.5 - y);
        const k = j * this.size + i;
        this.ink[k] = Math.max(this.ink[k], Math.min(1, Math.max(0, 1.25 - d / BRUSH)));
      }
    }
  }

  // Dabs every half pixel from the last point, so a fast stroke leaves no gaps.
  strokeTo(x, y) {
    const from = this.last || { x, y };
    const steps = Math.max(1, Math.ceil(2 * Math.hypot(x - from.x, y - from.y)));
    for (let s = 1; s <= steps; s++) this.dab(from.x + ((x - from.x) * s) / steps, from.y + ((y - from.y) * s) / steps);
    this.last = { x, y };
    this.render();
  }

  render() {
    const image = this.context.createImageData(this.size, this.size);
    this.ink.forEach((v, k) => {
      const grey = Math.round(255 * v);
      image.data.set([grey, grey, grey, 255], 4 * k);
    });
    if (this.cursor) image.data.set([0, 160, 255, 255], 4 * (this.cursor.y * this.size + this.cursor.x));
    this.context.putImageData(image, 0, 0);
  }

  // Pointer position in pixel units of the 28 x 28 grid, whatever size CSS shows the canvas at.
  at(event) {
    const box = this.canvas.getBoundingClientRect();
    return { x: ((event.clientX - box.left) / box.width) * this.size, y: ((event.clientY - box.top) / box.height) * this.size };
  }

  listen() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (event) => {
      c.setPointerCapture(event.pointerId);
      this.last = null;
      const { x, y } = this.at(event);
      this.strokeTo(x, y);
    });
    c.addEventListener("pointermove", (event) => {
      if (event.buttons === 0) return;
      const { x, y } = this.at(event);
      this.strokeTo(x, y);
    });
    c.addEventListener("pointerup", () => (this.last = null));
    c.addEventListener("keydown", (event) => this.key(event));
    c.addEventListener("blur", () => {
      this.cursor = null;
      this.render();
    });
  }

  // Arrows move the cursor (Shift: and draw), Space draws where it is, Delete or Backspace clears.
  key(event) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const cursor = this.cursor || { x: this.size >> 1, y: this.size >> 1 };
    if (event.key in moves) {
      const [dx, dy] = moves[event.key];
      cursor.x = Math.min(this.size - 1, Math.max(0, cursor.x + dx));
      cursor.y = Math.min(this.size - 1, Math.max(0, cursor.y + dy));
      if (event.shiftKey) this.dab(cursor.x + 0.5, cursor.y + 0.5);
    } else if (event.key === " ") {
      this.dab(cursor.x + 0.5, cursor.y + 0.5);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      this.ink.fill(0);
    } else {
      return; // Tab and the rest keep their usual meaning
    }
    event.preventDefault();
    this.cursor = cursor;
    this.render();
  }
}
