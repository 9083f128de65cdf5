// The thin-client viewer's arithmetic: which picture to ask `/api/v1/render/…` for, given the
// view (crosshair point, window, slab, 3D camera), and how a point on a picture maps back to
// the patient. No DOM and no fetching here, so all of it is unit-tested (render.test.ts);
// `viewer/ServerMpr.tsx` does the drawing and the requests. See docs/render-api.md.
//
// Coordinates are patient millimetres (DICOM LPS: +x patient's left, +y posterior, +z head).

export type Vec3 = [number, number, number];
export type PlaneKind = 'axial' | 'sagittal' | 'coronal';
export const PLANE_KINDS: readonly PlaneKind[] = ['axial', 'sagittal', 'coronal'];
export type SlabMode = 'none' | 'mip' | 'minip' | 'average';
export const VR_PRESETS = ['bone', 'soft', 'lung', 'angio', 'mip'] as const;
export type VrPreset = (typeof VR_PRESETS)[number];

/** `GET …/volume`. */
export interface VolumeInfo {
  study_uid: string;
  series_uid: string;
  modality: string;
  dims: [number, number, number];
  spacing: [number, number, number];
  origin: Vec3;
  axes: [Vec3, Vec3, Vec3];
  phases: number[];
  slices: number;
  spacing_mm: number;
  gaps: { after_slice: number; step_mm: number; missing: number }[];
  uneven: boolean;
  tilt_deg: number;
  resampled: boolean;
  warnings: string[];
}

/** `X-Radris-Geometry`: pixel (c, r) lies at `first_pixel + c·pixel_mm·row + r·pixel_mm·col`. */
export interface Geometry {
  width: number;
  height: number;
  first_pixel?: Vec3;
  /** the picture's u (along a row) then v (down a column) directions */
  orientation?: [number, number, number, number, number, number];
  pixel_mm?: number;
  /** [centre, width] */
  window?: [number, number];
}

export interface WindowCW {
  center: number;
  width: number;
}

/** A named window (the server's own table, sent by name) or explicit numbers. */
export type WindowChoice = { preset: WindowPresetName } | WindowCW;
export const WINDOW_PRESETS = ['lung', 'mediastinum', 'bone', 'brain', 'abdomen'] as const;
export type WindowPresetName = (typeof WINDOW_PRESETS)[number];

export interface MprView {
  /** where the three planes cross */
  point: Vec3;
  /** undefined: the server's default (the series' first window) */
  window?: WindowChoice;
  slab: { mode: SlabMode; thickness: number };
}

export interface VrView {
  preset: VrPreset;
  /** degrees about the patient's long axis; 0 = from the front */
  azimuth: number;
  /** degrees in (−90, 90); positive looks from above */
  elevation: number;
}

// --- vectors ------------------------------------------------------------------------------

export const add = (a: Vec3, b: Vec3): Vec3 => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
export const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
export const scale = (a: Vec3, k: number): Vec3 => [a[0] * k, a[1] * k, a[2] * k];
export const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a: Vec3, b: Vec3): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

// --- planes and the volume ----------------------------------------------------------------

/** The server's plane axes (docs/render-api.md, "Planes"). */
export const PLANE_AXES: Record<PlaneKind, { u: Vec3; v: Vec3 }> = {
  axial: { u: [1, 0, 0], v: [0, 1, 0] },
  coronal: { u: [1, 0, 0], v: [0, 0, -1] },
  sagittal: { u: [0, 1, 0], v: [0, 0, -1] },
};

/** `u × v`, the direction `position` moves a plane: +z axial, +y coronal, −x sagittal. */
export function normalOf(kind: PlaneKind): Vec3 {
  const { u, v } = PLANE_AXES[kind];
  return cross(u, v);
}

function axisLength(info: VolumeInfo, a: number): number {
  return Math.max(0, info.dims[a] - 1) * info.spacing[a];
}

/** The volume's centre, as the server computes its default `center`. */
export function volumeCentre(info: VolumeInfo): Vec3 {
  let c: Vec3 = [...info.origin];
  for (let a = 0; a < 3; a += 1) c = add(c, scale(info.axes[a], axisLength(info, a) / 2));
  return c;
}

