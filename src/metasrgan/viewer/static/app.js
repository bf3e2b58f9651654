// metasrgan viewer: plain JavaScript modules, no build step, no network beyond this server.
//
// Images arrive as 16-bit raw arrays (/api/volumes/{id}/slice.bin, /api/zoom.bin) and are
// drawn through window/level tables (render.js), so window/level, crosshair and layout
// never wait for the server.  One zoom request is in flight at a time; while it computes,
// the newest wanted zoom replaces any older wish, and is asked for as soon as it returns.
"use strict";

import { describeWebGL, GpuUpscaler } from "./gpu.js";
import {
  differenceTable, drawDifference, drawGray, grayTable, maxAbsDifference, percentiles,
} from "./render.js";

const $ = (id) => document.getElementById(id);
// For each view: the RAS voxel axis of its rows, of its columns and across slices.
const VIEW = {
  sagittal: { rows: 2, cols: 1, through: 0 },
  coronal: { rows: 2, cols: 0, through: 1 },
  axial: { rows: 1, cols: 0, through: 2 },
};
const DIFF_RANGE = 0.1;
const CACHE_BYTES = 256 * 2 ** 20;
const PRESETS = { auto: [1, 99], contrast: [10, 90] };

const state = {
  info: null,
  volume: null, // the loaded volume's description from the server
  axis: "axial",
  index: 0,
  lr: null, // {key, pixels, height, width}
  shown: null, // the zoom on screen: {key, sr, bic, height, width, meta, timings}
  want: null, // the newest zoom wanted: {key, params, t}
  inflight: false,
  seq: 0,
  client: Math.random().toString(36).slice(2, 12),
  cache: new Map(), // zoom key -> result (client side, bounded by CACHE_BYTES)
  cacheBytes: 0,
  wl: { low: 0, high: 1 }, // window in the model's [0, 1] units
  gray: grayTable(0, 1),
  diffTable: differenceTable(DIFF_RANGE),
  fit: false,
  cross: [0, 0, 0], // crosshair voxel (RAS indices; [col, row] for plain images)
  syncing: false,
  view: { x: 0.5, y: 0.5 }, // centre of the visible area, as a fraction of the image
  webgl: null, // what describeWebGL() found
  gpu: null, // the GpuUpscaler, made on first use
  kernels: new Map(), // "scale_h/scale_w" -> {meta, data}: the page's Meta-Upscale weights
};
window.viewerDebug = { state }; // tests compare the page's pixels with the server's
// What benchmarks and tests read: one entry per zoom and per slice shown.
window.viewerStats = { zooms: [], slices: [], errors: [] };

function message(text, isError = false) {
  const el = $("message");
  el.textContent = text || "";
  el.classList.toggle("error", Boolean(isError));
  if (isError) window.viewerStats.errors.push(text);
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    const body = type.includes("json") ? await response.json() : null;
    const err = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
  if (type.includes("json")) return response.json();
  return { headers: response.headers, buffer: await response.arrayBuffer() };
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
  $("model").textContent = `${model.name}, ${model.parameters.toLocaleString()} parameters` +
    (model.path ? ` · ${model.path.split("/").pop()}` : "") +
    (model.untrained ? " · UNTRAINED" : " · trained");
  $("model").classList.toggle("trained", !model.untrained);
  if (model.untrained) {
    $("untrained").textContent = model.warning;
    $("untrained").hidden = false;
  }
  $("upload").accept = [...state.info.limits.formats, ".gz"].join(",");
  for (const name of state.info.samples) {
    $("volume").add(new Option(`${name} (bundled sample)`, `sample:${name}`));
  }
  if (state.info.default_sample) $("volume").value = `sample:${state.info.default_sample}`;
  await chooseVolume($("volume").value);
}

