/**
 * The 3D view: one draw call for every node and one line-segments draw call for every edge,
 * both reading the same positions.
 *
 * Positions live in two Float32Arrays, `prev` and `next` (x, y, z per render slot). A frame is
 * applied by blending `prev` to where the nodes are shown now and copying the decoded array into
 * `next`: no matrices are built. The vertex shaders draw `mix(prev, next, t)`, with `t` running
 * from 0 to 1 over the frame interval, so motion stays smooth between frames. Edges are an index
 * buffer of slot pairs over the same position arrays.
 *
 * Nodes are drawn in one of two ways, both one draw call and both shaded as spheres in the
 * fragment shader:
 * - `instanced` (default on a GPU): camera-facing quads of an `InstancedBufferGeometry`, the
 *   positions in instanced attributes;
 * - `points` (default on a software rasteriser, e.g. headless Chromium's SwiftShader): one
 *   GL point a node, the positions in plain vertex attributes that the edges share. Measured
 *   on SwiftShader, 100,000 instanced quads cost about 4 s a frame (about 40 µs an instance),
 *   100,000 points about 0.2 s; on a GPU both are well under a millisecond, and quads have no
 *   point-size limit.
 * `?nodes=instanced|points` in the page's address overrides the choice.
 * @module view/renderer
 */
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { clearDirection } from './sight.js';

/**
 * Pixel radius under which no node is drawn, for a node of the base size (a hub's floor is
 * larger, by its size over the base): zoomed out on a large layout, a node whose world radius
 * is under a pixel would vanish, and a cluster of them with it.
 */
export const MIN_NODE_PIXELS = 1.5;
/** The largest such floor, in pixels (a hub seen from afar stays a dot, not a disc). */
export const MAX_NODE_FLOOR_PIXELS = 5;

// GLSL both node shaders share: the pixel floor of a node's radius, and fog by depth measured
// from the point the camera looks at (uFog: where it starts, over what depth it is full), so a
// graph of any extent is lit the same at the fitted view.
const SHARED_GLSL = `
float minPixels(float size) {
  return clamp(${MIN_NODE_PIXELS.toFixed(2)} * size / uSizeUnit, 1.0, ${MAX_NODE_FLOOR_PIXELS.toFixed(2)});
}
float fog(float depth) { return 0.6 * clamp((depth - uFog.x) / uFog.y, 0.0, 1.0); }`;

const NODE_VERTEX = `
attribute vec3 prevPos;
attribute vec3 nextPos;
attribute vec3 color;
attribute float size;
uniform float uT;
uniform float uScale;
uniform float uPixels;
uniform float uSizeUnit;
uniform vec2 uFog;
varying vec2 vUv;
varying vec3 vColor;
varying float vFog;
${SHARED_GLSL}
void main() {
  vec3 p = mix(prevPos, nextPos, uT);
  vec4 mv = modelViewMatrix * vec4(p, 1.0);
  float depth = max(1e-3, -mv.z);
  mv.xy += position.xy * max(size * uScale, minPixels(size) * depth / uPixels);
  vUv = position.xy;
  vColor = color;
  vFog = fog(depth);
  gl_Position = projectionMatrix * mv;
}`;

const NODE_FRAGMENT = `
uniform vec3 uBackground;
varying vec2 vUv;
varying vec3 vColor;
varying float vFog;
void main() {
  float r2 = dot(vUv, vUv);
  if (r2 > 1.0) discard;
  vec3 n = vec3(vUv, sqrt(1.0 - r2));
  vec3 l = normalize(vec3(-0.35, 0.55, 0.75));
  float diffuse = max(dot(n, l), 0.0);
  float spec = pow(max(dot(reflect(-l, n), vec3(0.0, 0.0, 1.0)), 0.0), 28.0);
  float rim = smoothstep(0.82, 1.0, r2);
  vec3 c = vColor * (0.38 + 0.72 * diffuse) + vec3(0.35) * spec;
  c = mix(c, vColor * 0.35, rim * 0.6);
  gl_FragColor = vec4(mix(c, uBackground, vFog), 1.0);
}`;