/** The volume's extent along a direction, mm (the server's default picture side). */
export function extentAlong(info: VolumeInfo, dir: Vec3): number {
  let e = 0;
  for (let a = 0; a < 3; a += 1) e += Math.abs(dot(info.axes[a], dir) * axisLength(info, a));
  return e;
}

/** The voxel spacing along a direction: one wheel step. */
export function stepAlong(info: VolumeInfo, dir: Vec3): number {
  let s = 0;
  for (let a = 0; a < 3; a += 1) s += Math.abs(dot(info.axes[a], dir)) * info.spacing[a];
  return s > 0 ? s : Math.min(...info.spacing);
}

/** The nearest point inside the volume (its axes are orthonormal). */
export function clampToVolume(info: VolumeInfo, p: Vec3): Vec3 {
  let out: Vec3 = [...info.origin];
  const rel = sub(p, info.origin);
  for (let a = 0; a < 3; a += 1) {
    const t = Math.min(Math.max(dot(rel, info.axes[a]), 0), axisLength(info, a));
    out = add(out, scale(info.axes[a], t));
  }
  return out;
}

/** The plane's `position`: its offset from the volume's centre along its normal. */
export function positionOf(info: VolumeInfo, kind: PlaneKind, point: Vec3): number {
  return dot(sub(point, volumeCentre(info)), normalOf(kind));
}

/** Move the point along a plane's normal by whole voxel steps (the wheel), inside the volume. */
export function stepPlane(info: VolumeInfo, point: Vec3, kind: PlaneKind, steps: number): Vec3 {
  const n = normalOf(kind);
  return clampToVolume(info, add(point, scale(n, steps * stepAlong(info, n))));
}

// --- sizes --------------------------------------------------------------------------------

/** Device pixels for a pane of CSS size w×h: × devicePixelRatio, each side at most `cap`. */
export function paneSize(cssWidth: number, cssHeight: number, dpr: number, cap = 1024): [number, number] {
  const w = Math.max(1, cssWidth * (dpr > 0 ? dpr : 1));
  const h = Math.max(1, cssHeight * (dpr > 0 ? dpr : 1));
  const k = Math.min(1, cap / w, cap / h);
  return [Math.max(1, Math.round(w * k)), Math.max(1, Math.round(h * k))];
}

/** Shrink a size, keeping its shape, to at most `maxPixels` pixels (3D costs per pixel). */
export function capPixels([w, h]: [number, number], maxPixels: number): [number, number] {
  const k = Math.min(1, Math.sqrt(maxPixels / (w * h)));
  return [Math.max(1, Math.round(w * k)), Math.max(1, Math.round(h * k))];
}

/** mm per pixel so that the whole volume fits a picture of `size` in this plane. */
export function fitPixel(info: VolumeInfo, kind: PlaneKind, [w, h]: [number, number]): number {
  const { u, v } = PLANE_AXES[kind];
  const px = Math.max(extentAlong(info, u) / Math.max(1, w - 1), extentAlong(info, v) / Math.max(1, h - 1));
  // rounded up, so the parameter stays short and the volume still fits
  return px > 0 ? Math.ceil(px * 1e4) / 1e4 : Math.min(...info.spacing);
}

// --- windows, wheel, rotation --------------------------------------------------------------

/** A window/level drag: right widens, down raises the centre (darker), as in Cornerstone. */
export function dragWindow(w: WindowCW, dx: number, dy: number): WindowCW {
  const k = Math.max(0.5, w.width / 300);
  return { center: Math.round(w.center + dy * k), width: Math.max(1, Math.round(w.width + dx * k)) };
}

/**
 * Plane steps for one wheel event: at least one per event, a step per 100 px of delta after
 * that. Positive (wheel down) moves against the plane's normal: the next slice down (inferior)
 * in the axial plane.
 */
export function wheelSteps(deltaY: number, deltaMode = 0): number {
  if (!deltaY) return 0;
  const px = deltaY * (deltaMode === 1 ? 40 : deltaMode === 2 ? 800 : 1);
  return -Math.sign(px) * Math.max(1, Math.round(Math.abs(px) / 100));
}

