// Pure helpers of the report editor: the viewer's saved measurements and key images as report
// content, what may be signed in each status, the addenda, canned phrases (macros) and their
// insertion at the cursor, the autosave status line, the template that fits a procedure.
// No DOM, no fetch: tested in reportview.test.ts.

import type { AnnotationDocument, SavedMeasurement } from './annotations';
import type { Content, Measurement, Report, ReportKeyImage, ReportStatus, SignStatus, TemplateInfo } from './reports';

// --- measurements and key images from the viewer ------------------------------------------

export const UCUM_HU = "[hnsf'U]";

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

/** A viewer unit as UCUM: `mm²` → `mm2`, `HU` → `[hnsf'U]`, degrees → `deg`. */
export function ucum(unit: string | undefined, fallback: string): string {
  const u = (unit ?? '').trim();
  if (!u) return fallback;
  if (u === 'HU') return UCUM_HU;
  if (u === '°' || u === 'deg') return 'deg';
  return u.replace('²', '2').replace('³', '3');
}

/** The first number of a text (a summary like `-851 HU`). */
function firstNumber(s: string): number | undefined {
  const m = /-?\d+(?:\.\d+)?/.exec(s);
  return m ? Number(m[0]) : undefined;
}

/** The report measurements of one saved viewer measurement (none for an arrow's text). */
export function measurementsOf(m: SavedMeasurement, nth: number): Measurement[] {
  const v = m.values ?? {};
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const name = (m.label ?? '').trim();
  const where = { sop_instance_uid: m.sopInstanceUid, frame: m.frame };
  const out: Measurement[] = [];
  const push = (label: string, value: number | undefined, unit: string, digits: number) => {
    if (value !== undefined) out.push({ label, value: round(value, digits), unit, ...where });
  };
  const base = (what: string) => name || `${what} ${nth}`;
  switch (m.tool) {
    case 'Length':
      push(base('Length'), num(v.length), ucum(str('unit'), 'mm'), 1);
      break;
    case 'Angle':
      push(base('Angle'), num(v.angle), 'deg', 1);
      break;
    case 'Bidirectional':
      push(`${base('Lesion')} long axis`, num(v.length), ucum(str('unit'), 'mm'), 1);
      push(`${base('Lesion')} short axis`, num(v.width), ucum(str('unit'), 'mm'), 1);
      break;
    case 'EllipticalROI':
    case 'RectangleROI':
      push(`${base('ROI')} mean`, num(v.mean), ucum(str('modalityUnit'), '1'), 1);
      push(`${base('ROI')} area`, num(v.area), ucum(str('areaUnit'), 'mm2'), 0);
      break;
    case 'Probe':
      push(base('Point'), num(v.value) ?? firstNumber(m.summary ?? ''), ucum(str('modalityUnit') ?? (/HU\b/.test(m.summary ?? '') ? 'HU' : ''), '1'), 0);
      break;
    default:
      break;
  }
  return out;
}

/** Every measurement and key image of the viewer's saved document, as report content. */
export function fromAnnotations(doc: AnnotationDocument): { measurements: Measurement[]; keyImages: ReportKeyImage[] } {
  const counts = new Map<string, number>();
  const measurements = doc.measurements.flatMap((m) => {
    const n = (counts.get(m.tool) ?? 0) + 1;
    counts.set(m.tool, n);
    return measurementsOf(m, n);
  });
  const keyImages = doc.keyImages.map((k) => ({ sop_instance_uid: k.sopInstanceUid, frame: k.frame }));
  return { measurements, keyImages };
}

const mKey = (m: Measurement) => `${m.label}\u0000${m.unit}\u0000${m.sop_instance_uid ?? ''}\u0000${m.frame ?? ''}`;
const kKey = (k: ReportKeyImage) => `${k.sop_instance_uid}\u0000${k.frame ?? ''}`;

/** Add measurements: one with the same label, unit and image replaces the old one. */
export function mergeMeasurements(have: Measurement[], add: Measurement[]): Measurement[] {
  const byKey = new Map(add.map((m) => [mKey(m), m]));
  const out = have.map((m) => byKey.get(mKey(m)) ?? m);
  const seen = new Set(have.map(mKey));
  for (const m of add) if (!seen.has(mKey(m))) out.push(m);
  return out;
}

/** Add key images once each. */
export function mergeKeyImages(have: ReportKeyImage[], add: ReportKeyImage[]): ReportKeyImage[] {
  const seen = new Set(have.map(kKey));
  const out = [...have];
  for (const k of add) {
    if (!seen.has(kKey(k))) {
      seen.add(kKey(k));
      out.push(k);
    }
  }
  return out;
}

/** `12.5 mm`, `41 [hnsf'U]` shown as `41 HU`. */
export function formatMeasurement(m: Measurement): string {
  const unit = m.unit === UCUM_HU ? 'HU' : m.unit === 'deg' ? '°' : m.unit === 'mm2' ? 'mm²' : m.unit === '1' ? '' : m.unit;
  return unit === '°' ? `${m.value}°` : `${m.value}${unit ? ` ${unit}` : ''}`;
}

