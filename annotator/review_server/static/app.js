"use strict";
// The review page: one face at a time, its 68 points drawn over the photo. The photo and the points are
// drawn in a group whose user units are the photo's pixels, so points stay in image pixels at any zoom: a
// 0-based point (x, y) (the centre of the top-left pixel is 0, 0) is drawn at (x + 0.5, y + 0.5). The group
// is turned by the face's roll (the server's, when the face was shown) so that the face appears upright;
// the view (zoom, pan) works in those turned units, and a pointer's position is mapped back through the
// group's own transform, so a drag moves a point by exactly the screen motion turned back. Every request
// carries the session's token, read from the address (#token=...), in the X-Annotate-Token header.

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
  edit: null, // the page's edit of it: {points, placed, saved (the points on disk), base (their version), undo, redo}
  roll: 0, // degrees: the face shown is turned clockwise on screen by this (its roll when it was shown)
  edits: new Map(), // face id -> edit, for as long as the page is open
  photo: null, // {url, width, height} of the face shown
  zoom: {cx: 0, cy: 0, scale: 1}, // the centre of the view (turned photo units), screen pixels per photo pixel
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
    state.roll = face.roll;
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
  const edit = {points: copy(face.points), placed: new Set(), saved: face.points, base: face.version, undo: [],
                redo: []};
  state.edits.set(face.id, edit);
  return edit;
}

function edited(edit) {
  return !same(edit.points, edit.saved);
}

// An undo step: the points and which of them count as placed (for a refit).
function snapshot(edit) {
  return {points: copy(edit.points), placed: new Set(edit.placed)};
}

function restore(edit, shot) {
  edit.points = shot.points;
  edit.placed = shot.placed;
}

function turned([x, y]) { // photo units -> the view's turned units
  const a = state.roll * Math.PI / 180, c = Math.cos(a), s = Math.sin(a);
  return [x * c - y * s, x * s + y * c];
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
  view.dataset.roll = state.roll;
  view.classList.toggle("gone", !face.present);
  view.replaceChildren();
  const scene = element("g", {id: "scene", transform: `rotate(${state.roll})`}, view);
  element("image", {href: photo.url, x: 0, y: 0, width: photo.width, height: photo.height}, scene);
  const [left, top, right, bottom] = face.box;
  element("rect", {class: "box", x: left, y: top, width: right - left + 1, height: bottom - top + 1}, scene);
  const points = edit.points || [];
  if (points.length) {
    PARTS.forEach(([name, first, end, closed], part) => {
      const line = points.slice(first, end).map(([x, y]) => `${x + 0.5},${y + 0.5}`).join(" ");
      element(closed ? "polygon" : "polyline", {class: "line", points: line, "data-part": part}, scene);
    });
  }
  const unsure = new Set(face.unsure || []);
  points.forEach(([x, y], i) => element("circle", {class: "point" + (edit.placed.has(i) ? " placed" : "") +
                                                          (unsure.has(i) ? " unsure" : ""),
                                                   cx: x + 0.5, cy: y + 0.5, r: RADIUS / zoom.scale,
                                                   "data-point": i}, scene));
  header();
}

function header() {
  const {face, edit} = state;
  document.getElementById("position").textContent = `${state.at + 1} / ${state.faces.length}`;
  document.getElementById("name").textContent = face.output;
  document.getElementById("error").textContent =
    (face.expected_error === null ? "" : `expected error ${face.expected_error.toPrecision(3)}`) +
    ` · found by ${face.detector}` +
    (face.photo_changed ? " · the photo's size changed since these points were placed: place them again" : "");
  const status = document.getElementById("status");
  const moved = face.checked === "moved" ? ` ${face.moved_px} px` : "";
  status.textContent = face.checked ? `${face.checked}${moved} (${face.checked_at})` : "not checked";
  status.className = face.checked ? "checked" : "";
  status.classList.toggle("edited", edited(edit));
  const roll = Math.round(state.roll);
  document.getElementById("roll").textContent = roll ? `shown upright: turned ${Math.abs(roll)}° ` +
    (roll > 0 ? "clockwise" : "counter-clockwise") : "";
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
  const [left, top, right, bottom] = face.box;
  if (region === "face" || !points.length) points.push([left, top], [right, top], [left, bottom], [right, bottom]);
  const shown = points.map(([x, y]) => turned([x + 0.5, y + 0.5]));
  const xs = shown.map((p) => p[0]), ys = shown.map((p) => p[1]);
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

function toUnits(event, node) { // the pointer in the user units of node (the view: turned; the scene: photo)
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(node.getScreenCTM().inverse());
  return [point.x, point.y];
}

function toPhoto(event) {
  return toUnits(event, document.getElementById("scene"));
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
  state.drag = {indices, start: toPhoto(event), from: snapshot(state.edit), client: [event.clientX, event.clientY],
                zoom: {...state.zoom}, moved: false, places: indices !== ALL}; // a whole-shape drag places none
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
  for (const i of drag.indices) state.edit.points[i] = [drag.from.points[i][0] + dx, drag.from.points[i][1] + dy];
  drag.moved = drag.moved || dx !== 0 || dy !== 0;
  render();
}

function released() {
  const drag = state.drag;
  state.drag = null;
  if (drag && drag.indices && drag.moved) {
    if (drag.places) drag.indices.forEach((i) => state.edit.placed.add(i));
    state.edit.undo.push(drag.from);
    state.edit.redo = [];
    render();
  }
}

function step(from, to) {
  const edit = state.edit;
  if (!edit[from].length) return note(`nothing to ${from}`);
  edit[to].push(snapshot(edit));
  restore(edit, edit[from].pop());
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
      edit.undo.push(snapshot(edit));
      edit.redo = [];
    }
    edit.points = copy(face.points);
    edit.placed = new Set();
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

async function refit() {
  const {face, edit} = state;
  if (!edit.points) return note("no points to refit", "error");
  const sent = snapshot(edit), placed = [...sent.placed].sort((a, b) => a - b);
  note("refitting...");
  try {
    const body = JSON.stringify({points: sent.points, placed});
    const fitted = await api(`faces/${face.id}/refit`, {method: "POST", body}).then((r) => r.json());
    if (state.edit !== edit || !same(edit.points, sent.points)) {
      return note("not refitted: the points changed meanwhile");
    }
    edit.undo.push(sent);
    edit.redo = [];
    restore(edit, {points: fitted.points, placed: new Set()});
    note(placed.length >= 2 ? `refitted to the ${placed.length} points placed (Z undoes)` :
         "refitted from the points shown (drag two or more points into place to refit to them; Z undoes)", "ok");
    render();
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
  z: () => step("undo", "redo"), y: () => step("redo", "undo"), r: reload, t: refit,
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
    if (state.face) zoomBy(event.deltaY < 0 ? 1.25 : 0.8, toUnits(event, view));
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
