"use strict";
// The review page: one face at a time, its 68 points drawn over the photo. The SVG's user units are the
// photo's pixels, so points stay in image pixels at any zoom: a 0-based point (x, y) (the centre of the
// top-left pixel is 0, 0) is drawn at (x + 0.5, y + 0.5). Every request carries the session's token, read
// from the address (#token=...), in the X-Annotate-Token header.

const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const SVG = "http://www.w3.org/2000/svg";
const RADIUS = 4; // of a point, in screen pixels
const STRIP = 9; // thumbnails: the face shown and the next ones
const PARTS = [ // iBUG 68 contours: name (points moved together), first, end, closed
  ["jaw", 0, 17, false], ["right brow", 17, 22, false], ["left brow", 22, 27, false], ["nose", 27, 31, false],
  ["nose", 31, 36, false], ["right eye", 36, 42, true], ["left eye", 42, 48, true], ["mouth", 48, 60, true],
  ["mouth", 60, 68, true]];
const ALL = range(0, 68);
const ZOOMS = { // region: points shown, and the margin around them as a share of their size
  face: [ALL, 0.15], "right eye": [range(36, 42), 0.8], "left eye": [range(42, 48), 0.8], mouth: [range(48, 68), 0.3]};

const view = document.getElementById("view");
const state = {
  faces: [], // summaries, in review order
  at: -1, // the face shown, an index into faces
  face: null, // the face shown, as the server last gave it
  edit: null, // the page's edit of it: {points, saved (the points on disk), base (their version), undo, redo}
  edits: new Map(), // face id -> edit, for as long as the page is open
  photo: null, // {url, width, height} of the face shown
  zoom: {cx: 0, cy: 0, scale: 1}, // the photo pixel at the centre of the view, screen pixels per photo pixel
  drag: null,
  eye: "left eye",
};
const cache = {photos: new Map(), thumbs: new Map()};

function range(first, end) {
  return Array.from({length: end - first}, (_, i) => first + i);
}

function copy(points) {
  return points && points.map(([x, y]) => [x, y]);
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function api(path, options = {}) {
  const headers = {"X-Annotate-Token": TOKEN};
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch("api/" + path, {...options, headers});
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).error; } catch (e) { /* not JSON: the text itself */ }
    throw new Error(message || response.statusText);
  }
  return response;
}

function note(text, kind = "") {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = kind;
}

function blobUrl(store, key, path, limit) {
  if (!store.has(key)) {
    store.set(key, api(path).then((r) => r.blob()).then((blob) => URL.createObjectURL(blob)));
    if (store.size > limit) {
      const [oldest, url] = store.entries().next().value;
      store.delete(oldest);
      url.then((u) => URL.revokeObjectURL(u), () => {});
    }
  }
  return store.get(key);
}

async function photoOf(id) {
  const url = await blobUrl(cache.photos, id, `faces/${id}/photo`, 12);
  const image = new Image();
  image.src = url;
  await image.decode();
  return {url, width: image.naturalWidth, height: image.naturalHeight};
}

// --- showing a face ---

async function show(at) {
  if (!state.faces.length) return;
  at = Math.max(0, Math.min(state.faces.length - 1, at));
  const id = state.faces[at].id;
  state.at = at;
  try {
    const [face, photo] = await Promise.all([api(`faces/${id}`).then((r) => r.json()), photoOf(id)]);
    if (state.faces[state.at].id !== id) return; // moved on meanwhile
    state.face = face;
    state.photo = photo;
    state.edit = editOf(face);
    summarize(face);
    zoomTo("face");
    strip();
    if (at + 1 < state.faces.length) photoOf(state.faces[at + 1].id).catch(() => {});
  } catch (error) {
    note(`${state.faces[at].output}: ${error.message}`, "error");
  }
}

function editOf(face) {
  const kept = state.edits.get(face.id);
  if (kept && (kept.base === face.version || edited(kept))) return kept; // a save of unsaved work is checked then
  const edit = {points: copy(face.points), saved: face.points, base: face.version, undo: [], redo: []};
  state.edits.set(face.id, edit);
  return edit;
}

function edited(edit) {
  return !same(edit.points, edit.saved);
}

function summarize(face) {
  const i = state.faces.findIndex((f) => f.id === face.id);
  if (i >= 0) state.faces[i] = {...state.faces[i], checked: face.checked, checked_at: face.checked_at,
                                moved_px: face.moved_px};
}

function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  parent.appendChild(node);
  return node;
}