async function chooseVolume(value) {
  if (!value) return;
  message("Loading scan…");
  try {
    const id = encodeURIComponent(value.slice(value.indexOf(":") + 1));
    const description = value.startsWith("sample:")
      ? await api(`/api/samples/${id}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
      })
      : await api(`/api/volumes/${id}`);
    showVolume(description);
  } catch (err) {
    message(err.message, true);
  }
}

function showVolume(description) {
  state.volume = description;
  state.lr = null;
  const axis = $("axis");
  axis.replaceChildren();
  for (const [name, count] of Object.entries(description.slices)) {
    axis.add(new Option(`${name} (${count})`, name));
  }
  const shape = description.shape;
  state.cross = shape.map((n) => Math.floor(n / 2));
  state.wlPending = true; // fit the window to the first slice shown
  const notes = description.notes.length ? ` · ${description.notes.join("; ")}` : "";
  message(`${description.name}: ${shape.join(" × ")} voxels of ` +
    `${description.spacing.map((s) => s.toFixed(2)).join(" × ")} mm${notes}`);
  state.view = { x: 0.5, y: 0.5 };
  setAxis(description.default.axis, description.default.index);
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
    const description = await api(`/api/volumes?filename=${encodeURIComponent(file.name)}`, {
      method: "POST",
      body: file,
      headers: { "Content-Type": "application/octet-stream",
        "X-Metasrgan-Token": state.info.token },
    });
    const value = `volume:${description.id}`;
    if (![...$("volume").options].some((o) => o.value === value)) {
      $("volume").add(new Option(`${description.name} (uploaded)`, value));
    }
    $("volume").value = value;
    showVolume(description);
  } catch (err) {
    message(err.message, true);
  }
}

// ---------------------------------------------------------------- view geometry
function view() {
  return state.volume.views[state.axis];
}

function scales() {
  if ($("per-axis").checked) return [Number($("scale-h").value), Number($("scale-w").value)];
  const s = Number($("scale").value);
  return [s, s];
}

function setAxis(axis, index) {
  state.axis = axis;
  $("axis").value = axis;
  const count = state.volume.slices[axis];
  $("slice").max = String(count - 1);
  $("slice").disabled = count <= 1;
  const through = VIEW[axis] && state.volume.shape.length === 3 ? VIEW[axis].through : null;
  setSlice(index ?? (through === null ? 0 : state.cross[through]));
}

function setSlice(index) {
  const count = state.volume.slices[state.axis];
  index = Math.max(0, Math.min(count - 1, Math.round(index)));
  state.index = index;
  $("slice").value = String(index);
  $("slice-value").textContent = `${index} / ${count - 1}`;
  if (state.volume.shape.length === 3) state.cross[VIEW[state.axis].through] = index;
  loadSlice();
  wantZoom();
}

function layout() {
  if (!state.volume) return;
  const v = view();
  const [rows, cols] = v.shape;
  const [spRows, spCols] = v.spacing;
  const [sh, sw] = scales();
  const mmH = rows * spRows;
  const mmW = cols * spCols;
  const vp = document.querySelector(".viewport");
  const perMm = state.fit
    ? Math.min(vp.clientWidth / mmW, vp.clientHeight / mmH)
    : Math.max(sh / spRows, sw / spCols); // one Meta-SRGAN pixel per screen pixel
  for (const stage of document.querySelectorAll(".stage")) {
    stage.style.width = `${mmW * perMm}px`;
    stage.style.height = `${mmH * perMm}px`;
  }
  $("lr").style.imageRendering = $("nearest").checked ? "pixelated" : "auto";
  $("fit").setAttribute("aria-pressed", String(state.fit));
  labels(v.labels);
  drawCrosshair();
  restoreView();
}

function labels(letters) {
  for (const panel of document.querySelectorAll(".panel")) {
    for (const side of ["top", "bottom", "left", "right"]) {
      let el = panel.querySelector(`.label.${side}`);
      if (!el) {
        el = document.createElement("span");
        el.className = `label ${side}`;
        panel.querySelector(".viewport").after(el);
      }
      el.textContent = letters[side];
    }
  }
}

// ---------------------------------------------------------------- input slice
async function loadSlice() {
  const { id } = state.volume;
  const key = `${id}/${state.axis}/${state.index}`;
  const t = performance.now();
  state.lrKey = key;
  try {
    const { headers, buffer } = await api(`/api/volumes/${encodeURIComponent(id)}/slice.bin` +
      `?axis=${state.axis}&index=${state.index}`);
    if (state.lrKey !== key) return; // a newer slice was asked for meanwhile
    const [height, width] = headers.get("X-Shape").split(",").map(Number);
    state.lr = { key, pixels: new Uint16Array(buffer), height, width };
    if (state.wlPending) {
      state.wlPending = false;
      applyPreset($("wl-preset").value === "custom" ? "auto" : $("wl-preset").value);
    }
    drawInput();
    window.viewerStats.slices.push({ key, inputMs: performance.now() - t });
  } catch (err) {
    message(err.message, true);
  }
}

function drawInput() {
  const lr = state.lr;
  if (!lr) return;
  drawGray($("lr"), lr.pixels, lr.width, lr.height, state.gray);
  const [spRows, spCols] = view().spacing;
  $("lr-caption").textContent = `${lr.width}×${lr.height} px · ${spCols.toFixed(2)} × ` +
    `${spRows.toFixed(2)} mm`;
  layout();
}

// ---------------------------------------------------------------- zoom
function wantZoom() {
  if (!state.volume) return;
  const [sh, sw] = scales();
  const params = {
    volume: state.volume.id, axis: state.axis, index: String(state.index),
    scale_h: sh.toFixed(2), scale_w: sw.toFixed(2),
  };
  const key = `${params.volume}/${params.axis}/${params.index}/${params.scale_h}/${params.scale_w}`;
  state.want = { key, params, t: performance.now() };
  layout();
  pump();
}

async function pump() {
  if (state.inflight) return;
  state.inflight = true;
  document.body.classList.add("busy");
  try {
    while (state.want && (!state.shown || state.want.key !== state.shown.key)) {
      const want = state.want;
      const result = state.cache.get(want.key) || await fetchZoom(want);
      if (!result) break;
      remember(want.key, result);
      show(result, want);
    }
  } finally {
    state.inflight = false;
    document.body.classList.remove("busy");
  }
}

function inBrowser() {
  const mode = $("compute").value;
  if (mode === "server") return false;
  state.webgl = state.webgl || describeWebGL();
  return mode === "browser" || (state.webgl.available && !state.webgl.software);
}

async function fetchZoom(want) {
  if (inBrowser()) {
    try {
      return await zoomInBrowser(want);
    } catch (err) {
      // the server is the fallback: a model the page cannot run, or no usable WebGL2
      $("compute-used").textContent = `server (browser: ${err.message})`;
    }
  }
  return zoomOnServer(want);
}

function toUint16(values) {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = Math.round(Math.min(1, Math.max(0, values[i])) * 65535);
  }
  return out;
}

async function zoomInBrowser(want) {
  const { volume, axis, index, scale_h: sh, scale_w: sw } = want.params;
  const t0 = performance.now();
  state.gpu = state.gpu || new GpuUpscaler();
  const slice = `${volume}/${axis}/${index}`;
  if (state.gpu.featuresKey !== slice) {
    const { headers, buffer } = await api(`/api/volumes/${encodeURIComponent(volume)}/` +
      `features.bin?axis=${axis}&index=${index}`);
    const [rows, cols] = headers.get("X-Shape").split(",").map(Number);
    state.gpu.setFeatures(slice, new Uint16Array(buffer), rows, cols);
  }
  let kernels = state.kernels.get(`${sh}/${sw}`);
  if (!kernels) {
    const { headers, buffer } = await api(`/api/kernels.bin?scale_h=${sh}&scale_w=${sw}`);
    kernels = { meta: JSON.parse(headers.get("X-Kernels")), data: new Float32Array(buffer) };
    state.kernels.set(`${sh}/${sw}`, kernels);
  }
  const { headers, buffer } = await api(`/api/skip.bin?${new URLSearchParams(want.params)}`);
  const [height, width] = headers.get("X-Shape").split(",").map(Number);
  const n = height * width;
  const m = kernels.meta;
  const skip = m.skip === "bicubic" ? new Float32Array(buffer, 0, n) : null;
  const t1 = performance.now();
  const srFloat = state.gpu.run(kernels.data, m, skip, height, width);
  const t2 = performance.now();
  $("compute-used").textContent = `browser: ${state.webgl.renderer}`;
  return {
    key: want.key, height, width, params: want.params, srFloat, where: "browser",
    sr: toUint16(srFloat), bic: toUint16(new Float32Array(buffer, 4 * n, n)),
    meta: { scale: `${m.p_h}/${m.q_h}x${m.p_w}/${m.q_w}`, scale_h: m.p_h / m.q_h,
      scale_w: m.p_w / m.q_w, from_cache: false },
    timings: { metasrgan: t2 - t1, features: 0, features_cached: true, bicubic: 0,
      request: t1 - t0 },
  };
}

async function zoomOnServer(want) {
  if (!$("compute-used").textContent.startsWith("server (")) {
    $("compute-used").textContent = "server";
  }
  const seq = ++state.seq;
  const query = new URLSearchParams({ ...want.params, client: state.client, seq: String(seq) });
  try {
    const { headers, buffer } = await api(`/api/zoom.bin?${query}`);
    const [height, width] = headers.get("X-Shape").split(",").map(Number);
    const n = height * width;
    return {
      key: want.key, height, width, params: want.params, where: "server",
      sr: new Uint16Array(buffer, 0, n), bic: new Uint16Array(buffer, 2 * n, n),
      meta: JSON.parse(headers.get("X-Zoom")), timings: JSON.parse(headers.get("X-Timings")),
    };
  } catch (err) {
    if (err.status !== 409) message(err.message, true); // 409: superseded on purpose
    if (state.want === want) state.want = null;
    return null;
  }
}

function remember(key, result) {
  if (state.cache.has(key)) state.cache.delete(key);
  else state.cacheBytes += result.sr.byteLength * 2;
  state.cache.set(key, result); // newest last
  for (const [old, value] of state.cache) {
    if (state.cacheBytes <= CACHE_BYTES || old === key) break;
    state.cache.delete(old);
    state.cacheBytes -= value.sr.byteLength * 2;
  }
}

function show(result, want) {
  state.shown = result;
  const { sr, bic, width, height } = result;
  drawGray($("sr"), sr, width, height, state.gray); // what the user watches, first
  layout();
  const ms = performance.now() - want.t;
  const entry = { key: result.key, ms, cached: result.meta.from_cache, server: result.timings,
    where: result.where };
  window.viewerStats.zooms.push(entry);
  requestAnimationFrame(() => { entry.frameMs = performance.now() - want.t; });
  setTimeout(() => { // the other panels in the next task: the next request is already out
    if (state.shown !== result) return;
    drawGray($("bicubic"), bic, width, height, state.gray);
    drawDifference($("diff"), sr, bic, width, height, state.diffTable);
    captions(result, ms);
    downloads(result.params);
  }, 0);
}

function captions(result, ms) {
  const { meta, timings: t, width, height } = result;
  const [spRows, spCols] = view().spacing;
  const size = `${width}×${height} px · ${(spCols / meta.scale_w).toFixed(2)} × ` +
    `${(spRows / meta.scale_h).toFixed(2)} mm`;
  const featureNote = t.features_cached ? "features cached" : `features ${fmt(t.features)}`;
  $("sr-caption").textContent = `${size} · ${fmt(t.metasrgan)} (${featureNote})`;
  $("bicubic-caption").textContent = `${size} · ${fmt(t.bicubic)}`;
  $("diff-caption").textContent = `max |Δ| ${maxAbsDifference(result.sr, result.bic)
    .toPrecision(3)} (colours saturate at ${DIFF_RANGE})`;
  const [sh, sw] = [Number(result.params.scale_h), Number(result.params.scale_w)];
  const exact = Math.abs(meta.scale_h - sh) < 1e-9 && Math.abs(meta.scale_w - sw) < 1e-9;
  $("scale-used").textContent = exact ? "" : `computed at ${meta.scale.replaceAll("/1", "")}`;
  const value = meta.scale_h === meta.scale_w ? `×${meta.scale_h.toFixed(3)}`
    : `×${meta.scale_h.toFixed(3)} ↕ ×${meta.scale_w.toFixed(3)} ↔`;
  const outside = Math.max(meta.scale_h, meta.scale_w) > state.info.limits.scale_max
    ? " · beyond the trained x4: an extrapolation" : "";
  const cached = meta.from_cache ? " (result cached)" : "";
  $("timings").innerHTML = `${value}: Meta-SRGAN <b id="time-metasrgan">` +
    `${fmt(t.metasrgan)}</b>, bicubic <b id="time-bicubic">${fmt(t.bicubic)}</b>, server ` +
    `${fmt(t.request)}, slider to pixels <b id="time-display">${fmt(ms)}</b>${cached}${outside}`;
}

function fmt(ms) {
  return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

function downloads(params) {
  const query = new URLSearchParams(params).toString();
  $("download-png").href = `/api/zoom/metasrgan.png?${query}`;
  $("download-nifti").href = `/api/zoom/metasrgan.nii.gz?${query}`;
  const whole = new URLSearchParams({ axis: params.axis, scale_h: params.scale_h,
    scale_w: params.scale_w });
  $("download-volume").href = `/api/volumes/${encodeURIComponent(params.volume)}/` +
    `upscaled.nii.gz?${whole}`;
}

// ---------------------------------------------------------------- window / level
function scanUnits(unit) {
  const { low, high } = state.volume.intensity;
  return low + unit * (high - low);
}

function setWindow(low, high, preset) {
  const min = 1 / 65535;
  state.wl = { low, high: Math.max(high, low + min) };
  state.gray = grayTable(state.wl.low, state.wl.high);
  if (preset) $("wl-preset").value = preset;
  const { low: lo, high: hi } = state.volume.intensity;
  $("wl-width").value = ((state.wl.high - state.wl.low) * (hi - lo)).toPrecision(4);
  $("wl-level").value = scanUnits((state.wl.low + state.wl.high) / 2).toPrecision(4);
  redraw();
}

function applyPreset(name) {
  if (name === "full") setWindow(0, 1, name);
  else if (PRESETS[name] && state.lr) setWindow(...percentiles(state.lr.pixels, ...PRESETS[name]), name);
}

function windowFromInputs() {
  const { low: lo, high: hi } = state.volume.intensity;
  const width = Number($("wl-width").value) / (hi - lo);
  const level = (Number($("wl-level").value) - lo) / (hi - lo);
  if (Number.isFinite(width) && Number.isFinite(level) && width > 0) {
    setWindow(level - width / 2, level + width / 2, "custom");
  }
}

function redraw() {
  drawInput();
  if (state.shown) {
    const { sr, bic, width, height } = state.shown;
    drawGray($("sr"), sr, width, height, state.gray);
    drawGray($("bicubic"), bic, width, height, state.gray);
  }
}

// ---------------------------------------------------------------- crosshair and mouse
function crossInView() {
  const [rows, cols] = view().shape;
  if (state.volume.shape.length !== 3) return [state.cross[0], state.cross[1]];
  const v = VIEW[state.axis];
  return [state.cross[v.cols], rows - 1 - state.cross[v.rows], cols];
}

function drawCrosshair() {
  const [rows, cols] = view().shape;
  const [col, row] = crossInView();
  for (const stage of document.querySelectorAll(".stage")) {
    for (const [cls, prop, value] of [["vline", "left", (col + 0.5) / cols],
      ["hline", "top", (row + 0.5) / rows]]) {
      let line = stage.querySelector(`.${cls}`);
      if (!line) {
        line = document.createElement("div");
        line.className = `cross ${cls}`;
        stage.append(line);
      }
      line.style[prop] = `${value * 100}%`;
    }
  }
  const lr = state.lr;
  if (lr && row < lr.height && col < lr.width) {
    const value = scanUnits(lr.pixels[row * lr.width + col] / 65535);
    const where = state.volume.shape.length === 3 ? `voxel (${state.cross.join(", ")})`
      : `pixel (${col}, ${row})`;
    $("crosshair").textContent = `crosshair: ${where}, value ${value.toPrecision(4)}`;
  }
}

function setCross(stage, event) {
  const rect = stage.getBoundingClientRect();
  const [rows, cols] = view().shape;
  const col = Math.min(cols - 1, Math.floor(((event.clientX - rect.left) / rect.width) * cols));
  const row = Math.min(rows - 1, Math.floor(((event.clientY - rect.top) / rect.height) * rows));
  if (state.volume.shape.length !== 3) {
    state.cross = [col, row];
  } else {
    const v = VIEW[state.axis];
    state.cross[v.cols] = col;
    state.cross[v.rows] = rows - 1 - row;
  }
  drawCrosshair();
}

function onMouseDown(event) {
  if (event.button !== 0 || !state.volume) return;
  const stage = event.currentTarget;
  const start = { x: event.clientX, y: event.clientY, ...state.wl };
  let moved = false;
  event.preventDefault();
  const move = (e) => {
    const dx = e.clientX - start.x;
    const dy = e.clientY - start.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
    if (!moved) return;
    const width = Math.max(1 / 65535, (start.high - start.low) * Math.exp(dx / 200));
    const level = (start.low + start.high) / 2 - dy / 400;
    setWindow(level - width / 2, level + width / 2, "custom");
  };
  const up = (e) => {
    window.removeEventListener("mousemove", move);
    window.removeEventListener("mouseup", up);
    if (!moved) setCross(stage, e);
  };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
}

function onWheel(event) {
  if (!state.volume || event.shiftKey || event.ctrlKey || event.deltaY === 0) return;
  event.preventDefault();
  setSlice(state.index + (event.deltaY > 0 ? -1 : 1));
}

function onKey(event) {
  if (!state.volume || ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
  const step = { ArrowUp: 1, PageUp: 5, ArrowDown: -1, PageDown: -5 }[event.key];
  if (step === undefined) return;
  event.preventDefault();
  setSlice(state.index + step);
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
function onScale() {
  $("scale-value").textContent = `×${Number($("scale").value).toFixed(2)}`;
  $("scale-h-value").textContent = `×${Number($("scale-h").value).toFixed(2)}`;
  $("scale-w-value").textContent = `×${Number($("scale-w").value).toFixed(2)}`;
  wantZoom();
}

function toIsotropic() {
  if (!state.volume) return;
  const [spRows, spCols] = view().spacing;
  const finest = Math.min(spRows, spCols);
  const max = state.info.limits.axis_scale_max;
  $("per-axis").checked = true;
  $("axis-scales").hidden = false;
  $("scale-h").value = String(Math.min(max, spRows / finest));
  $("scale-w").value = String(Math.min(max, spCols / finest));
  onScale();
}

function wire() {
  $("volume").addEventListener("change", (e) => chooseVolume(e.target.value));
  $("upload").addEventListener("change", (e) => {
    if (e.target.files.length) upload(e.target.files[0]);
    e.target.value = "";
  });
  $("axis").addEventListener("change", () => {
    state.view = { x: 0.5, y: 0.5 };
    setAxis($("axis").value);
  });
  $("slice").addEventListener("input", () => setSlice(Number($("slice").value)));
  for (const id of ["scale", "scale-h", "scale-w"]) $(id).addEventListener("input", onScale);
  $("per-axis").addEventListener("change", (e) => {
    $("axis-scales").hidden = !e.target.checked;
    onScale();
  });
  $("isotropic").addEventListener("click", toIsotropic);
  $("wl-preset").addEventListener("change", (e) => applyPreset(e.target.value));
  $("wl-width").addEventListener("change", windowFromInputs);
  $("wl-level").addEventListener("change", windowFromInputs);
  $("fit").addEventListener("click", () => { state.fit = !state.fit; layout(); });
  $("one-to-one").addEventListener("click", () => { state.fit = false; layout(); });
  $("nearest").addEventListener("change", layout);
  $("compute").addEventListener("change", () => {
    state.cache.clear();
    state.cacheBytes = 0;
    state.shown = null;
    $("compute-used").textContent = "";
    wantZoom();
  });
  $("show-diff").addEventListener("change", (e) => {
    $("panels").classList.toggle("no-diff", !e.target.checked);
  });
  for (const vp of viewports()) {
    vp.addEventListener("scroll", onScroll);
    vp.addEventListener("wheel", onWheel, { passive: false });
  }
  for (const stage of document.querySelectorAll(".stage")) {
    stage.addEventListener("mousedown", onMouseDown);
  }
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", () => { if (state.fit) layout(); });
}

wire();
init();
