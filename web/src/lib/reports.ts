// The report REST API (`/api/v1/reports`, docs/report-api.md): templates, the report of an
// order, autosave with optimistic concurrency (`rev`), signing with re-authentication,
// signature verification, critical results, the PDF, peer review and the quality figures.
// Same door as api.ts: same-origin fetch with the session cookie, problem documents surfacing
// as ApiError (a 422 on signing carries `problems` in `ApiError.body`, a 403 that needs a
// second factor `second_factor_required: true`).

import { ApiError, request, requestResponse } from './api';

export const REPORTS_ROOT = '/api/v1/reports';

export const REPORT_STATUSES = ['draft', 'preliminary', 'final', 'amended'] as const;
export type ReportStatus = (typeof REPORT_STATUSES)[number];
/** What a signature may make of a report. */
export type SignStatus = Exclude<ReportStatus, 'draft'>;

/** A template field's value: text, a number, or the chosen options of a multiple choice. */
export type FieldValue = string | number | string[];

export interface Measurement {
  label: string;
  value: number;
  /** UCUM: `mm`, `mm2`, `deg`, `[hnsf'U]`… */
  unit: string;
  sop_instance_uid?: string;
  sop_class_uid?: string;
  frame?: number | null;
}

export interface ReportKeyImage {
  sop_instance_uid: string;
  sop_class_uid?: string;
  frame?: number | null;
}

export interface Content {
  values: Record<string, FieldValue>;
  narrative: string;
  impression: string;
  measurements: Measurement[];
  key_images: ReportKeyImage[];
  /** only after the final signature; one new (unsigned) addendum at a time */
  addenda: string[];
}

export interface Version {
  version: number;
  status: SignStatus;
  signer: string;
  signed_at: string | null;
  sha256: string;
  sr_sop_uid: string;
}

export interface Critical {
  text: string;
  flagged_at: string | null;
  acknowledged_by: string;
  acknowledged_at: string | null;
  communication_min: number | null;
}

export interface Report {
  id: string;
  order_id: string;
  accession: string;
  study_uid: string;
  patient_name: string;
  patient_id: string;
  procedure: string;
  order_state: string;
  template_id: string;
  template_version: number;
  status: ReportStatus;
  /** send back with the next save */
  rev: number;
  content: Content;
  author: string;
  versions: Version[];
  critical: Critical | null;
  created_at: string | null;
  updated_at: string | null;
}

export interface TemplateInfo {
  id: string;
  version: number;
  title: string;
  created_by: string;
  created_at: string | null;
}

export interface TemplateText {
  /** from the `X-Template-Version` header */
  version: number;
  xhtml: string;
}

export interface SignResult {
  version: Version;
  sr_sop_instance_uid: string | null;
}

export interface Verification {
  version: number;
  valid: boolean;
  sha256: string;
  signer: string;
  signed_at: string | null;
  problem: string | null;
}

export interface PeerReview {
  id: string;
  report_id: string;
  reviewer: string;
  /** 1–3 once reviewed */
  score: number | null;
  /** '' | 'a' | 'b' */
  significance: string;
  comment: string;
  followup: string;
  assigned_at: string | null;
  reviewed_at: string | null;
}

export interface Quality {
  reviews_done: number;
  reviews_pending: number;
  by_score: Record<string, number>;
  discrepancy_rate: number | null;
  critical_flagged: number;
  critical_acknowledged: number;
  critical_mean_communication_min: number | null;
  reports_signed: number;
}

export const emptyContent = (): Content => ({ values: {}, narrative: '', impression: '', measurements: [], key_images: [], addenda: [] });

const seg = encodeURIComponent;
const get = <T>(path: string) => request<T>(REPORTS_ROOT + path);
const send = <T>(method: string, path: string, body: unknown, init: RequestInit = {}) =>
  request<T>(REPORTS_ROOT + path, { ...init, method, body: JSON.stringify(body) });

// --- templates -----------------------------------------------------------------------------

export async function listTemplates(): Promise<TemplateInfo[]> {
  return (await get<{ items: TemplateInfo[] }>('/templates')).items;
}

/** A template's MRRT XHTML (the latest version unless `version` is given). */
export async function getTemplate(id: string, version?: number): Promise<TemplateText> {
  const q = version === undefined ? '' : `?version=${version}`;
  const res = await requestResponse(`${REPORTS_ROOT}/templates/${seg(id)}${q}`, { headers: { Accept: 'application/xhtml+xml, text/html;q=0.9' } });
  const v = Number(res.headers.get('X-Template-Version'));
  return { version: Number.isFinite(v) && v > 0 ? v : (version ?? 0), xhtml: await res.text() };
}

