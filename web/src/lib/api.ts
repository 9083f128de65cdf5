// The app's only door to the server: RADRIS's REST API and DICOMweb, same origin, with the
// HttpOnly session cookie (no token is ever visible to scripts). Errors are RFC 9457 problem
// documents; they surface as ApiError with the server's own explanation.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    /** the whole problem document, with any extension members (e.g. a passkey challenge) */
    readonly body: Record<string, unknown> = {},
  ) {
    super(detail ? `${title}: ${detail}` : title);
  }
}

export interface Study {
  study_uid: string;
  patient_id: string;
  patient_name: string;
  patient_birth_date: string;
  patient_sex: string;
  study_date: string;
  study_time: string;
  accession_number: string;
  description: string;
  modalities: string[];
  num_series: number;
  num_instances: number;
  received_at: number;
}

export interface StudyPage {
  items: Study[];
  next_cursor?: string;
}

export interface Series {
  series_uid: string;
  study_uid: string;
  modality: string;
  series_number: string;
  description: string;
  body_part: string;
  num_instances: number;
}

export interface StudyDetail {
  study: Study;
  series: Series[];
}

export interface WhoAmI {
  tenant: string;
  user: string;
  scopes: string[];
}

export interface SignedIn extends WhoAmI {
  idle_timeout_s: number;
  lifetime_s: number;
}

/** The saved measurements and key images of one study for the signed-in user. */
export interface AnnotationDoc {
  version: number;
  updated_at?: number;
  document: { measurements: unknown[]; keyImages: unknown[] };
}

/** DICOM JSON (PS3.18 F.2): tag → {vr, Value}. */
export type DicomJson = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string }>;

export const DICOMWEB_ROOT = '/dicom-web';

/** Called whenever the server says the session is gone (401), so the app can sign in again. */
let onUnauthenticated: () => void = () => {};
export function setUnauthenticatedHandler(f: () => void): void {
  onUnauthenticated = f;
}

async function problemOf(res: Response): Promise<ApiError> {
  let title = res.statusText || `HTTP ${res.status}`;
  let detail = '';
  let doc: Record<string, unknown> = {};
  try {
    const body = await res.json();
    if (body && typeof body === 'object') {
      doc = body;
      title = typeof body.title === 'string' ? body.title : title;
      detail = typeof body.detail === 'string' ? body.detail : '';
    }
  } catch {
    // not a problem document: keep the status line
  }
  return new ApiError(res.status, title, detail, doc);
}

/**
 * The answer itself (for bodies that are not JSON: a template's XHTML, a rendered fragment),
 * after the same checks as `request`: a problem document becomes an ApiError.
 */
export async function requestResponse(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has('Accept')) headers.set('Accept', 'application/json');
  if (init.body && !headers.has('Content-Type')) headers.set('Content-Type', 'application/json');
  const res = await fetch(path, { ...init, headers, credentials: 'same-origin' });
  if (res.status === 401 && !path.startsWith('/api/v1/auth/')) onUnauthenticated();
  if (!res.ok) throw await problemOf(res);
  return res;
}

export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await requestResponse(path, init);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export function login(tenant: string, user: string, password: string, code?: string): Promise<SignedIn> {
  return request<SignedIn>('/api/v1/auth/login', {
    method: 'POST',
    body: JSON.stringify(code ? { tenant, user, password, code } : { tenant, user, password }),
  });
}

/** What the sign-in form may offer (public). */
export function signInMethods(): Promise<{ password: boolean; oidc: boolean; oidc_tenant?: string }> {
  return request('/api/v1/auth/methods');
}

export function logout(): Promise<void> {
  return request<void>('/api/v1/auth/logout', { method: 'POST' });
}

export function whoami(): Promise<WhoAmI> {
  return request<WhoAmI>('/api/v1/whoami');
}

export function searchStudies(params: URLSearchParams): Promise<StudyPage> {
  return request<StudyPage>(`/api/v1/studies?${params.toString()}`);
}

