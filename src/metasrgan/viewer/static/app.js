// metasrgan viewer: plain JavaScript, no build step, no network access beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  volume: null,        // the loaded volume's description from the server
  lrImage: null,       // the current input slice as an <img>
  lrKey: "",
  seq: 0,              // increases with every zoom request; the server drops older ones
  controller: null,    // AbortController of the zoom request in flight
  client: Math.random().toString(36).slice(2, 12),
  scheduled: false,
  syncing: false,
  view: { x: 0.5, y: 0.5 }, // centre of the visible area, as a fraction of the image
};

function message(text, isError = false) {
  const el = $("message");
  el.textContent = text || "";
  el.classList.toggle("error", Boolean(isError));
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = body && (body.error || JSON.stringify(body.detail || body));
    const err = new Error(detail || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
  return body;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the server sent an image the browser cannot show"));
    img.src = src;
  });
}

// ---------------------------------------------------------------- model and scans
async function init() {
  try {
    state.info = await api("/api/info");
  } catch (err) {
    message(`Cannot reach the viewer's server: ${err.message}`, true);
    return;
  }
  const model = state.info.model;
  const modelEl = $("model");
  modelEl.textContent = `${model.name}, ${model.parameters.toLocaleString()} parameters` +
    (model.path ? ` · ${model.path.split("/").pop()}` : "") +
    (model.untrained ? " · UNTRAINED" : " · trained");
  modelEl.classList.toggle("trained", !model.untrained);
  if (model.untrained) {
    $("untrained").textContent = model.warning;
    $("untrained").hidden = false;
  }
  $("upload").accept = [...state.info.limits.formats, ".gz"].join(",");
  const select = $("volume");
  for (const name of state.info.samples) {
    select.add(new Option(`${name} (bundled sample)`, `sample:${name}`));
  }
  if (state.info.default_sample) select.value = `sample:${state.info.default_sample}`;
  await chooseVolume(select.value);
}