function render() {
  const {face, edit, photo, zoom} = state;
  if (!face) return;
  const width = view.clientWidth / zoom.scale, height = view.clientHeight / zoom.scale;
  view.setAttribute("viewBox", `${zoom.cx - width / 2} ${zoom.cy - height / 2} ${width} ${height}`);
  view.dataset.scale = zoom.scale;
  view.dataset.face = face.id;
  view.classList.toggle("gone", !face.present);
  view.replaceChildren();
  element("image", {href: photo.url, x: 0, y: 0, width: photo.width, height: photo.height}, view);
  const [left, top, right, bottom] = face.box;
  element("rect", {class: "box", x: left, y: top, width: right - left + 1, height: bottom - top + 1}, view);
  const points = edit.points || [];
  if (points.length) {
    PARTS.forEach(([name, first, end, closed], part) => {
      const line = points.slice(first, end).map(([x, y]) => `${x + 0.5},${y + 0.5}`).join(" ");
      element(closed ? "polygon" : "polyline", {class: "line", points: line, "data-part": part}, view);
    });
  }
  points.forEach(([x, y], i) => element("circle", {class: "point", cx: x + 0.5, cy: y + 0.5,
                                                   r: RADIUS / zoom.scale, "data-point": i}, view));
  header();
}

function header() {
  const {face, edit} = state;
  document.getElementById("position").textContent = `${state.at + 1} / ${state.faces.length}`;
  document.getElementById("name").textContent = face.output;
  document.getElementById("error").textContent =
    (face.expected_error === null ? "" : `expected error ${face.expected_error.toPrecision(3)}`) +
    ` · found by ${face.detector}`;
  const status = document.getElementById("status");
  const moved = face.checked === "moved" ? ` ${face.moved_px} px` : "";
  status.textContent = face.checked ? `${face.checked}${moved} (${face.checked_at})` : "not checked";
  status.className = face.checked ? "checked" : "";
  status.classList.toggle("edited", edited(edit));
}

async function strip() {
  const nav = document.getElementById("strip");
  const faces = state.faces.slice(state.at, state.at + STRIP);
  nav.replaceChildren(...faces.map((f, i) => {
    const button = document.createElement("button");
    button.className = "thumb" + (i === 0 ? " current" : "");
    button.title = `${f.output}: expected error ${f.expected_error}`;
    button.addEventListener("click", () => show(state.at + i));
    const image = document.createElement("img");
    image.alt = f.output;
    blobUrl(cache.thumbs, `${f.id} ${f.checked_at}`, `faces/${f.id}/thumb`, 200)
      .then((url) => { image.src = url; }, () => { image.alt = `${f.output}: cannot show`; });
    button.appendChild(image);
    if (f.checked) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = f.checked;
      button.appendChild(badge);
    }
    return button;
  }));
}

// --- zoom and pan ---

function zoomTo(region) {
  const {face, edit} = state;
  const [indices, margin] = ZOOMS[region];
  const points = edit.points ? indices.map((i) => edit.points[i]) : [];
  if (region === "face" || !points.length) points.push([face.box[0], face.box[1]], [face.box[2], face.box[3]]);
  const xs = points.map((p) => p[0] + 0.5), ys = points.map((p) => p[1] + 0.5);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const w = Math.max(x1 - x0, 8) * (1 + 2 * margin), h = Math.max(y1 - y0, 8) * (1 + 2 * margin);
  state.zoom = {cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale: Math.min(view.clientWidth / w, view.clientHeight / h)};
  render();
}

function zoomBy(factor, around = null) {
  const zoom = state.zoom;
  const [px, py] = around || [zoom.cx, zoom.cy]; // the photo point that stays where it is on screen
  const scale = Math.max(0.02, Math.min(64, zoom.scale * factor));
  state.zoom = {cx: px + (zoom.cx - px) * zoom.scale / scale, cy: py + (zoom.cy - py) * zoom.scale / scale, scale};
  render();
}

function actualPixels() {
  state.zoom = {...state.zoom, scale: 1};
  render();
}

function toPhoto(event) {
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(view.getScreenCTM().inverse());
  return [point.x, point.y];
}

// --- editing ---

function groupOf(i) {
  const name = PARTS.find(([, first, end]) => i >= first && i < end)[0];
  return PARTS.filter((p) => p[0] === name).flatMap(([, first, end]) => range(first, end));
}

function pressed(event) {
  if (event.button !== 0 || !state.face) return;
  const target = event.target.dataset;
  let indices = null; // null: pan
  if (state.edit.points && (event.altKey || event.target.classList.contains("box"))) indices = ALL;
  else if (target.point !== undefined) indices = event.shiftKey ? groupOf(+target.point) : [+target.point];
  else if (target.part !== undefined) indices = groupOf(PARTS[+target.part][1]);
  state.drag = {indices, start: toPhoto(event), from: copy(state.edit.points), client: [event.clientX, event.clientY],
                zoom: {...state.zoom}, moved: false};
  view.setPointerCapture(event.pointerId);
  event.preventDefault();
}

