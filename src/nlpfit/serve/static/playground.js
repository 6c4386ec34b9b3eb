// The nlpfit playground: one input to the served model, its row shown the way the task reads.
// Reads /info (task, model, metrics), /openapi.json (the task's options) and /examples; runs
// POST /predict, or POST /predict/stream (server-sent events) for the tasks that generate text.
"use strict";

const $ = (selector) => document.querySelector(selector);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const GENERATING = ["text-generation", "translation", "summarization"];
const OUTPUT_KEY = { translation: "translation_text", summarization: "summary_text" };
const state = { info: null, kind: "", options: {}, examples: [], next: 0, running: false };

async function getJSON(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function resolve(api, schema) {
  if (!schema) return null;
  if (schema.$ref) return resolve(api, api.components.schemas[schema.$ref.split("/").pop()]);
  for (const part of schema.anyOf || []) if (part.$ref) return resolve(api, part);
  return schema;
}

function hue(label) {
  const name = String(label).replace(/^[BIES]-/, "");
  let n = 0;
  for (const c of name) n = (n * 31 + c.charCodeAt(0)) % 360;
  return (n * 7) % 360;
}

const fixed = (x, digits = 4) => (typeof x === "number" ? Number(x.toFixed(digits)).toString() : String(x));

// ---- the page ------------------------------------------------------------------------------
async function init() {
  const [info, api, examples] = await Promise.all([getJSON("/info"), getJSON("/openapi.json"), getJSON("/examples")]);
  state.info = info;
  state.kind = info.pipeline;
  document.title = `nlpfit playground: ${info.task}`;
  $("#task").textContent = info.task === info.pipeline ? info.task : `${info.task} · ${info.pipeline}`;
  $("#model-dir").textContent = info.model;
  $("#model-dir").title = info.model;
  showMetrics(info.eval || {});
  buildInputs();
  const request = resolve(api, api.paths["/predict"].post.requestBody.content["application/json"].schema);
  buildOptions(resolve(api, request.properties.options), info.options || {});
  state.examples = examples.examples || [];
  showExamples(examples);
  if (info.auth) {
    $("#auth").hidden = false;
    $("#api-key").value = sessionStorage.getItem("nlpfit-api-key") || "";
    $("#api-key").addEventListener("change", (e) => sessionStorage.setItem("nlpfit-api-key", e.target.value));
  }
  $("#run").addEventListener("click", run);
  $("#example").addEventListener("click", () => fillExample(state.next));
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      e.preventDefault();
      run();
    }
  });
  document.body.dataset.ready = "true";
}

function showMetrics(metrics) {
  const skip = /runtime|per_second|samples|steps|epoch|total|gen_len/;
  const box = $("#metrics");
  const shown = Object.entries(metrics).filter(([k, v]) => typeof v === "number" && !skip.test(k)).slice(0, 7);
  for (const [key, value] of shown) {
    const shownValue = Number.isInteger(value) ? String(value) : Math.abs(value) >= 100 ? value.toFixed(1) : fixed(value, 3);
    box.append(h("div", {}, h("dt", {}, key), h("dd", {}, shownValue)));
  }
  if (!shown.length) box.append(h("div", {}, h("dt", {}, "no evaluation metrics")));
}

function buildInputs() {
  const box = $("#inputs");
  if (state.kind === "question-answering") {
    box.append(h("label", { for: "question" }, "Question"), h("input", { type: "text", id: "question" }),
      h("label", { for: "context" }, "Context"), h("textarea", { id: "context", rows: 8 }));
    return;
  }
  const labels = { "token-classification": "Text", "fill-mask": "Text with [MASK]", "text-generation": "Prompt",
    translation: "Text to translate", summarization: "Text to summarize" };
  box.append(h("label", { for: "text" }, labels[state.kind] || "Input"),
    h("textarea", { id: "text", rows: 6, class: state.kind === "text-generation" ? "code" : "", spellcheck: "false" }));
}

const SLIDERS = { temperature: [0, 2, 0.05], top_p: [0, 1, 0.01] };