/** A drag on the 3D picture turns the camera: ½° per CSS pixel. */
export function dragRotate(vr: VrView, dx: number, dy: number): VrView {
  let azimuth = (vr.azimuth - dx * 0.5) % 360;
  if (azimuth > 180) azimuth -= 360;
  if (azimuth <= -180) azimuth += 360;
  const elevation = Math.min(89, Math.max(-89, vr.elevation + dy * 0.5));
  return { ...vr, azimuth: round2(azimuth), elevation: round2(elevation) };
}

// --- requests -----------------------------------------------------------------------------

const round2 = (x: number) => Math.round(x * 100) / 100;
const vec = (p: Vec3) => p.map((x) => String(round2(x) === 0 ? 0 : round2(x))).join(',');

export function windowParam(w: WindowChoice | undefined): string | undefined {
  if (!w) return undefined;
  if ('preset' in w) return w.preset;
  return `${round2(w.center)},${round2(w.width)}`;
}

export type RenderMode = 'mpr' | 'slab' | 'vr';

/** The route of a picture or the volume description. */
export function renderUrl(studyUid: string, seriesUid: string, what: RenderMode | 'volume', params?: URLSearchParams): string {
  const base = `/api/v1/render/studies/${encodeURIComponent(studyUid)}/series/${encodeURIComponent(seriesUid)}/${what}`;
  const q = params?.toString();
  return q ? `${base}?${q}` : base;
}

/**
 * One plane of the MPR: centred on the volume (the picture keeps still while the crosshair
 * moves), through the crosshair point, the whole volume fitted into `size`.
 */
export function planeRequest(info: VolumeInfo, kind: PlaneKind, view: MprView, size: [number, number]): { mode: RenderMode; params: URLSearchParams } {
  const params = new URLSearchParams();
  params.set('plane', kind);
  params.set('center', vec(volumeCentre(info)));
  params.set('position', String(round2(positionOf(info, kind, view.point))));
  params.set('size', `${size[0]},${size[1]}`);
  params.set('pixel', String(fitPixel(info, kind, size)));
  const w = windowParam(view.window);
  if (w) params.set('window', w);
  if (view.slab.mode === 'none') return { mode: 'mpr', params };
  params.set('slab', view.slab.mode);
  params.set('thickness', String(round2(Math.max(0.1, view.slab.thickness))));
  return { mode: 'slab', params };
}

/** The volume rendering; `interactive` (while dragging) asks for a small JPEG. */
export function vrRequest(vr: VrView, size: [number, number], interactive: boolean): URLSearchParams {
  const params = new URLSearchParams();
  params.set('preset', vr.preset);
  params.set('azimuth', String(round2(vr.azimuth)));
  params.set('elevation', String(round2(vr.elevation)));
  params.set('size', `${size[0]},${size[1]}`);
  if (interactive) {
    params.set('format', 'jpeg');
    params.set('quality', '80');
  }
  return params;
}

// --- pictures ↔ patient -------------------------------------------------------------------

/** Parse `X-Radris-Geometry`; undefined when absent or malformed. */
export function parseGeometry(header: string | null | undefined): Geometry | undefined {
  if (!header) return undefined;
  try {
    const g = JSON.parse(header) as Record<string, unknown>;
    const nums = (x: unknown, n: number) => Array.isArray(x) && x.length === n && x.every((v) => typeof v === 'number' && Number.isFinite(v));
    if (typeof g.width !== 'number' || typeof g.height !== 'number') return undefined;
    return {
      width: g.width,
      height: g.height,
      first_pixel: nums(g.first_pixel, 3) ? (g.first_pixel as Vec3) : undefined,
      orientation: nums(g.orientation, 6) ? (g.orientation as Geometry['orientation']) : undefined,
      pixel_mm: typeof g.pixel_mm === 'number' && g.pixel_mm > 0 ? g.pixel_mm : undefined,
      window: nums(g.window, 2) ? (g.window as [number, number]) : undefined,
    };
  } catch {
    return undefined;
  }
}

function axesOf(g: Geometry): { fp: Vec3; u: Vec3; v: Vec3; px: number } | undefined {
  if (!g.first_pixel || !g.orientation || !g.pixel_mm) return undefined;
  const o = g.orientation;
  return { fp: g.first_pixel, u: [o[0], o[1], o[2]], v: [o[3], o[4], o[5]], px: g.pixel_mm };
}

