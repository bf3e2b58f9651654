// Pixels for the viewer's canvases: 16-bit images in [0, 1] through window/level look-up tables.
// The server sends every image as little-endian uint16 (value / 65535 in the model's [0, 1]
// units); window/level is a 65536-entry table, so changing it never touches the server.
"use strict";

const FULL = 65535;

// RGBA gray for each 16-bit value between low and high (fractions of the unit range).
export function grayTable(low, high) {
  const table = new Uint32Array(FULL + 1);
  const lo = low * FULL;
  const span = Math.max((high - low) * FULL, 1e-6);
  for (let v = 0; v <= FULL; v++) {
    const g = Math.max(0, Math.min(255, Math.round(((v - lo) / span) * 255)));
    table[v] = 0xff000000 | (g << 16) | (g << 8) | g; // little-endian ABGR
  }
  return table;
}

// Meta-SRGAN minus bicubic: black where equal, orange brighter, blue darker; saturates at
// +-range (a fraction of the unit range).  Indexed by difference + 65535.
export function differenceTable(range) {
  const table = new Uint32Array(2 * FULL + 1);
  const full = Math.max(range * FULL, 1e-6);
  for (let d = -FULL; d <= FULL; d++) {
    const t = Math.max(-1, Math.min(1, d / full));
    const pos = Math.max(t, 0);
    const neg = Math.max(-t, 0);
    const r = Math.round(pos * 255 + neg * 40);
    const g = Math.round(pos * 140 + neg * 140);
    const b = Math.round(neg * 255);
    table[d + FULL] = 0xff000000 | (b << 16) | (g << 8) | r;
  }
  return table;
}

const buffers = new WeakMap(); // canvas -> its last ImageData: no 4 MB allocation per zoom

function imageData(canvas, width, height) {
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext("2d");
  let data = buffers.get(canvas);
  if (!data || data.width !== width || data.height !== height) {
    data = ctx.createImageData(width, height);
    buffers.set(canvas, data);
  }
  return { ctx, data };
}

export function drawGray(canvas, pixels, width, height, table) {
  const { ctx, data } = imageData(canvas, width, height);
  const out = new Uint32Array(data.data.buffer);
  for (let i = 0; i < out.length; i++) out[i] = table[pixels[i]];
  ctx.putImageData(data, 0, 0);
}

export function drawDifference(canvas, a, b, width, height, table) {
  const { ctx, data } = imageData(canvas, width, height);
  const out = new Uint32Array(data.data.buffer);
  for (let i = 0; i < out.length; i++) out[i] = table[a[i] - b[i] + FULL];
  ctx.putImageData(data, 0, 0);
}

// The p-th and q-th percentiles (0-100) of the non-zero pixels, as fractions of the range:
// the "auto" window.  A histogram, so one pass whatever the image size.
export function percentiles(pixels, p, q) {
  const hist = new Uint32Array(FULL + 1);
  let count = 0;
  for (let i = 0; i < pixels.length; i++) {
    if (pixels[i] > 0) {
      hist[pixels[i]]++;
      count++;
    }
  }
  if (count === 0) return [0, 1];
  const wanted = [p, q].map((x) => (x / 100) * (count - 1));
  const found = [];
  let seen = 0;
  for (let v = 0, k = 0; v <= FULL && k < 2; v++) {
    seen += hist[v];
    while (k < 2 && seen > wanted[k]) {
      found.push(v / FULL);
      k++;
    }
  }
  while (found.length < 2) found.push(1);
  return found[1] > found[0] ? found : [found[0], Math.min(1, found[0] + 1 / FULL)];
}

export function maxAbsDifference(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > m) m = d;
  }
  return m / FULL;
}