/** Add a template or a new version of one (admin); 422 with the reason when it is not valid. */
export function putTemplate(id: string, xhtml: string): Promise<TemplateInfo> {
  return request<TemplateInfo>(`${REPORTS_ROOT}/templates/${seg(id)}`, {
    method: 'PUT',
    body: xhtml,
    headers: { 'Content-Type': 'application/xhtml+xml' },
  });
}

// --- reports -------------------------------------------------------------------------------

/** Start the report of an order; 409 for a cancelled order, one without images or one that has a report. */
export const createReport = (orderId: string, templateId: string) => send<Report>('POST', '', { order_id: orderId, template_id: templateId });

/** The order's report, or null when it has none (404). */
export async function reportOfOrder(orderId: string): Promise<Report | null> {
  try {
    return await request<Report>(`/api/v1/ris/orders/${seg(orderId)}/report`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

export const getReport = (id: string) => get<Report>(`/${seg(id)}`);

/** Largest body a `keepalive` fetch may carry (the browsers' limit is 64 KiB for all in flight). */
export const KEEPALIVE_LIMIT = 60 * 1024;

/**
 * Autosave: 409 when saved elsewhere since `rev` or when a signed report's body changes, 422
 * for values of the wrong type or range. `keepalive` lets the request outlive the page (tab
 * closed, navigation); bodies too large for it go as an ordinary request.
 */
export function saveReport(id: string, rev: number, content: Content, opts: { keepalive?: boolean } = {}): Promise<{ rev: number }> {
  const body = JSON.stringify({ rev, content });
  const keepalive = !!opts.keepalive && body.length <= KEEPALIVE_LIMIT;
  return request<{ rev: number }>(`${REPORTS_ROOT}/${seg(id)}`, { method: 'PUT', body, keepalive });
}

/** The report as an escaped HTML fragment. */
export async function reportHtml(id: string): Promise<string> {
  return (await requestResponse(`${REPORTS_ROOT}/${seg(id)}/html`, { headers: { Accept: 'text/html' } })).text();
}

/**
 * Sign the stored working copy. 403 when re-authentication fails (`needsSecondFactor(e)`),
 * 422 when required fields are missing (`signProblems(e)`), 409 when the lifecycle or the
 * order's state does not allow it.
 */
export const signReport = (id: string, status: SignStatus, password: string, code?: string) =>
  send<SignResult>('POST', `/${seg(id)}/sign`, code ? { status, password, code } : { status, password });

/** The signed document of a version (canonical JSON). */
export const getVersion = (id: string, n: number) => get<Record<string, unknown>>(`/${seg(id)}/versions/${n}`);
export const verifyVersion = (id: string, n: number) => get<Verification>(`/${seg(id)}/versions/${n}/verify`);

export const flagCritical = (id: string, text: string) => send<Report>('POST', `/${seg(id)}/critical`, { text });
export const acknowledgeCritical = (id: string) => send<Report>('POST', `/${seg(id)}/critical/ack`, {});

/** Where the PDF is (open it in a tab or link to it: same origin, the session cookie goes along). */
export function reportPdfUrl(id: string): string {
  return `${REPORTS_ROOT}/${seg(id)}/pdf`;
}

// --- peer review and quality ---------------------------------------------------------------

export async function listPeerReviews(): Promise<PeerReview[]> {
  return (await get<{ items: PeerReview[] }>('/peer-reviews')).items;
}
export async function assignPeerReviews(count: number): Promise<PeerReview[]> {
  return (await send<{ items: PeerReview[] }>('POST', '/peer-reviews/assign', { count })).items;
}
export const scorePeerReview = (id: string, r: { score: 1 | 2 | 3; significance: '' | 'a' | 'b'; comment: string }) =>
  send<PeerReview>('POST', `/peer-reviews/${seg(id)}`, r);
export const getQuality = () => get<Quality>('/quality');

// --- errors --------------------------------------------------------------------------------

/** The missing or wrong fields a 422 on signing names (`problems`), or [] for any other error. */
export function signProblems(e: unknown): string[] {
  if (!(e instanceof ApiError) || e.status !== 422) return [];
  const p = e.body.problems;
  return Array.isArray(p) ? p.map(String) : [];
}

/** Whether a refused signature needs the second factor's code. */
export function needsSecondFactor(e: unknown): boolean {
  return e instanceof ApiError && e.status === 403 && e.body.second_factor_required === true;
}
