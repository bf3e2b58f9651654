// The Meta-Upscale Module on the GPU (WebGL2): 576 multiply-adds per output pixel.
//
// Output pixel (row i, column j) at scale p_h/q_h x p_w/q_w reads the 3x3 feature
// neighbourhood of input pixel (floor(i*q_h/p_h), floor(j*q_w/p_w)) with the kernel of phase
// pair (i mod p_h, j mod p_w) (metasrgan.scale's index rule), zero outside the slice; the
// result is skip + y * std (or y * std + mean without a skip), clamped to [0, 1].  Features
// are an RGBA16F texture array (16 layers of 4 channels), kernels an RGBA32F texture (one
// row per phase pair, 9 taps x 16 texels), the skip an R32F texture; the output is rendered
// to an R32F texture and read back.
"use strict";

const VERTEX = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

const FRAGMENT = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
precision highp sampler2DArray;
uniform sampler2DArray features;
uniform sampler2D kernels;
uniform sampler2D skip;
uniform ivec4 period;  // p_h, q_h, p_w, q_w
uniform ivec2 inputSize;  // rows, columns
uniform vec3 norm;  // std, mean, has_skip
out vec4 result;
void main() {
  int i = int(gl_FragCoord.y);
  int j = int(gl_FragCoord.x);
  int phase = (i % period.x) * period.z + (j % period.z);
  int r0 = (i * period.y) / period.x;
  int c0 = (j * period.w) / period.z;
  float acc = 0.0;
  for (int ky = 0; ky < 3; ky++) {
    int r = r0 + ky - 1;
    if (r < 0 || r >= inputSize.x) continue;
    for (int kx = 0; kx < 3; kx++) {
      int c = c0 + kx - 1;
      if (c < 0 || c >= inputSize.y) continue;
      int tap = (ky * 3 + kx) * 16;
      for (int l = 0; l < 16; l++) {
        acc += dot(texelFetch(features, ivec3(c, r, l), 0),
                   texelFetch(kernels, ivec2(tap + l, phase), 0));
      }
    }
  }
  float base = norm.z > 0.5 ? texelFetch(skip, ivec2(j, i), 0).r : norm.y;
  result = vec4(clamp(base + acc * norm.x, 0.0, 1.0), 0.0, 0.0, 1.0);
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    throw new Error(`WebGL2 shader: ${gl.getShaderInfoLog(shader)}`);
  }
  return shader;
}

function texture(gl, target) {
  const tex = gl.createTexture();
  gl.bindTexture(target, tex);
  for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.NEAREST], [gl.TEXTURE_MAG_FILTER, gl.NEAREST],
    [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) {
    gl.texParameteri(target, k, v);
  }
  return tex;
}

// The renderer's name: software WebGL (SwiftShader, llvmpipe) is slower than the server.
export function describeWebGL() {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (!gl) return { available: false, software: true, renderer: "no WebGL2" };
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  const float = Boolean(gl.getExtension("EXT_color_buffer_float"));
  const software = /swiftshader|llvmpipe|software|softpipe/i.test(renderer);
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return { available: float, software, renderer };
}

export class GpuUpscaler {
  constructor() {
    this.canvas = document.createElement("canvas");
    const gl = this.canvas.getContext("webgl2", { antialias: false, depth: false });
    if (!gl || !gl.getExtension("EXT_color_buffer_float")) {
      throw new Error("WebGL2 with float render targets is not available");
    }
    this.gl = gl;
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      throw new Error(`WebGL2 program: ${gl.getProgramInfoLog(program)}`);
    }
    this.program = program;
    this.uniform = (name) => gl.getUniformLocation(program, name);
    this.featuresKey = null;
  }

  // features: Uint16Array of float16 [16, rows, cols, 4]
  setFeatures(key, halfs, rows, cols) {
    const gl = this.gl;
    if (this.featuresKey === key) return;
    this.featuresTex = this.featuresTex || texture(gl, gl.TEXTURE_2D_ARRAY);
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, this.featuresTex);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    gl.texImage3D(gl.TEXTURE_2D_ARRAY, 0, gl.RGBA16F, cols, rows, 16, 0, gl.RGBA,
      gl.HALF_FLOAT, halfs);
    this.featuresKey = key;
    this.inputSize = [rows, cols];
  }

  // kernels: Float32Array [p_h * p_w, 9, 64]; skip: Float32Array [outRows, outCols] or null
  run(kernels, meta, skip, outRows, outCols) {
    const gl = this.gl;
    const phases = meta.p_h * meta.p_w;
    gl.useProgram(this.program);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, this.featuresTex);
    gl.activeTexture(gl.TEXTURE1);
    this.kernelTex = this.kernelTex || texture(gl, gl.TEXTURE_2D);
    gl.bindTexture(gl.TEXTURE_2D, this.kernelTex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, 9 * 16, phases, 0, gl.RGBA, gl.FLOAT, kernels);
    gl.activeTexture(gl.TEXTURE2);
    this.skipTex = this.skipTex || texture(gl, gl.TEXTURE_2D);
    gl.bindTexture(gl.TEXTURE_2D, this.skipTex);
    const skipData = skip || new Float32Array(1);
    const [sw, sh] = skip ? [outCols, outRows] : [1, 1];
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32F, sw, sh, 0, gl.RED, gl.FLOAT, skipData);
    gl.uniform1i(this.uniform("features"), 0);
    gl.uniform1i(this.uniform("kernels"), 1);
    gl.uniform1i(this.uniform("skip"), 2);
    gl.uniform4i(this.uniform("period"), meta.p_h, meta.q_h, meta.p_w, meta.q_w);
    gl.uniform2i(this.uniform("inputSize"), ...this.inputSize);
    gl.uniform3f(this.uniform("norm"), meta.std, meta.mean, skip ? 1 : 0);
    gl.activeTexture(gl.TEXTURE3);
    const target = texture(gl, gl.TEXTURE_2D);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32F, outCols, outRows, 0, gl.RED, gl.FLOAT, null);
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, target, 0);
    gl.viewport(0, 0, outCols, outRows);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    const out = new Float32Array(outRows * outCols * 4);
    gl.readPixels(0, 0, outCols, outRows, gl.RGBA, gl.FLOAT, out);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.deleteFramebuffer(fb);
    gl.deleteTexture(target);
    const values = new Float32Array(outRows * outCols);
    for (let k = 0; k < values.length; k++) values[k] = out[4 * k];
    return values; // row 0 first: fragment y = output row
  }
}
