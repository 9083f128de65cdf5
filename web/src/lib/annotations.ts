// Measurements as saved on the server (one document per study and user). Cornerstone's own
// annotation objects carry image ids that embed URLs; the saved form names the instance and
// frame instead, so it survives a change of server address, and keeps a readable summary of
// the values (for the report and for lists) next to the geometry.

export type Point3 = [number, number, number];

export interface SavedMeasurement {
  uid: string;
  tool: string;
  seriesUid: string;
  sopInstanceUid: string;
  frame: number;
  frameOfReferenceUid: string;
  viewPlaneNormal?: Point3;
  viewUp?: Point3;
  points: Point3[];
  textBox?: Point3;
  label?: string;
  /** what the tool computed, e.g. `144.4 mm`, `mean 41.2 HU, SD 19.8, area 307 mm²` */
  summary: string;
  /** the raw numbers behind the summary (length, mean, stdDev, area, angle, …) */
  values: Record<string, number | string>;
}

export interface KeyImage {
  seriesUid: string;
  sopInstanceUid: string;
  frame: number;
  note?: string;
}

export interface AnnotationDocument {
  measurements: SavedMeasurement[];
  keyImages: KeyImage[];
}

/** The subset of a Cornerstone annotation this module reads and writes. */
export interface CsAnnotation {
  annotationUID?: string;
  metadata: {
    toolName: string;
    FrameOfReferenceUID?: string;
    referencedImageId?: string;
    viewPlaneNormal?: number[];
    viewUp?: number[];
    [k: string]: unknown;
  };
  data: {
    handles: { points: number[][]; textBox?: { worldPosition?: number[]; [k: string]: unknown }; [k: string]: unknown };
    cachedStats?: Record<string, Record<string, unknown>>;
    label?: string;
    text?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export const MEASUREMENT_TOOLS = [
  'Length',
  'Angle',
  'EllipticalROI',
  'RectangleROI',
  'Bidirectional',
  'Probe',
  'ArrowAnnotate',
] as const;

const fmt = (v: unknown, digits = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '?');

/** The first target's statistics (Cornerstone keys them by target id). */
export function firstStats(a: CsAnnotation): Record<string, unknown> {
  const stats = a.data.cachedStats ?? {};
  const key = Object.keys(stats)[0];
  return key ? stats[key] : {};
}

/** A one-line reading of a measurement, as a radiologist would dictate it. */
export function summarize(tool: string, stats: Record<string, unknown>, text?: string): string {
  const unit = (k: string, d: string) => (typeof stats[k] === 'string' ? (stats[k] as string) : d);
  switch (tool) {
    case 'Length':
      return `${fmt(stats.length)} ${unit('unit', 'mm')}`;
    case 'Angle':
      return `${fmt(stats.angle)}°`;
    case 'Bidirectional':
      return `${fmt(stats.length)} × ${fmt(stats.width)} ${unit('unit', 'mm')}`;
    case 'EllipticalROI':
    case 'RectangleROI': {
      const mu = unit('modalityUnit', '');
      return `mean ${fmt(stats.mean)} ${mu}, SD ${fmt(stats.stdDev)}, area ${fmt(stats.area, 0)} ${unit('areaUnit', 'mm²')}`.replace(/\s+,/g, ',');
    }
    case 'Probe': {
      const v = Array.isArray(stats.value) ? stats.value[0] : stats.value;
      return `${fmt(v, 0)} ${unit('modalityUnit', '')}`.trim();
    }
    case 'ArrowAnnotate':
      return text ?? '';
    default:
      return '';
  }
}

function numericValues(stats: Record<string, unknown>): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(stats)) {
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = Math.round(v * 1000) / 1000;
    else if (typeof v === 'string' && v.length < 32) out[k] = v;
  }
  return out;
}

const p3 = (p: number[] | undefined): Point3 | undefined =>
  p && p.length >= 3 && p.every((x) => Number.isFinite(x)) ? [p[0], p[1], p[2]] : undefined;

