// The viewer page's shared state and small helpers (one object, read and written by the
// modules of the page: app.js wires the page, zoom.js gets and shows the zoomed images).
"use strict";

import { grayTable } from "./render.js";

export const $ = (id) => document.getElementById(id);
// For each view: the RAS voxel axis of its rows, of its columns and across slices.
export const VIEW = {
  sagittal: { rows: 2, cols: 1, through: 0 },
  coronal: { rows: 2, cols: 0, through: 1 },
  axial: { rows: 1, cols: 0, through: 2 },
};

export const state = {
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

export function message(text, isError = false) {
  const el = $("message");
  el.textContent = text || "";
  el.classList.toggle("error", Boolean(isError));
  if (isError) window.viewerStats.errors.push(text);
}

export async function api(path, options = {}) {
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

export function view() {
  return state.volume.views[state.axis];
}

export function scales() {
  if ($("per-axis").checked) return [Number($("scale-h").value), Number($("scale-w").value)];
  const s = Number($("scale").value);
  return [s, s];
}