async function chooseVolume(value) {
  if (!value) return;
  message("Loading scan…");
  try {
    let description;
    if (value.startsWith("sample:")) {
      description = await api(`/api/samples/${encodeURIComponent(value.slice(7))}`,
        { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    } else {
      description = await api(`/api/volumes/${encodeURIComponent(value.slice(7))}`);
    }
    showVolume(description);
  } catch (err) {
    message(err.message, true);
  }
}

function showVolume(description) {
  state.volume = description;
  const axis = $("axis");
  axis.replaceChildren();
  for (const [name, count] of Object.entries(description.slices)) {
    axis.add(new Option(`${name} (${count})`, name));
  }
  axis.value = description.default.axis;
  setSliceRange(description.default.index);
  const notes = description.notes.length ? ` · ${description.notes.join("; ")}` : "";
  message(`${description.name}: ${description.shape.join(" × ")} voxels, spacing ` +
    `${description.spacing.join(" × ")} mm${notes}`);
  state.view = { x: 0.5, y: 0.5 };
  refreshSlice();
}

function setSliceRange(index) {
  const count = state.volume.slices[$("axis").value];
  const slider = $("slice");
  slider.max = String(count - 1);
  slider.value = String(Math.min(index, count - 1));
  slider.disabled = count <= 1;
  $("slice-value").textContent = `${slider.value} / ${count - 1}`;
}

async function upload(file) {
  const limit = state.info.limits.max_upload_bytes;
  if (file.size > limit) {
    message(`${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MB; the limit is ` +
      `${(limit / 2 ** 20).toFixed(0)} MB`, true);
    return;
  }
  message(`Reading ${file.name}…`);
  try {
    const description = await api(`/api/volumes?filename=${encodeURIComponent(file.name)}`,
      { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream",
        "X-Metasrgan-Token": state.info.token } });
    const value = `volume:${description.id}`;
    const select = $("volume");
    if (![...select.options].some((o) => o.value === value)) {
      select.add(new Option(`${description.name} (uploaded)`, value));
    }
    select.value = value;
    showVolume(description);
  } catch (err) {
    message(err.message, true);
  }
}

// ---------------------------------------------------------------- slice and zoom
function currentRequest() {
  return {
    volume: state.volume.id,
    axis: $("axis").value,
    index: Number($("slice").value),
    scale: Number($("scale").value),
  };
}

async function refreshSlice() {
  if (!state.volume) return;
  const { volume, axis, index } = currentRequest();
  const key = `${volume}/${axis}/${index}`;
  state.lrKey = key;
  try {
    const img = await loadImage(`/api/volumes/${encodeURIComponent(volume)}/slice.png` +
      `?axis=${axis}&index=${index}`);
    if (state.lrKey !== key) return; // a newer slice was asked for meanwhile
    state.lrImage = img;
    drawInput();
    scheduleZoom();
  } catch (err) {
    message(err.message, true);
  }
}

function outputSize(n, scale) {
  return Math.max(1, Math.floor(n * scale + 1e-9));
}

// The input drawn at the requested zoom right away (nearest-neighbour or smooth), so the
// slider responds at once while the server computes.
function drawInput() {
  const img = state.lrImage;
  if (!img) return;
  const scale = Number($("scale").value);
  const canvas = $("lr");
  resizeCanvas(canvas, outputSize(img.width, scale), outputSize(img.height, scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = !$("nearest").checked;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  $("lr-caption").textContent = `${img.width}×${img.height} shown at ×${scale.toFixed(2)}`;
  restoreView();
}

function resizeCanvas(canvas, width, height) {
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
}

function scheduleZoom() {
  // coalesce the many input events of a drag into at most one request per frame
  if (state.scheduled) return;
  state.scheduled = true;
  requestAnimationFrame(() => {
    state.scheduled = false;
    requestZoom();
  });
}

async function requestZoom() {
  if (!state.volume || !state.lrImage) return;
  if (state.controller) state.controller.abort(); // superseded: never let stale work queue
  const controller = new AbortController();
  state.controller = controller;
  const seq = ++state.seq;
  const req = currentRequest();
  const query = new URLSearchParams({ ...req, client: state.client, seq: String(seq) });
  const started = performance.now();
  document.body.classList.add("busy");
  try {
    const result = await api(`/api/zoom?${query}`, { signal: controller.signal });
    if (seq !== state.seq) return;
    const [sr, bicubic, diff] = await Promise.all([
      loadImage(result.images.metasrgan),
      loadImage(result.images.bicubic),
      loadImage(result.images.difference),
    ]);
    if (seq !== state.seq) return;
    showResult(result, { sr, bicubic, diff }, performance.now() - started);
  } catch (err) {
    if (err.name === "AbortError" || err.status === 409) return; // superseded on purpose
    if (seq === state.seq) message(err.message, true);
  } finally {
    if (seq === state.seq) {
      document.body.classList.remove("busy");
      state.controller = null;
    }
  }
}

function showResult(result, imgs, roundTripMs) {
  for (const [id, img] of [["sr", imgs.sr], ["bicubic", imgs.bicubic], ["diff", imgs.diff]]) {
    const canvas = $(id);
    resizeCanvas(canvas, img.width, img.height);
    canvas.getContext("2d").drawImage(img, 0, 0);
    canvas.dataset.scale = result.scale;
  }
  const t = result.timings_ms;
  const size = `${result.output_shape[1]}×${result.output_shape[0]}`;
  const featureNote = t.features_cached ? "features cached" : `features ${fmt(t.features)}`;
  $("sr-caption").textContent = `${size} · ${fmt(t.metasrgan)} (${featureNote})`;
  $("bicubic-caption").textContent = `${size} · ${fmt(t.bicubic)}`;
  $("diff-caption").textContent = `max |Δ| ${result.difference.max_abs.toPrecision(3)} ` +
    `(colours saturate at ${result.difference.display_range})`;
  const exact = Math.abs(result.scale_value - result.scale_requested) < 1e-9;
  const fraction = result.scale.replace(/\/1$/, "");
  const exactly = fraction.includes("/") ? `${fraction} = ${result.scale_value.toFixed(3)}` :
    `×${fraction}`;
  $("scale-used").textContent = exact ? (fraction.includes("/") ? `= ${fraction}` : "") :
    `computed at ${exactly}`;
  const cached = result.from_cache ? " (result cached)" : "";
  $("timings").innerHTML = `×${result.scale_value.toFixed(3)}: Meta-SRGAN ` +
    `<b id="time-metasrgan">${fmt(t.metasrgan)}</b>, bicubic <b id="time-bicubic">` +
    `${fmt(t.bicubic)}</b>, server ${fmt(t.request)}, round trip ${fmt(roundTripMs)}${cached}`;
  restoreView();
}

function fmt(ms) {
  return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

// ---------------------------------------------------------------- linked scrolling
function viewports() {
  return [...document.querySelectorAll(".viewport")];
}

function restoreView() {
  state.syncing = true;
  for (const vp of viewports()) {
    vp.scrollLeft = state.view.x * vp.scrollWidth - vp.clientWidth / 2;
    vp.scrollTop = state.view.y * vp.scrollHeight - vp.clientHeight / 2;
  }
  requestAnimationFrame(() => { state.syncing = false; });
}

function onScroll(event) {
  if (state.syncing) return;
  const vp = event.target;
  state.view = {
    x: (vp.scrollLeft + vp.clientWidth / 2) / Math.max(vp.scrollWidth, 1),
    y: (vp.scrollTop + vp.clientHeight / 2) / Math.max(vp.scrollHeight, 1),
  };
  restoreView();
}

// ---------------------------------------------------------------- wiring
function wire() {
  $("volume").addEventListener("change", (e) => chooseVolume(e.target.value));
  $("upload").addEventListener("change", (e) => {
    if (e.target.files.length) upload(e.target.files[0]);
    e.target.value = "";
  });
  $("axis").addEventListener("change", () => {
    setSliceRange(Math.floor(state.volume.slices[$("axis").value] / 2));
    state.view = { x: 0.5, y: 0.5 };
    refreshSlice();
  });
  $("slice").addEventListener("input", () => {
    setSliceRange(Number($("slice").value));
    refreshSlice();
  });
  $("scale").addEventListener("input", () => {
    $("scale-value").textContent = `×${Number($("scale").value).toFixed(2)}`;
    drawInput();
    scheduleZoom();
  });
  $("nearest").addEventListener("change", drawInput);
  $("show-diff").addEventListener("change", (e) => {
    $("panels").classList.toggle("no-diff", !e.target.checked);
  });
  for (const vp of viewports()) vp.addEventListener("scroll", onScroll);
}

wire();
init();
