// Zoomed images: one request in flight at a time, the newest wish wins; computed on the
// server (/api/zoom.bin) or in this browser on WebGL2 (gpu.js), kept in a bounded cache.
"use strict";

import { layout } from "./app.js";
import { describeWebGL, GpuUpscaler } from "./gpu.js";
import { differenceTable, drawDifference, drawGray, maxAbsDifference } from "./render.js";
import { $, api, message, scales, state, view } from "./state.js";

const DIFF_RANGE = 0.1;
const CACHE_BYTES = 256 * 2 ** 20;
const diffTable = differenceTable(DIFF_RANGE);

export function wantZoom() {
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
      const cached = state.cache.get(want.key);
      if (cached) hintServer(want); // the server's look-ahead follows the view
      const result = cached || await fetchZoom(want);
      if (!result) break;
      remember(want.key, result);
      show(result, want);
    }
  } finally {
    state.inflight = false;
    document.body.classList.remove("busy");
  }
}

function hintServer(want) {
  const query = new URLSearchParams({ ...want.params, client: state.client });
  fetch(`/api/lookahead?${query}`).catch(() => {}); // a hint: nothing waits for it
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
  const skip = m.skip === "image" ? new Float32Array(buffer, 0, n) : null;
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
    drawDifference($("diff"), sr, bic, width, height, diffTable);
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

// Window/level changed: the zoomed panels again (the input is app.js's).
export function redrawZoom() {
  if (state.shown) {
    const { sr, bic, width, height } = state.shown;
    drawGray($("sr"), sr, width, height, state.gray);
    drawGray($("bicubic"), bic, width, height, state.gray);
  }
}

export function forgetZoom() {
  state.cache.clear();
  state.cacheBytes = 0;
  state.shown = null;
}