/** The patient point at pixel (c, r) (pixel centres at whole numbers). */
export function pixelToPatient(g: Geometry, c: number, r: number): Vec3 | undefined {
  const a = axesOf(g);
  if (!a) return undefined;
  return add(a.fp, add(scale(a.u, c * a.px), scale(a.v, r * a.px)));
}

/** Where a patient point falls on the picture (projected onto its plane). */
export function patientToPixel(g: Geometry, p: Vec3): [number, number] | undefined {
  const a = axesOf(g);
  if (!a) return undefined;
  const d = sub(p, a.fp);
  return [dot(d, a.u) / a.px, dot(d, a.v) / a.px];
}

/** Where a picture of imgW×imgH lands in a box with `object-fit: contain`. */
export function containRect(boxW: number, boxH: number, imgW: number, imgH: number): { x: number; y: number; w: number; h: number } {
  const k = Math.min(boxW / imgW, boxH / imgH);
  const w = imgW * k;
  const h = imgH * k;
  return { x: (boxW - w) / 2, y: (boxH - h) / 2, w, h };
}

/** A point in the box (CSS px from its top left) → pixel coordinates of the picture. */
export function boxToPixel(boxW: number, boxH: number, g: Geometry, x: number, y: number): [number, number] {
  const r = containRect(boxW, boxH, g.width, g.height);
  return [((x - r.x) * g.width) / r.w - 0.5, ((y - r.y) * g.height) / r.h - 0.5];
}

/** Pixel coordinates → a point in the box (the inverse of `boxToPixel`). */
export function pixelToBox(boxW: number, boxH: number, g: Geometry, c: number, r: number): [number, number] {
  const rect = containRect(boxW, boxH, g.width, g.height);
  return [rect.x + ((c + 0.5) * rect.w) / g.width, rect.y + ((r + 0.5) * rect.h) / g.height];
}

/**
 * The line where another plane (through `point`, with `normal`) cuts this picture, in the
 * picture's own coordinates with pixel edges at whole numbers (an SVG viewBox of
 * `0 0 width height`), clipped to the picture; undefined when the planes are parallel or the
 * line misses it.
 */
export function intersectionLine(g: Geometry, point: Vec3, normal: Vec3): [[number, number], [number, number]] | undefined {
  const a = axesOf(g);
  if (!a) return undefined;
  // (c·px·u + r·px·v)·n = (point − fp)·n, in pixel-centre coordinates
  const A = a.px * dot(a.u, normal);
  const B = a.px * dot(a.v, normal);
  const C = dot(sub(point, a.fp), normal);
  const eps = 1e-9;
  const pts: [number, number][] = [];
  const W = g.width;
  const H = g.height;
  // edges of the picture in pixel-centre coordinates: c ∈ [−½, W−½], r ∈ [−½, H−½]
  if (Math.abs(B) > eps) {
    for (const c of [-0.5, W - 0.5]) {
      const r = (C - A * c) / B;
      if (r >= -0.5 - 1e-6 && r <= H - 0.5 + 1e-6) pts.push([c, r]);
    }
  }
  if (Math.abs(A) > eps) {
    for (const r of [-0.5, H - 0.5]) {
      const c = (C - B * r) / A;
      if (c >= -0.5 - 1e-6 && c <= W - 0.5 + 1e-6) pts.push([c, r]);
    }
  }
  if (pts.length < 2) return undefined;
  // the two points furthest apart (a corner can be found twice)
  let best: [[number, number], [number, number]] = [pts[0], pts[1]];
  let bestD = -1;
  for (let i = 0; i < pts.length; i += 1) {
    for (let j = i + 1; j < pts.length; j += 1) {
      const d = Math.hypot(pts[i][0] - pts[j][0], pts[i][1] - pts[j][1]);
      if (d > bestD) {
        bestD = d;
        best = [pts[i], pts[j]];
      }
    }
  }
  const shift = ([c, r]: [number, number]): [number, number] => [c + 0.5, r + 0.5];
  return [shift(best[0]), shift(best[1])];
}

/** The window a picture was drawn with, for a drag to start from. */
export function windowOf(g: Geometry | undefined, chosen: WindowChoice | undefined): WindowCW | undefined {
  if (chosen && !('preset' in chosen)) return chosen;
  return g?.window ? { center: g.window[0], width: g.window[1] } : undefined;
}