const POINT_VERTEX = `
attribute vec3 prevPos;
attribute vec3 color;
attribute float size;
uniform float uT;
uniform float uScale;
uniform float uPixels;
uniform float uSizeUnit;
uniform vec2 uFog;
varying vec3 vColor;
varying float vFog;
${SHARED_GLSL}
void main() {
  vec3 p = mix(prevPos, position, uT);
  vec4 mv = modelViewMatrix * vec4(p, 1.0);
  float depth = max(1e-3, -mv.z);
  gl_PointSize = 2.0 * max(minPixels(size), size * uScale * uPixels / depth);
  vColor = color;
  vFog = fog(depth);
  gl_Position = projectionMatrix * mv;
}`;

const POINT_FRAGMENT = NODE_FRAGMENT
  .replace('varying vec2 vUv;', '')
  .replace('float r2 = dot(vUv, vUv);', 'vec2 vUv = vec2(2.0 * gl_PointCoord.x - 1.0, 1.0 - 2.0 * gl_PointCoord.y);\n  float r2 = dot(vUv, vUv);');

/** Whether WebGL runs on a software rasteriser (no GPU). */
export function softwareRenderer() {
  try {
    const gl = document.createElement('canvas').getContext('webgl2');
    if (!gl) return false;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    gl.getExtension('WEBGL_lose_context')?.loseContext();
    return /swiftshader|llvmpipe|softpipe|software/i.test(name);
  } catch {
    return false;
  }
}

const EDGE_VERTEX = `
attribute vec3 prevPos;
uniform float uT;
void main() {
  vec3 p = mix(prevPos, position, uT);
  gl_Position = projectionMatrix * modelViewMatrix * vec4(p, 1.0);
}`;

const EDGE_FRAGMENT = `
uniform vec3 uColor;
uniform float uOpacity;
void main() { gl_FragColor = vec4(uColor, uOpacity); }`;

const RING_AT = 54 / 64;  // the selection ring's diameter over its sprite's width

/**
 * A ring drawn over everything (no depth test), a constant number of pixels across whatever
 * the distance: where the selected node is, when other spheres stand in front of it.
 */
function selectionMarker() {
  const size = 64;
  const canvas = document.createElement('canvas');
  canvas.width = size;
  canvas.height = size;
  const g = canvas.getContext('2d');
  for (const [width, colour] of [[5, 'rgba(11, 14, 20, 0.9)'], [2.5, '#ffffff']]) {
    g.lineWidth = width;  // a white ring on a dark one: seen on light and dark spheres alike
    g.strokeStyle = colour;
    g.beginPath();
    g.arc(size / 2, size / 2, (RING_AT * size) / 2, 0, 2 * Math.PI);
    g.stroke();
  }
  const sprite = new THREE.Sprite(new THREE.SpriteMaterial({
    map: new THREE.CanvasTexture(canvas), depthTest: false, depthWrite: false,
    transparent: true, sizeAttenuation: false,
  }));
  sprite.renderOrder = 3;
  sprite.visible = false;
  sprite.frustumCulled = false;
  return sprite;
}