/**
 * Cornerstone annotation → saved form. `locate` maps an image id to its series, instance and
 * frame; annotations on images we cannot name (e.g. drawn on a volume slice) are skipped.
 */
export function toSaved(
  a: CsAnnotation,
  locate: (imageId: string) => { seriesUid: string; sopInstanceUid: string; frame: number } | undefined,
): SavedMeasurement | undefined {
  const tool = a.metadata.toolName;
  if (!(MEASUREMENT_TOOLS as readonly string[]).includes(tool)) return undefined;
  const at = a.metadata.referencedImageId ? locate(a.metadata.referencedImageId) : undefined;
  if (!at || !a.annotationUID) return undefined;
  const points = (a.data.handles.points ?? []).map(p3).filter((p): p is Point3 => !!p);
  if (points.length === 0) return undefined;
  const stats = firstStats(a);
  return {
    uid: a.annotationUID,
    tool,
    ...at,
    frameOfReferenceUid: a.metadata.FrameOfReferenceUID ?? '',
    viewPlaneNormal: p3(a.metadata.viewPlaneNormal),
    viewUp: p3(a.metadata.viewUp),
    points,
    textBox: p3(a.data.handles.textBox?.worldPosition),
    label: a.data.label || a.data.text || undefined,
    summary: summarize(tool, stats, a.data.text ?? a.data.label),
    values: numericValues(stats),
  };
}

/** Saved form → a Cornerstone annotation to add back to the annotation state. */
export function fromSaved(m: SavedMeasurement, imageIdOf: (sop: string, frame: number) => string | undefined): CsAnnotation | undefined {
  const referencedImageId = imageIdOf(m.sopInstanceUid, m.frame);
  if (!referencedImageId) return undefined;
  return {
    annotationUID: m.uid,
    highlighted: false,
    invalidated: true,
    isLocked: false,
    isVisible: true,
    metadata: {
      toolName: m.tool,
      FrameOfReferenceUID: m.frameOfReferenceUid,
      referencedImageId,
      viewPlaneNormal: m.viewPlaneNormal,
      viewUp: m.viewUp,
    },
    data: {
      handles: {
        points: m.points.map((p) => [...p]),
        activeHandleIndex: null,
        textBox: m.textBox
          ? { hasMoved: true, worldPosition: [...m.textBox], worldBoundingBox: undefined }
          : { hasMoved: false, worldPosition: [0, 0, 0], worldBoundingBox: undefined },
      },
      cachedStats: {},
      label: m.label ?? '',
      text: m.tool === 'ArrowAnnotate' ? (m.label ?? '') : undefined,
    },
  };
}

/** Validate a document from the server (it is the user's own data, but may be from an older app). */
export function parseDocument(raw: unknown): AnnotationDocument {
  const doc = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const measurements = Array.isArray(doc.measurements)
    ? (doc.measurements as SavedMeasurement[]).filter(
        (m) =>
          m &&
          typeof m.uid === 'string' &&
          typeof m.tool === 'string' &&
          typeof m.sopInstanceUid === 'string' &&
          Array.isArray(m.points) &&
          m.points.every((p) => Array.isArray(p) && p.length === 3 && p.every((x) => typeof x === 'number')),
      )
    : [];
  const keyImages = Array.isArray(doc.keyImages)
    ? (doc.keyImages as KeyImage[]).filter((k) => k && typeof k.sopInstanceUid === 'string' && typeof k.frame === 'number')
    : [];
  return { measurements, keyImages };
}

/** Toggle a key image (marking the same image twice unmarks it). */
export function toggleKeyImage(list: KeyImage[], k: KeyImage): KeyImage[] {
  const same = (x: KeyImage) => x.sopInstanceUid === k.sopInstanceUid && x.frame === k.frame;
  return list.some(same) ? list.filter((x) => !same(x)) : [...list, k];
}
