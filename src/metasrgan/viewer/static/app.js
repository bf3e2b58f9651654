// metasrgan viewer: plain JavaScript modules, no build step, no network beyond this server.
//
// Images arrive as 16-bit raw arrays (/api/volumes/{id}/slice.bin, /api/zoom.bin) and are
// drawn through window/level tables (render.js), so window/level, crosshair and layout
// never wait for the server.  One zoom request is in flight at a time; while it computes,
// the newest wanted zoom replaces any older wish, and is asked for as soon as it returns.
"use strict";

import { drawGray, grayTable, percentiles } from "./render.js";
import { $, VIEW, api, message, scales, state, view } from "./state.js";
import { forgetZoom, redrawZoom, wantZoom } from "./zoom.js";

const PRESETS = { auto: [1, 99], contrast: [10, 90] };

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

export function layout() {
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
  redrawZoom();
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
    forgetZoom();
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