export class Renderer {
  /**
   * @param {HTMLElement} container
   * @param {{nodes?: 'instanced'|'points', antialias?: boolean}} [options]
   */
  constructor(container, options = {}) {
    this.container = container;
    const software = softwareRenderer();
    this.mode = options.nodes || (software ? 'points' : 'instanced');
    // multisampling costs a software rasteriser about 3.5 times the frame
    this.renderer = new THREE.WebGLRenderer({ antialias: options.antialias ?? !software });
    container.appendChild(this.renderer.domElement);
    this.scene = new THREE.Scene();
    this.marker = selectionMarker();
    this.markedSlot = -1;
    this.scene.add(this.marker);
    this.background = new THREE.Color('#0b0e14');
    this.scene.background = this.background;
    this.camera = new THREE.PerspectiveCamera(50, 1, 0.5, 50000);
    this.camera.position.set(0, 0, 900);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.enableDamping = true;
    this.controls.dampingFactor = 0.12;
    this.controls.zoomToCursor = true;  // the wheel zooms towards what the pointer is on
    this.capacity = 0;
    this.count = 0;
    this.t = 1;
    this.frameAt = 0;
    this.interval = 200;
    this.interpolate = true;
    this.nodeScale = 1;
    this.uniforms = {
      uT: { value: 1 }, uScale: { value: 1 }, uBackground: { value: this.background },
      uPixels: { value: 1 }, uSizeUnit: { value: 1 }, uFog: { value: new THREE.Vector2(1e9, 1) },
    };
    this.edgeUniforms = {
      uT: this.uniforms.uT, uColor: { value: new THREE.Color('#90a4ae') }, uOpacity: { value: 0.35 },
    };
    this.pathUniforms = {
      uT: this.uniforms.uT, uColor: { value: new THREE.Color('#ff5252') }, uOpacity: { value: 1 },
    };
    // Drawing cost adapts to the machine: a GPU draws 100,000 nodes and 300,000 edges at full
    // quality, a software rasteriser (SwiftShader, headless) cannot. When frames take too long,
    // the pixel ratio drops and fewer edges are drawn (a uniform sample: the index is shuffled,
    // so any prefix is one); when they are quick again, quality comes back.
    this.maxPixelRatio = Math.min(window.devicePixelRatio || 1, 2);
    this.pixelRatio = this.maxPixelRatio;
    this.renderer.setPixelRatio(this.pixelRatio);
    this.edgeBudget = Infinity;
    this.frameMs = 16;
    this.lastRender = 0;
    this.lastAdapt = 0;
    this.allocate(1024);
    this.resize();
    window.addEventListener('resize', () => this.resize());
  }

  /** (Re)create the buffers for `capacity` slots, keeping what is there. */
  allocate(capacity) {
    const old = this.capacity ? { prev: this.prev, next: this.next, color: this.color, size: this.size } : null;
    this.capacity = capacity;
    this.prev = new Float32Array(3 * capacity);
    this.next = new Float32Array(3 * capacity);
    this.color = new Float32Array(3 * capacity);
    this.size = new Float32Array(capacity);
    if (old) {
      this.prev.set(old.prev); this.next.set(old.next); this.color.set(old.color); this.size.set(old.size);
    }
    if (this.nodes) {
      this.scene.remove(this.nodes, this.edges, this.path);
      this.nodes.geometry.dispose();
      this.edges.geometry.dispose();
      this.path.geometry.dispose();
    }
    const material = (vertexShader, fragmentShader) => new THREE.ShaderMaterial({
      uniforms: this.uniforms, vertexShader, fragmentShader,
    });
    if (this.mode === 'points') {
      // plain vertex attributes (vertex k = slot k), shared as they are with the edges
      const shared = {
        prev: new THREE.BufferAttribute(this.prev, 3).setUsage(THREE.DynamicDrawUsage),
        next: new THREE.BufferAttribute(this.next, 3).setUsage(THREE.DynamicDrawUsage),
      };
      this.attrs = {
        ...shared,
        color: new THREE.BufferAttribute(this.color, 3).setUsage(THREE.DynamicDrawUsage),
        size: new THREE.BufferAttribute(this.size, 1).setUsage(THREE.DynamicDrawUsage),
        edgePrev: shared.prev,
        edgeNext: shared.next,
      };
      const g = new THREE.BufferGeometry();
      g.setAttribute('position', this.attrs.next);
      g.setAttribute('prevPos', this.attrs.prev);
      g.setAttribute('color', this.attrs.color);
      g.setAttribute('size', this.attrs.size);
      g.setDrawRange(0, this.count);
      this.nodes = new THREE.Points(g, material(POINT_VERTEX, POINT_FRAGMENT));
    } else {
      const quad = new THREE.InstancedBufferGeometry();
      quad.setAttribute('position', new THREE.Float32BufferAttribute([-1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 1, 0], 3));
      quad.setIndex([0, 1, 2, 0, 2, 3]);
      this.attrs = {
        prev: new THREE.InstancedBufferAttribute(this.prev, 3).setUsage(THREE.DynamicDrawUsage),
        next: new THREE.InstancedBufferAttribute(this.next, 3).setUsage(THREE.DynamicDrawUsage),
        color: new THREE.InstancedBufferAttribute(this.color, 3).setUsage(THREE.DynamicDrawUsage),
        size: new THREE.InstancedBufferAttribute(this.size, 1).setUsage(THREE.DynamicDrawUsage),
        // the edges read the same arrays as per-vertex attributes (vertex k = slot k)
        edgePrev: new THREE.BufferAttribute(this.prev, 3).setUsage(THREE.DynamicDrawUsage),
        edgeNext: new THREE.BufferAttribute(this.next, 3).setUsage(THREE.DynamicDrawUsage),
      };
      quad.setAttribute('prevPos', this.attrs.prev);
      quad.setAttribute('nextPos', this.attrs.next);
      quad.setAttribute('color', this.attrs.color);
      quad.setAttribute('size', this.attrs.size);
      quad.instanceCount = this.count;
      this.nodes = new THREE.Mesh(quad, material(NODE_VERTEX, NODE_FRAGMENT));
    }
    this.nodes.frustumCulled = false;
    this.nodes.renderOrder = 1;
    const lines = (uniforms, order) => {
      const g = new THREE.BufferGeometry();
      g.setAttribute('position', this.attrs.edgeNext);
      g.setAttribute('prevPos', this.attrs.edgePrev);
      g.setIndex(new THREE.BufferAttribute(new Uint32Array(0), 1));
      const m = new THREE.LineSegments(g, new THREE.ShaderMaterial({
        uniforms, vertexShader: EDGE_VERTEX, fragmentShader: EDGE_FRAGMENT, transparent: true, depthWrite: false,
      }));
      m.frustumCulled = false;
      m.renderOrder = order;
      return m;
    };
    this.edges = lines(this.edgeUniforms, 0);
    this.path = lines(this.pathUniforms, 2);
    this.path.material.depthTest = false;
    this.scene.add(this.edges, this.nodes, this.path);
    if (this.edgeIndex) this.setEdges(this.edgeIndex);
  }