// --- lifecycle -------------------------------------------------------------------------------

/** What may be signed next: draft → preliminary or final; preliminary → final; final/amended → an addendum. */
export function signOptions(status: ReportStatus): SignStatus[] {
  switch (status) {
    case 'draft':
      return ['preliminary', 'final'];
    case 'preliminary':
      return ['final'];
    default:
      return ['amended'];
  }
}

/** Whether the body (all but the addenda) may still change. */
export const bodyEditable = (status: ReportStatus) => status === 'draft' || status === 'preliminary';

/** How many addenda are signed (each signature as amended adds exactly one). */
export function signedAddenda(r: Pick<Report, 'versions'>): number {
  return r.versions.filter((v) => v.status === 'amended').length;
}

/** The addendum being written (after the signed ones), or undefined. */
export function pendingAddendum(r: Pick<Report, 'versions'>, c: Pick<Content, 'addenda'>): string | undefined {
  const n = signedAddenda(r);
  return c.addenda.length > n ? c.addenda[n] : undefined;
}

/** The addenda with the one being written set to `text` (none when blank and never saved). */
export function withAddendum(r: Pick<Report, 'versions'>, c: Pick<Content, 'addenda'>, text: string): string[] {
  const signed = c.addenda.slice(0, signedAddenda(r));
  return [...signed, text];
}

export const SIGN_LABEL: Record<SignStatus, string> = {
  preliminary: 'Sign preliminary',
  final: 'Sign final',
  amended: 'Sign addendum',
};

export const STATUS_LABEL: Record<ReportStatus, string> = {
  draft: 'Draft',
  preliminary: 'Preliminary',
  final: 'Final',
  amended: 'Amended',
};

// --- text editing ------------------------------------------------------------------------------

/** Insert a phrase at the cursor (replacing a selection), spaced from the words around it. */
export function insertAt(value: string, start: number, end: number, phrase: string): { value: string; caret: number } {
  const s = Math.max(0, Math.min(start, value.length));
  const e = Math.max(s, Math.min(end, value.length));
  const before = value.slice(0, s);
  const after = value.slice(e);
  const lead = before && !/\s$/.test(before) ? ' ' : '';
  const trail = after && !/^\s/.test(after) ? ' ' : '';
  const text = lead + phrase + trail;
  return { value: before + text + after, caret: before.length + lead.length + phrase.length };
}

/** Append dictated text, with a space between words. */
export function appendText(value: string, text: string): string {
  const t = text.trim();
  if (!t) return value;
  return value && !/\s$/.test(value) ? `${value} ${t}` : value + t;
}

// --- macros ------------------------------------------------------------------------------------

export const DEFAULT_MACROS = ['No acute cardiopulmonary abnormality.', 'No acute intracranial abnormality.'];

export const macrosKey = (user: string) => `radris.macros.${user}`;

/** The user's canned phrases (the defaults until they change them). */
export function loadMacros(store: Pick<Storage, 'getItem'>, user: string): string[] {
  try {
    const raw = store.getItem(macrosKey(user));
    if (raw === null) return [...DEFAULT_MACROS];
    const list = JSON.parse(raw);
    return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string' && x.trim() !== '') : [...DEFAULT_MACROS];
  } catch {
    return [...DEFAULT_MACROS];
  }
}

export function saveMacros(store: Pick<Storage, 'setItem'>, user: string, list: string[]): void {
  try {
    store.setItem(macrosKey(user), JSON.stringify(list));
  } catch {
    // storage full or disabled: the list lives for this page only
  }
}

// --- autosave ----------------------------------------------------------------------------------

export type SaveState = { kind: 'saved' } | { kind: 'saving' } | { kind: 'error'; reason: string };

export function saveStateText(s: SaveState): string {
  switch (s.kind) {
    case 'saved':
      return 'Saved';
    case 'saving':
      return 'Saving…';
    case 'error':
      return `Not saved: ${s.reason}`;
  }
}

/** JSON with object keys sorted: equal content gives equal text (to tell whether a save is due). */
export function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}

// --- templates ---------------------------------------------------------------------------------

const words = (s: string) =>
  new Set(
    s
      .toLowerCase()
      .split(/[^\p{L}\p{N}]+/u)
      .filter((w) => w.length >= 2),
  );

/** The template whose title and id share most words with the procedure's name (else the first). */
export function bestTemplate(templates: TemplateInfo[], procedure: string): string {
  const want = words(procedure);
  let best = templates[0]?.id ?? '';
  let score = 0;
  for (const t of templates) {
    const have = words(`${t.title} ${t.id}`);
    let s = 0;
    for (const w of want) if (have.has(w)) s += 1;
    if (s > score) {
      best = t.id;
      score = s;
    }
  }
  return best;
}

/** `ab12…` → `ab12 cd34 …` in groups of 8 for reading aloud and comparing. */
export function groupHex(hex: string, size = 8): string {
  return hex.replace(new RegExp(`(.{${size}})(?=.)`, 'g'), '$1 ');
}
