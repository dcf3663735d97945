// The one way the page talks to the server: the public API, nothing else.
//
// URLs are relative ("v1/models"): the page is /ui, so they resolve to /v1/models, and to /prefix/v1/models
// behind a proxy that serves the API under a prefix. The API key, when the user gives one, lives in this
// module's memory only (never localStorage): it goes with the tab.

let apiKey = "";

export function setKey(key) {
  apiKey = key.trim();
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API's own words: {"error": "..."}, or {"error": {"message": "..."}} on the OpenAI-compatible routes.
export function errorMessage(doc) {
  const error = doc && doc.error;
  if (typeof error === "string") return error;
  if (error && typeof error.message === "string") return error.message;
  return null;
}

async function failure(response) {
  const text = await response.text();
  let message = null;
  try {
    message = errorMessage(JSON.parse(text));
  } catch {
    // not JSON (a proxy's error page, say): fall back to the status line
  }
  return new ApiError(response.status, message || `${response.status} ${response.statusText}`.trim());
}

// fetch() with the key, a JSON body when given one (an object, or text already serialised), and an
// ApiError carrying the API's message for any status that is not 2xx.
export async function request(path, { method = "GET", json, body, signal } = {}) {
  const headers = {};
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = typeof json === "string" ? json : JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body, signal });
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJSON(path) {
  return (await request(path)).json();
}

export async function postJSON(path, json) {
  return (await request(path, { method: "POST", json })).json();
}

// A model's name in a path: names are [a-z0-9._-], but the page does not rely on it.
export const modelPath = (name) => `v1/models/${encodeURIComponent(name)}`;
export const v2ModelPath = (name) => `v2/models/${encodeURIComponent(name)}`;

// A JSON body with a seed typed by the user: the seed goes in as the digits typed, since seeds run to 2**63,
// past what a JavaScript number holds exactly; anything else typed goes as a string, for the API to refuse in
// its own words; empty, it is left out (the server draws one). `build(seed)` makes the body around it.
const SEED = "@@seed@@"; // stands for the seed's digits in the JSON text until they are put in

export function seededJSON(build, typed) {
  const seed = typed.trim();
  const integer = /^-?\d+$/.test(seed);
  const text = JSON.stringify(build(seed === "" ? undefined : integer ? SEED : seed));
  return integer ? text.replace(`"${SEED}"`, seed) : text;
}

// The seed as the server wrote it, from the answer's raw text (JSON.parse would round it).
export const seedOf = (raw) => (raw.match(/"seed":(\d+)/) || [])[1];

// Server-sent events from a POST, which EventSource cannot send: fetch and read the body as it arrives.
// Yields, per network read, the list of events it completed, each as {raw, doc}: raw is the data line's
// text, for the numbers JSON.parse would round (seeds go up to 2**63).
export async function* events(path, json, signal) {
  const response = await request(path, { method: "POST", json, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    pending += value;
    const blocks = pending.split("\n\n"); // an event ends with a blank line
    pending = blocks.pop();
    const ready = blocks.map(dataOf).filter((raw) => raw !== null).map((raw) => ({ raw, doc: JSON.parse(raw) }));
    if (ready.length) yield ready;
  }
}

function dataOf(block) {
  const lines = block.split("\n").filter((line) => line.startsWith("data:"));
  return lines.length ? lines.map((line) => line.slice(5).trimStart()).join("\n") : null;
}