function buildOptions(schema, defaults) {
  const grid = $("#options");
  const skip = new Set(["batch_size", "question", "context"]);
  for (const [name, prop] of Object.entries((schema && schema.properties) || {})) {
    if (skip.has(name)) continue;
    const spec = prop.anyOf ? prop.anyOf.find((p) => p.type !== "null") || {} : prop;
    const value = name in defaults ? defaults[name] : prop.default;
    const id = `opt-${name}`;
    let control;
    let read;
    if (spec.enum) {
      control = h("select", { id }, spec.enum.map((v) => h("option", { value: v, selected: v === value }, v)));
      read = () => control.value;
    } else if (spec.type === "boolean") {
      control = h("input", { type: "checkbox", id, checked: !!value });
      read = () => control.checked;
    } else if (spec.type === "integer" || spec.type === "number") {
      const parse = spec.type === "integer" ? (v) => parseInt(v, 10) : (v) => parseFloat(v);
      if (SLIDERS[name]) {
        const [min, max, step] = SLIDERS[name];
        const out = h("output", {}, fixed(value, 2));
        const range = h("input", { type: "range", id, min, max, step, value });
        range.addEventListener("input", () => { out.textContent = fixed(parse(range.value), 2); });
        control = h("div", { class: "range" }, range, out);
        read = () => parse(range.value);
      } else {
        control = h("input", { type: "number", id, value, step: spec.type === "integer" ? 1 : "any", min: spec.minimum });
        read = () => parse(control.value);
      }
    } else {
      control = h("input", { type: "text", id, value: value ?? "" });
      read = () => control.value || null;
    }
    state.options[name] = { read, value };
    const label = h("label", { for: id, title: prop.description || "" }, name.replaceAll("_", " "));
    grid.append(spec.type === "boolean" ? h("label", { class: "check", title: prop.description || "" }, control, name)
      : h("div", {}, label, control));
  }
  if (!grid.children.length) $("#options-box").hidden = true;
}

function showExamples(examples) {
  const box = $("#examples");
  if (!state.examples.length) {
    $("#example").hidden = true;
    return;
  }
  state.examples.slice(0, 6).forEach((example, i) => {
    const text = typeof example === "string" ? example : example.question || example.text || JSON.stringify(example);
    box.append(h("button", { type: "button", title: text, onclick: () => fillExample(i) }, text.trim().slice(0, 48)));
  });
  box.append(h("span", { class: "source" },
    examples.source === "examples.json" ? "from the model's validation data" : "built-in examples"));
}

function fillExample(i) {
  const example = state.examples[i % state.examples.length];
  state.next = (i + 1) % state.examples.length;
  if (state.kind === "question-answering") {
    $("#question").value = example.question;
    $("#context").value = example.context;
  } else {
    $("#text").value = typeof example === "string" ? example : example.text || Object.values(example)[0];
  }
}

function readInput() {
  if (state.kind === "question-answering") {
    const question = $("#question").value;
    const context = $("#context").value;
    return question.trim() && context.trim() ? { question, context } : null;
  }
  const text = $("#text").value;
  return text.trim() ? text : null;
}

function readOptions() {
  const options = {};
  for (const [name, { read, value }] of Object.entries(state.options)) {
    const now = read();
    if (now !== value && !(typeof now === "number" && Number.isNaN(now))) options[name] = now;
  }
  return options;
}

function setStatus(text, stateName) {
  const status = $("#status");
  status.textContent = text;
  status.dataset.state = stateName;
}

// ---- running -------------------------------------------------------------------------------
function headers() {
  const out = { "Content-Type": "application/json" };
  const key = state.info.auth && $("#api-key").value.trim();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function failure(response) {
  let message = `HTTP ${response.status}`;
  try {
    message += `: ${(await response.json()).error}`;
  } catch (e) { /* not JSON */ }
  return new Error(message);
}

async function run() {
  if (state.running) return;
  const input = readInput();
  if (input === null) {
    setStatus(state.kind === "question-answering" ? "give a question and a context" : "type a text first", "error");
    return;
  }
  state.running = true;
  $("#run").disabled = true;
  setStatus("running…", "running");
  const started = performance.now();
  const body = JSON.stringify({ inputs: [input], options: readOptions() });
  try {
    if (state.info.stream && GENERATING.includes(state.kind)) await runStream(input, body);
    else {
      const response = await fetch("/predict", { method: "POST", headers: headers(), body });
      if (!response.ok) throw await failure(response);
      show((await response.json()).predictions[0]);
    }
    setStatus(`done in ${Math.round(performance.now() - started)} ms`, "done");
  } catch (error) {
    setStatus(error.message, "error");
  } finally {
    state.running = false;
    $("#run").disabled = false;
  }
}

async function runStream(input, body) {
  const response = await fetch("/predict/stream", { method: "POST", headers: headers(), body });
  if (!response.ok) throw await failure(response);
  const live = startLive(input);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      const event = JSON.parse(data);
      if (event.error) throw new Error(event.error);
      if (event.token !== undefined && event.token !== null) live.textContent += event.token;
      if (event.done) {
        show(event.row);
        return;
      }
    }
  }
  throw new Error("the stream ended without a row");
}