export function getStudy(studyUid: string): Promise<StudyDetail> {
  return request<StudyDetail>(`/api/v1/studies/${encodeURIComponent(studyUid)}`);
}

/** Every study of a patient (the timeline and the priors), newest first. */
export async function studiesOfPatient(patientId: string): Promise<Study[]> {
  const p = new URLSearchParams({ patient_id: patientId, sort: '-date', limit: '200' });
  return (await searchStudies(p)).items;
}

/** WADO-RS series metadata: one DICOM JSON object per instance. */
export function seriesMetadata(studyUid: string, seriesUid: string): Promise<DicomJson[]> {
  return request<DicomJson[]>(
    `${DICOMWEB_ROOT}/studies/${encodeURIComponent(studyUid)}/series/${encodeURIComponent(seriesUid)}/metadata`,
    { headers: { Accept: 'application/dicom+json' } },
  );
}

export function seriesThumbnailUrl(studyUid: string, seriesUid: string): string {
  return `${DICOMWEB_ROOT}/studies/${encodeURIComponent(studyUid)}/series/${encodeURIComponent(seriesUid)}/thumbnail`;
}

export function studyThumbnailUrl(studyUid: string): string {
  return `${DICOMWEB_ROOT}/studies/${encodeURIComponent(studyUid)}/thumbnail`;
}

export function getAnnotations(studyUid: string): Promise<AnnotationDoc> {
  return request<AnnotationDoc>(`/api/v1/studies/${encodeURIComponent(studyUid)}/annotations`);
}

export function putAnnotations(studyUid: string, version: number, document: AnnotationDoc['document']): Promise<AnnotationDoc> {
  return request<AnnotationDoc>(`/api/v1/studies/${encodeURIComponent(studyUid)}/annotations`, {
    method: 'PUT',
    body: JSON.stringify({ version, document }),
  });
}

// --- second factors ------------------------------------------------------------------------

export interface TotpEnrolment {
  secret: string;
  uri: string;
}

export function totpEnrol(): Promise<TotpEnrolment> {
  return request<TotpEnrolment>('/api/v1/auth/totp/enrol', { method: 'POST' });
}

export function totpConfirm(code: string): Promise<{ recovery_codes: string[] }> {
  return request('/api/v1/auth/totp/confirm', { method: 'POST', body: JSON.stringify({ code }) });
}

export interface Passkey {
  credential_id: string;
  name: string;
  algorithm: number;
  sign_count: number;
  created_at: number;
  last_used_at: number;
}

export function listPasskeys(): Promise<Passkey[]> {
  return request<Passkey[]>('/api/v1/auth/webauthn/credentials');
}

export function deletePasskey(id: string): Promise<void> {
  return request<void>(`/api/v1/auth/webauthn/credentials?credential_id=${encodeURIComponent(id)}`, { method: 'DELETE' });
}

/** Create a passkey on this device (the browser asks the authenticator) and register it. */
export async function addPasskey(name: string): Promise<Passkey> {
  const options = await request<Record<string, unknown>>('/api/v1/auth/webauthn/register/start', { method: 'POST' });
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options as never);
  const credential = (await navigator.credentials.create({ publicKey })) as PublicKeyCredential | null;
  if (!credential) throw new ApiError(400, 'No passkey', 'the authenticator created no credential');
  return request<Passkey>('/api/v1/auth/webauthn/register/finish', {
    method: 'POST',
    body: JSON.stringify({ name, credential: credential.toJSON() }),
  });
}

/** Finish a password sign-in with a passkey: `challenge` is the 401 problem document's members. */
export async function passkeySignIn(challenge: Record<string, unknown>): Promise<SignedIn> {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(challenge.webauthn as never);
  const credential = (await navigator.credentials.get({ publicKey })) as PublicKeyCredential | null;
  if (!credential) throw new ApiError(400, 'No passkey', 'the authenticator gave no assertion');
  return request<SignedIn>('/api/v1/auth/webauthn/login/finish', {
    method: 'POST',
    body: JSON.stringify({ mfa_ticket: challenge.mfa_ticket, credential: credential.toJSON() }),
  });
}