  /** Make room for `count` slots (doubling), and draw that many. */
  setCount(count) {
    if (count > this.capacity) {
      let cap = this.capacity;
      while (cap < count) cap *= 2;
      this.allocate(cap);
    }
    // slots let go (a smaller graph loaded) forget their positions: a node that takes one later
    // starts where its change puts it, not where the old graph's node was
    if (count < this.count) {
      this.prev.fill(0, 3 * count, 3 * this.count);
      this.next.fill(0, 3 * count, 3 * this.count);
    }
    this.count = count;
    if (this.mode === 'points') this.nodes.geometry.setDrawRange(0, count);
    else this.nodes.geometry.instanceCount = count;
  }

  /** Edges as pairs of slots (drawn in a shuffled order, see `edgeBudget`). */
  setEdges(pairs) {
    this.edgeIndex = pairs;
    const shuffled = pairs.slice();
    let seed = 0x9e3779b9;
    for (let i = shuffled.length / 2 - 1; i > 0; i--) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const j = seed % (i + 1);
      const a0 = shuffled[2 * i];
      const a1 = shuffled[2 * i + 1];
      shuffled[2 * i] = shuffled[2 * j];
      shuffled[2 * i + 1] = shuffled[2 * j + 1];
      shuffled[2 * j] = a0;
      shuffled[2 * j + 1] = a1;
    }
    this.edges.geometry.setIndex(new THREE.BufferAttribute(shuffled, 1));
    const count = pairs.length / 2;
    if (count > 150000 && this.edgeBudget === Infinity) {
      // a large graph starts at a quality any machine draws, and rises when frames are quick
      this.edgeBudget = 40000;
      this.setPixelRatio(Math.min(this.pixelRatio, 0.5));
    }
    this.applyEdgeBudget();
  }

  applyEdgeBudget() {
    const total = this.edgeIndex ? this.edgeIndex.length / 2 : 0;
    this.edges.geometry.setDrawRange(0, 2 * Math.min(total, this.edgeBudget));
  }

  setPixelRatio(ratio) {
    this.pixelRatio = ratio;
    this.renderer.setPixelRatio(ratio);
    this.resize();
  }

  /** Lower or raise the drawing quality from the time between frames. */
  adapt(now) {
    if (this.lastRender) this.frameMs = 0.8 * this.frameMs + 0.2 * Math.min(5000, now - this.lastRender);
    this.lastRender = now;
    if (now - this.lastAdapt < 1000) return;
    this.lastAdapt = now;
    const total = this.edgeIndex ? this.edgeIndex.length / 2 : 0;
    if (this.frameMs > 80) {
      if (this.edgeBudget > 10000 && total > 10000) this.edgeBudget = Math.max(10000, Math.floor(Math.min(total, this.edgeBudget) / 2));
      if (this.pixelRatio > 0.35) this.setPixelRatio(Math.max(0.35, this.pixelRatio * 0.7));
    } else if (this.frameMs < 25) {
      if (this.pixelRatio < this.maxPixelRatio) this.setPixelRatio(Math.min(this.maxPixelRatio, this.pixelRatio * 1.25));
      else if (this.edgeBudget < total) this.edgeBudget = this.edgeBudget * 2 >= total ? Infinity : this.edgeBudget * 2;
    }
    this.applyEdgeBudget();
  }

  /** Highlighted edges (a path), as pairs of slots. */
  setPath(pairs) {
    this.path.geometry.setIndex(new THREE.BufferAttribute(pairs, 1));
  }

  /** Where the interpolation stands now (0 = prev, 1 = next). */
  currentT(now = performance.now()) {
    if (!this.interpolate) return 1;
    return Math.min(1, Math.max(0, (now - this.frameAt) / this.interval));
  }

  /**
   * Apply decoded positions (one x, y, z per slot): `prev` becomes what is on screen now,
   * `next` the new frame; the interpolation restarts.
   * @param {Float32Array} pos
   * @param {Map<number, number[]>} overrides slot -> [x, y, z] held by this page (drags)
   */
  applyPositions(pos, overrides) {
    const now = performance.now();
    const t = this.currentT(now);
    const prev = this.prev;
    const next = this.next;
    const n = pos.length;
    if (t >= 1) prev.set(next.subarray(0, n));
    else if (t > 0) for (let i = 0; i < n; i++) prev[i] += (next[i] - prev[i]) * t;
    next.set(pos);
    for (const [slot, p] of overrides) this.placeNow(slot, p, false);
    if (this.frameAt) this.interval = Math.min(1000, Math.max(16, 0.7 * this.interval + 0.3 * (now - this.frameAt)));
    this.frameAt = now;
    this.uniforms.uT.value = this.interpolate ? 0 : 1;
    this.markPositions();
  }

  markPositions() {
    // in points mode the edges share the nodes' attributes: each is uploaded once
    const attrs = new Set([this.attrs.prev, this.attrs.next, this.attrs.edgePrev, this.attrs.edgeNext]);
    for (const a of attrs) {
      a.clearUpdateRanges();
      a.addUpdateRange(0, 3 * this.count);
      a.needsUpdate = true;
    }
  }

  /**
   * The direction (from the node towards the camera) to see a slot from `distance` away with no
   * other sphere in front of it, turning the camera's as little as that takes (view/sight.js).
   */
  clearSight(slot, distance) {
    const dir = this.camera.position.clone().sub(this.controls.target).normalize().toArray();
    const scale = this.uniforms.uScale.value;
    const { dir: best } = clearDirection(this.next, (s) => (s < this.count ? this.size[s] * scale : 0),
      slot, dir, this.camera.up.toArray(), distance);
    return new THREE.Vector3(...best);
  }

  /** Put one node somewhere at once (a drag), in both buffers. */
  placeNow(slot, p, mark = true) {
    const o = 3 * slot;
    for (let a = 0; a < 3; a++) { this.prev[o + a] = p[a]; this.next[o + a] = p[a]; }
    if (mark) this.markPositions();
  }

  /** The position of a slot as shown now. */
  positionOf(slot, out = new THREE.Vector3()) {
    const t = this.currentT();
    const o = 3 * slot;
    return out.set(
      this.prev[o] + (this.next[o] - this.prev[o]) * t,
      this.prev[o + 1] + (this.next[o + 1] - this.prev[o + 1]) * t,
      this.prev[o + 2] + (this.next[o + 2] - this.prev[o + 2]) * t,
    );
  }

  markColors() { this.attrs.color.needsUpdate = true; }
  markSizes() { this.attrs.size.needsUpdate = true; }

  /** The size of a node of the base size (the `nodes.size` setting): the pixel floor's unit. */
  setSizeUnit(unit) { this.uniforms.uSizeUnit.value = Math.max(unit, 1e-6); }

  resize() {
    const w = this.container.clientWidth || window.innerWidth;
    const h = this.container.clientHeight || window.innerHeight;
    this.renderer.setSize(w, h);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.width = w;
    this.height = h;
    // world radius to pixel radius at depth 1 (points mode: gl_PointSize is in device pixels)
    this.uniforms.uPixels.value = this.pixelsPerUnit() * this.renderer.getPixelRatio();
  }

  /** Ring a slot (the selected node) so it shows through whatever stands in front; -1: none. */
  mark(slot) { this.markedSlot = slot; }

  /** Draw one frame. */
  render(now = performance.now()) {
    this.adapt(now);
    this.uniforms.uT.value = this.currentT(now);
    if (this.flight) this.flight(now);
    this.controls.update();
    const marked = this.markedSlot;
    this.marker.visible = marked >= 0 && marked < this.count && this.size[marked] !== 0;
    if (this.marker.visible) {
      this.positionOf(marked, this.marker.position);
      const depth = Math.max(this.camera.position.distanceTo(this.marker.position), 1e-6);
      const f = this.pixelsPerUnit();
      // the ring a little wider than the sphere as drawn, and never lost in a crowd (it is
      // drawn at RING_AT of the sprite's width)
      const px = Math.max(2 * this.pixelRadius(marked, depth, f) + 10, 22) / RING_AT;
      this.marker.scale.setScalar(px / f);
    }
    // fog from just behind the point looked at to three times as far
    const d = this.camera.position.distanceTo(this.controls.target);
    this.uniforms.uFog.value.set(d, 3 * d);
    this.renderer.render(this.scene, this.camera);
  }

  /**
   * Frame the graph: centre on the median node, close enough that every node is in view (less
   * `margin` CSS pixels on each side, where panels lie over the canvas), but no farther than
   * twice what 95 % of the nodes need: a few nodes far out (a lone component flung away) must
   * not shrink the rest to a dot.
   * The distance is what each node needs to be in view from the camera's direction (its offset
   * across the view over the half-angle's tangent, plus how far it stands towards the camera),
   * so a flat or long layout fills the screen, not only its bounding sphere.
   * `ms` > 0 glides there (following a layout as it unfolds, from the present direction), 0
   * jumps (from the default direction). `margin.left`, `margin.right` (else `margin.side`),
   * `top` and `bottom` may differ (a tall panel on one side): the graph is framed in the middle
   * of what is left. `margin.panels`: rectangles (CSS pixels, [left, top, right, bottom]) of
   * panels in the corners, which the camera steps back to clear.
   */
  fit(ms = 0, margin = { top: 40, bottom: 56, side: 24 }) {
    const slots = [];
    const step = Math.max(1, Math.floor(this.count / 4000));  // a sample is enough
    for (let s = 0; s < this.count; s += step) if (this.size[s] !== 0) slots.push(s);
    if (!slots.length) return;
    const median = (axis) => {
      const v = slots.map((s) => this.next[3 * s + axis]).sort((a, b) => a - b);
      return v[v.length >> 1];
    };
    const centre = new THREE.Vector3(median(0), median(1), median(2));
    const back = ms > 0
      ? this.camera.position.clone().sub(this.controls.target).normalize()
      : new THREE.Vector3(0.25, 0.2, 1).normalize();
    const right = new THREE.Vector3().crossVectors(this.camera.up, back).normalize();
    const up = new THREE.Vector3().crossVectors(back, right);
    const h = Math.max(1, this.height || 1);
    const w = Math.max(1, this.width || 1);
    // tangents of the half-angles left for the graph, across and up, once margins are taken
    const tanY = Math.tan((this.camera.fov * Math.PI) / 360);
    const tanX = tanY * (w / h);
    const left = margin.left ?? margin.side;
    const rightMargin = margin.right ?? margin.side;
    const tanUp = tanY * Math.max(0.2, 1 - (margin.top + margin.bottom) / h);
    const tanAcross = tanX * Math.max(0.2, 1 - (left + rightMargin) / w);
    // where the middle of what the margins leave is, off the window's middle (in tangents)
    const offX = tanX * ((left - rightMargin) / w);
    const offY = tanY * ((margin.bottom - margin.top) / h);
    // each node's offset towards the camera, across and up the view, from the median node
    const n = slots.length;
    const towards = new Float64Array(n);
    const across = new Float64Array(n);
    const upward = new Float64Array(n);
    const p = new THREE.Vector3();
    slots.forEach((s, i) => {
      p.fromArray(this.next, 3 * s).sub(centre);
      towards[i] = p.dot(back); across[i] = p.dot(right); upward[i] = p.dot(up);
    });
    // the camera distance that shows a node, looking at the centre moved by (du, dv)
    const need = (i, du, dv) => towards[i]
      + Math.max(Math.abs(across[i] - du) / tanAcross, Math.abs(upward[i] - dv) / tanUp);
    // which nodes to keep in view: all, or those that need at most twice what 95 % need
    const first = Float64Array.from({ length: n }, (_, i) => need(i, 0, 0));
    const cap = 2 * Float64Array.from(first).sort()[Math.floor(0.95 * (n - 1))];
    const kept = [];
    for (let i = 0; i < n; i++) if (first[i] <= cap) kept.push(i);
    // look at the middle of the kept nodes as they appear (near ones loom larger, so the middle
    // of their extent is not the middle of the picture): a few rounds of centring and refitting
    const distance = (du, dv) => {
      let d = 0;
      for (const i of kept) d = Math.max(d, need(i, du, dv));
      return Math.max(d * 1.05, 10 / tanY);
    };
    let du = 0;
    let dv = 0;
    for (let round = 0; round < 4; round++) {
      const dist = distance(du, dv);
      let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
      for (const i of kept) {
        const depth = Math.max(dist - towards[i], 1e-6);
        const x = (across[i] - du) / depth;
        const y = (upward[i] - dv) / depth;
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
      du += ((x0 + x1) / 2) * dist;
      dv += ((y0 + y1) / 2) * dist;
    }
    let dist = distance(du, dv);
    // the camera looks past the graph's middle so that it shows in the middle of the free part
    const shiftX = (d) => du - offX * d;
    const shiftY = (d) => dv - offY * d;
    // a node under a corner panel (the search box, the settings) is hidden: step back until
    // none is, a few steps at most (a panel as tall as the window is no corner)
    const under = (d) => kept.some((i) => {
      const depth = Math.max(d - towards[i], 1e-6);
      const sx = w / 2 + ((across[i] - shiftX(d)) / depth / tanX) * (w / 2);
      const sy = h / 2 - ((upward[i] - shiftY(d)) / depth / tanY) * (h / 2);
      return (margin.panels ?? []).some(([l, t, r, b]) => sx >= l && sx <= r && sy >= t && sy <= b);
    });
    for (let step = 0; step < 6 && under(dist); step++) dist *= 1.12;
    centre.addScaledVector(right, shiftX(dist)).addScaledVector(up, shiftY(dist));
    this.camera.far = Math.max(50000, dist * 10);
    this.camera.updateProjectionMatrix();
    // zooming out further than this shows nothing more, only a smaller graph, then none
    this.controls.maxDistance = dist * 6;
    /** How far from its centre the camera sees the whole graph (the last fit). */
    this.fitDistance = dist;
    if (ms > 0) {
      this.flyTo(centre, dist, ms);
      return;
    }
    this.controls.target.copy(centre);
    this.camera.position.copy(centre).add(back.multiplyScalar(dist));
  }

  /**
   * Screen positions of every drawn slot: `{x, y, depth}` arrays (NaN behind the camera).
   * Used for picking and for choosing which labels to show.
   */
  project() {
    this.camera.updateMatrixWorld();
    const m = new THREE.Matrix4().multiplyMatrices(this.camera.projectionMatrix, this.camera.matrixWorldInverse).elements;
    const n = this.count;
    const x = new Float32Array(n);
    const y = new Float32Array(n);
    const depth = new Float32Array(n);
    const t = this.currentT();
    const { prev, next } = this;
    const hw = this.width / 2;
    const hh = this.height / 2;
    for (let s = 0; s < n; s++) {
      const o = 3 * s;
      const px = prev[o] + (next[o] - prev[o]) * t;
      const py = prev[o + 1] + (next[o + 1] - prev[o + 1]) * t;
      const pz = prev[o + 2] + (next[o + 2] - prev[o + 2]) * t;
      const w = m[3] * px + m[7] * py + m[11] * pz + m[15];
      if (w <= 0 || this.size[s] === 0) { x[s] = NaN; y[s] = NaN; depth[s] = Infinity; continue; }
      x[s] = ((m[0] * px + m[4] * py + m[8] * pz + m[12]) / w + 1) * hw;
      y[s] = (1 - (m[1] * px + m[5] * py + m[9] * pz + m[13]) / w) * hh;
      depth[s] = w;
    }
    return { x, y, depth };
  }

  /** CSS pixels a world unit spans at depth 1 (the projection's scale). */
  pixelsPerUnit() {
    return this.height / 2 / Math.tan((this.camera.fov * Math.PI) / 360);
  }

  /**
   * Pixel radius of a slot's sphere at a given depth, as drawn (its pixel floor included);
   * `f`, {@link pixelsPerUnit}, may be passed by a caller looping over slots.
   */
  pixelRadius(slot, depth, f = this.pixelsPerUnit()) {
    const size = this.size[slot];
    const floor = Math.min(Math.max(MIN_NODE_PIXELS * size / this.uniforms.uSizeUnit.value, 1),
      MAX_NODE_FLOOR_PIXELS);
    return Math.max((size * this.uniforms.uScale.value * f) / depth, floor);
  }

  /**
   * The slot under a screen point, or -1: the nearest to the camera among the spheres drawn
   * under it (what the eye sees there); if none is, the nearest on screen within a few pixels
   * (small spheres are hard to hit), so a speck beside a hub does not steal the hub's click.
   */
  pick(px, py, projected = this.project()) {
    const { x, y, depth } = projected;
    const SLACK = 4;  // pixels
    let hit = -1;
    let hitDepth = Infinity;
    let near = -1;
    let nearGap = SLACK;
    const f = this.pixelsPerUnit();
    for (let s = 0; s < x.length; s++) {
      const dx = x[s] - px;
      const dy = y[s] - py;
      if (!Number.isFinite(dx)) continue;  // behind the camera, or hidden
      const d = Math.sqrt(dx * dx + dy * dy);
      const r = this.pixelRadius(s, depth[s], f);
      if (d <= r) {
        if (depth[s] < hitDepth) { hit = s; hitDepth = depth[s]; }
      } else if (d - r < nearGap) {
        near = s;
        nearGap = d - r;
      }
    }
    return hit >= 0 ? hit : near;
  }

  /** Fly the camera to look at a point from nearby (from `dir`, a unit vector, or as it looks now). */
  flyTo(target, distance = 160, ms = 700, dir = null) {
    const fromTarget = this.controls.target.clone();
    const offset = this.camera.position.clone().sub(fromTarget);
    const fromDistance = Math.max(offset.length(), 1e-6);
    const fromDir = offset.divideScalar(fromDistance);
    // the direction turns evenly along the way, and the distance changes by equal factors (a
    // straight line between the two camera positions would swing the view at the very end)
    const turn = new THREE.Quaternion().setFromUnitVectors(fromDir, dir ?? fromDir);
    const none = new THREE.Quaternion();
    const now = new THREE.Quaternion();
    const start = performance.now();
    this.flight = (time) => {
      const k = Math.min(1, (time - start) / ms);
      const e = k < 0.5 ? 2 * k * k : 1 - (-2 * k + 2) ** 2 / 2;
      this.controls.target.lerpVectors(fromTarget, target, e);
      now.slerpQuaternions(none, turn, e);
      const d = fromDistance * (distance / fromDistance) ** e;
      this.camera.position.copy(fromDir).applyQuaternion(now).multiplyScalar(d).add(this.controls.target);
      if (k >= 1) this.flight = null;
    };
  }
}