function startLive(input) {
  const output = $("#output");
  output.replaceChildren();
  $("#raw").textContent = "";
  let live;
  if (state.kind === "text-generation") {
    live = h("span", { class: "gen streaming" });
    output.append(h("pre", { class: "code", id: "live" }, h("span", { class: "prompt" }, input), live));
  } else {
    live = h("div", { class: "generated streaming", id: "live" });
    output.append(live);
  }
  return live;
}

// ---- one row, per task kind ------------------------------------------------------------------
function show(row) {
  const output = $("#output");
  output.replaceChildren();
  const render = { "token-classification": entities, "fill-mask": candidates, "question-answering": answer,
    "text-generation": completions, translation: generated, summarization: generated }[state.kind];
  output.append(...(render ? render(row) : [h("pre", {}, JSON.stringify(row, null, 2))]));
  $("#raw").textContent = JSON.stringify(row, null, 2);
}

function entities(row) {
  const text = row.text;
  const found = row.entities.filter((e) => e.start !== null && e.end !== null).sort((a, b) => a.start - b.start);
  const box = h("div", { class: "tagged", id: "tagged" });
  let at = 0;
  for (const e of found) {
    if (e.start < at) continue;
    box.append(text.slice(at, e.start), h("mark", { class: "ent", "data-label": e.entity_group, "data-score": e.score,
      style: `--hue: ${hue(e.entity_group)}` }, h("span", { class: "ent-text" }, text.slice(e.start, e.end)),
      h("span", { class: "ent-label" }, `${e.entity_group} ${e.score.toFixed(2)}`)));
    at = e.end;
  }
  box.append(text.slice(at));
  if (!row.entities.length) return [box, h("p", { class: "score-line" }, "No entities found.")];
  const table = h("table", {}, h("tr", {}, h("th", {}, "label"), h("th", {}, "words"), h("th", {}, "score"),
    h("th", {}, "characters")), row.entities.map((e) => h("tr", {}, h("td", {}, e.entity_group), h("td", {}, e.word),
    h("td", { class: "num" }, fixed(e.score)), h("td", { class: "num" }, `${e.start}–${e.end}`))));
  return [box, table];
}

function candidates(row) {
  const perMask = row.predictions.length && Array.isArray(row.predictions[0]) ? row.predictions : [row.predictions];
  const out = [];
  perMask.forEach((list, i) => {
    if (perMask.length > 1) out.push(h("div", { class: "mask-title" }, `mask ${i + 1}`));
    out.push(h("ol", { class: "cands", "data-mask": i }, list.map((c) => h("li", { class: "cand" },
      h("span", { class: "tok" }, c.token), h("span", { class: "bar" }, h("i", { style: `width: ${(c.score * 100).toFixed(1)}%` })),
      h("span", { class: "score" }, fixed(c.score)), h("span", { class: "seq" }, c.sequence)))));
  });
  return out;
}

function generated(row) {
  return [h("div", { class: "generated", id: "generated" }, row[OUTPUT_KEY[state.kind]])];
}

function completions(row) {
  return row.completions.map((text, i) => h("pre", { class: "code", "data-completion": i },
    h("span", { class: "prompt" }, row.text), h("span", { class: "gen" }, text)));
}

function answer(row) {
  const context = $("#context").value;
  const box = h("div", { class: "context", id: "answered" });
  if (!row.answer) {
    box.append(context);
    return [h("p", { class: "score-line" }, `No answer in this context (score ${fixed(row.score)}).`), box];
  }
  box.append(context.slice(0, row.start), h("mark", { class: "answer" }, h("span", { class: "ent-text" },
    context.slice(row.start, row.end)), h("span", { class: "ent-label" }, `answer ${row.score.toFixed(2)}`)),
  context.slice(row.end));
  return [h("p", { class: "score-line" }, h("strong", {}, row.answer), `  · score ${fixed(row.score)} · characters ${row.start}–${row.end}`), box];
}

init().catch((error) => setStatus(`cannot load the model's description: ${error.message}`, "error"));
