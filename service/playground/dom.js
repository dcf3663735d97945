// Small DOM helpers the panels share. Text from the API goes in with textContent only, never as HTML:
// the page adds nothing an API client could not already do.

// A fresh copy of a <template>'s element.
export function fromTemplate(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function showError(node, error) {
  node.textContent = error.message;
  node.hidden = false;
}

export function hideError(node) {
  node.textContent = "";
  node.hidden = true;
}

// Run `work` for a form's submit: the browser's own validation is off (the forms are novalidate, so the
// API judges every value and says so), the submit buttons wait, and an error shows as the API worded it.
export function onSubmit(form, errorNode, work) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(form, errorNode, work);
  });
}

export async function run(form, errorNode, work) {
  const buttons = form.querySelectorAll("button[type=submit]");
  hideError(errorNode);
  buttons.forEach((b) => (b.disabled = true));
  form.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (error) {
    showError(errorNode, error);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    form.removeAttribute("aria-busy");
  }
}

// An optional number field: its number, or undefined when it is empty (the server's default applies).
// What the user typed goes as it is; a value out of range is the API's to refuse.
export function numberField(form, name) {
  const input = form.elements[name];
  return input.value.trim() === "" ? undefined : Number(input.value);
}

// Top-k labels as bars: [{label, probability}] -> <li>label <meter> 98.6%</li>.
export function renderBars(list, predictions) {
  list.replaceChildren(
    ...predictions.map(({ label, probability }) => {
      const item = element("li");
      const meter = element("meter");
      meter.min = 0;
      meter.max = 1;
      meter.value = probability;
      meter.setAttribute("aria-label", label);
      item.append(element("span", "label", label), meter, element("span", "value", percent(probability)));
      return item;
    }),
  );
}

// A value in a status line, marked (data-out=name) for tests and screen readers to find.
export function outField(name, text) {
  const span = element("span", null, text);
  span.dataset.out = name;
  return span;
}

// "Use this seed": puts the seed an answer reported into the form's seed field, to replay it.
export function seedButton(form, seed) {
  const reuse = element("button", null, "Use this seed");
  reuse.type = "button";
  reuse.addEventListener("click", () => (form.elements.seed.value = seed));
  return reuse;
}

export const percent = (p) => `${(100 * p).toFixed(1)}%`;

export function formatBytes(n) {
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} bytes` : `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}