function dragged(event) {
  const drag = state.drag;
  if (!drag) return;
  if (!drag.indices) {
    const {cx, cy, scale} = drag.zoom;
    state.zoom = {cx: cx - (event.clientX - drag.client[0]) / scale, cy: cy - (event.clientY - drag.client[1]) / scale,
                  scale};
    return render();
  }
  const [x, y] = toPhoto(event);
  const [dx, dy] = [x - drag.start[0], y - drag.start[1]];
  for (const i of drag.indices) state.edit.points[i] = [drag.from[i][0] + dx, drag.from[i][1] + dy];
  drag.moved = drag.moved || dx !== 0 || dy !== 0;
  render();
}

function released() {
  const drag = state.drag;
  state.drag = null;
  if (drag && drag.indices && drag.moved) {
    state.edit.undo.push(drag.from);
    state.edit.redo = [];
    render();
  }
}

function step(from, to) {
  const edit = state.edit;
  if (!edit[from].length) return note(`nothing to ${from}`);
  edit[to].push(edit.points);
  edit.points = edit[from].pop();
  note("");
  render();
}

async function save(action, next) {
  const {face, edit} = state;
  if (action !== "not a face" && !edit.points) return note("no points to save", "error");
  try {
    const body = JSON.stringify({base: edit.base, action, points: action === "accept" ? edit.points : null});
    const saved = await api(`faces/${face.id}`, {method: "POST", body}).then((r) => r.json());
    edit.base = saved.version;
    edit.saved = saved.points;
    if (state.face && state.face.id === saved.id) state.face = saved;
    summarize(saved);
    note(`saved ${saved.output}: ${saved.checked}`, "ok");
    if (next && state.at + 1 < state.faces.length) return show(state.at + 1);
    render();
    strip();
  } catch (error) {
    note(error.message, "error");
  }
}

async function reload() {
  try {
    const face = await api(`faces/${state.face.id}`).then((r) => r.json());
    const edit = state.edit;
    if (!same(edit.points, face.points)) {
      edit.undo.push(edit.points);
      edit.redo = [];
    }
    edit.points = copy(face.points);
    edit.saved = face.points;
    edit.base = face.version;
    state.face = face;
    summarize(face);
    note("loaded the saved version (Z brings back the one shown before)", "ok");
    render();
    strip();
  } catch (error) {
    note(error.message, "error");
  }
}

// --- keys ---

const KEYS = {
  ArrowRight: () => show(state.at + 1), n: () => show(state.at + 1),
  ArrowLeft: () => show(state.at - 1), p: () => show(state.at - 1),
  Enter: () => save("accept", true), a: () => save("accept", true),
  x: () => save("not a face", true), u: () => save("unusable", true),
  z: () => step("undo", "redo"), y: () => step("redo", "undo"), r: reload,
  e: () => { state.eye = state.eye === "left eye" ? "right eye" : "left eye"; zoomTo(state.eye); },
  m: () => zoomTo("mouth"), f: () => zoomTo("face"), 1: actualPixels,
  "+": () => zoomBy(1.25), "=": () => zoomBy(1.25), "-": () => zoomBy(0.8),
};
const CTRL_KEYS = {s: () => save("accept", false), z: () => step("undo", "redo"), y: () => step("redo", "undo")};

function key(event) {
  if (!state.face || event.altKey) return;
  const name = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  const action = ctrl ? CTRL_KEYS[name === "z" && event.shiftKey ? "y" : name] : KEYS[name];
  if (!action) return;
  event.preventDefault();
  action();
}


async function start() {
  if (!TOKEN) return note("open the address printed by annotate review --serve (it carries the token)", "error");
  view.addEventListener("pointerdown", pressed);
  view.addEventListener("pointermove", dragged);
  view.addEventListener("pointerup", released);
  view.addEventListener("pointercancel", released);
  view.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (state.face) zoomBy(event.deltaY < 0 ? 1.25 : 0.8, toPhoto(event));
  }, {passive: false});
  document.addEventListener("keydown", key);
  window.addEventListener("resize", render);
  window.addEventListener("beforeunload", (event) => {
    if ([...state.edits.values()].some(edited)) event.preventDefault(); // asks before unsaved work is lost
  });
  try {
    state.faces = (await api("faces").then((r) => r.json())).faces;
  } catch (error) {
    return note(error.message, "error");
  }
  if (!state.faces.length) return note("no face to review", "error");
  const first = state.faces.findIndex((f) => !f.checked);
  await show(first < 0 ? 0 : first);
}

start();
