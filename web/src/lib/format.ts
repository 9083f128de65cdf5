// Display helpers for DICOM values.

/** `Family^Given^Middle^Prefix^Suffix` → `FAMILY, Given Middle` (the reading-room convention). */
export function personName(pn: string): string {
  if (!pn) return '';
  const alphabetic = pn.split('=')[0];
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = alphabetic.split('^');
  const first = [prefix, given, middle].filter(Boolean).join(' ');
  const last = [family.toUpperCase(), suffix].filter(Boolean).join(' ');
  return first ? `${last}, ${first}` : last;
}

/** `YYYYMMDD` → `YYYY-MM-DD`; anything else unchanged. */
export function dicomDate(d: string): string {
  return /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : d;
}

/** `HHMMSS(.ffffff)` → `HH:MM`. */
export function dicomTime(t: string): string {
  return /^\d{4}/.test(t) ? `${t.slice(0, 2)}:${t.slice(2, 4)}` : t;
}

/** Age in whole years on `onDate` (both `YYYYMMDD`), or '' when unknown. */
export function ageAt(birth: string, onDate: string): string {
  if (!/^\d{8}$/.test(birth) || !/^\d{8}$/.test(onDate)) return '';
  const [by, bm, bd] = [+birth.slice(0, 4), +birth.slice(4, 6), +birth.slice(6, 8)];
  const [y, m, d] = [+onDate.slice(0, 4), +onDate.slice(4, 6), +onDate.slice(6, 8)];
  let age = y - by;
  if (m < bm || (m === bm && d < bd)) age -= 1;
  return age >= 0 ? `${age}Y` : '';
}
