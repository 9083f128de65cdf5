// The study list's search form → the REST API's query (`/api/v1/studies`).

export interface StudySearch {
  name: string;
  patientId: string;
  accession: string;
  modality: string;
  /** `YYYY-MM-DD` from a date input, or '' */
  dateFrom: string;
  dateTo: string;
  sort: 'date' | '-date' | 'received' | '-received' | 'accession' | '-accession';
}

export const emptySearch: StudySearch = {
  name: '',
  patientId: '',
  accession: '',
  modality: '',
  dateFrom: '',
  dateTo: '',
  sort: '-date',
};

export class SearchError extends Error {}

function isoToDicom(field: string, v: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) throw new SearchError(`${field} must be a date (YYYY-MM-DD)`);
  return v.replaceAll('-', '');
}

/**
 * Build the query. A name without wildcards matches names that start with it (what people
 * type is usually the family name); `*` and `?` are passed through for the server's matching.
 */
export function toQuery(s: StudySearch, cursor?: string, limit = 50): URLSearchParams {
  const q = new URLSearchParams();
  const name = s.name.trim();
  if (name) q.set('patient_name', /[*?]/.test(name) ? name : `${name}*`);
  if (s.patientId.trim()) q.set('patient_id', s.patientId.trim());
  if (s.accession.trim()) q.set('accession_number', s.accession.trim());
  if (s.modality.trim()) q.set('modality', s.modality.trim().toUpperCase());
  const from = s.dateFrom ? isoToDicom('From', s.dateFrom) : '';
  const to = s.dateTo ? isoToDicom('To', s.dateTo) : '';
  if (from && to && from > to) throw new SearchError('the date range ends before it starts');
  if (from) q.set('date_from', from);
  if (to) q.set('date_to', to);
  q.set('sort', s.sort);
  q.set('limit', String(limit));
  if (cursor) q.set('cursor', cursor);
  return q;
}

/** Quick date ranges of the form: today, the last 7 and 30 days. */
export function lastDays(days: number, now: Date = new Date()): { dateFrom: string; dateTo: string } {
  const iso = (d: Date) => d.toISOString().slice(0, 10);
  const from = new Date(now.getTime() - (days - 1) * 86_400_000);
  return { dateFrom: iso(from), dateTo: iso(now) };
}
