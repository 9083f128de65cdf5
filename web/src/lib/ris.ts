// The RIS REST API (`/api/v1/ris`, docs/ris-api.md): patients, the procedure catalogue, orders
// and their state machine, resources and appointments, worklists, routing, reconciliation and
// analytics. Same door as api.ts: same-origin fetch with the session cookie, problem documents
// surfacing as ApiError (a 409 on booking carries `conflicts` in `ApiError.body`).

import { ApiError, request } from './api';

export const RIS_ROOT = '/api/v1/ris';

export const ORDER_STATES = [
  'ordered',
  'scheduled',
  'arrived',
  'in_progress',
  'images_complete',
  'preliminary',
  'final',
  'amended',
  'cancelled',
] as const;
export type OrderState = (typeof ORDER_STATES)[number];

export const PRIORITIES = ['stat', 'urgent', 'routine'] as const;
export type Priority = (typeof PRIORITIES)[number];

export const APPOINTMENT_STATES = ['booked', 'arrived', 'in_progress', 'completed', 'no_show', 'cancelled'] as const;
export type AppointmentState = (typeof APPOINTMENT_STATES)[number];

/** ISO 8601 UTC, e.g. `2026-11-28T09:30:00Z`. */
export type Time = string;

export interface Patient {
  id: string;
  patient_id: string;
  issuer: string;
  /** DICOM PN `FAMILY^GIVEN` */
  name: string;
  /** `YYYYMMDD` or '' */
  birth_date: string;
  sex: 'M' | 'F' | 'O' | '';
  merged_into: string | null;
  links: string[];
  created_at: Time;
}

export interface NewPatient {
  patient_id: string;
  issuer?: string;
  name: string;
  birth_date?: string;
  sex?: Patient['sex'];
}

export interface Procedure {
  code: string;
  scheme: string;
  name: string;
  modality: string;
  body_part: string;
  duration_min: number;
  preparation: string;
  subspecialty: string;
}

export interface Appointment {
  id: string;
  order_id: string;
  resource_id: string;
  resource_name: string;
  starts_at: Time;
  ends_at: Time;
  state: AppointmentState;
  accession: string;
  patient_name: string;
  procedure_name: string;
  priority: Priority;
  step_id: string;
}

export interface OrderTimes {
  ordered: Time | null;
  scheduled: Time | null;
  arrived: Time | null;
  started: Time | null;
  images_complete: Time | null;
  preliminary: Time | null;
  final: Time | null;
}

export interface Order {
  id: string;
  accession: string;
  state: OrderState;
  priority: Priority;
  reason: string;
  referring_physician: string;
  patient: Pick<Patient, 'id' | 'patient_id' | 'issuer' | 'name' | 'birth_date' | 'sex'>;
  procedure: Pick<Procedure, 'code' | 'name' | 'modality' | 'body_part' | 'duration_min' | 'subspecialty'>;
  study_uid: string | null;
  site: string;
  appointment: Appointment | null;
  assigned_to: string | null;
  assigned_group: string | null;
  assignment_reason: string | null;
  claimed_by: string | null;
  escalated_at: Time | null;
  times: OrderTimes;
  created_at: Time;
  updated_at: Time;
}

export interface HistoryEntry {
  at: Time;
  from: OrderState | null;
  to: OrderState;
  actor: string;
  detail: string;
}

export interface OrderDetail extends Order {
  history: HistoryEntry[];
}

export interface NewOrder {
  patient: string;
  procedure_code: string;
  priority: Priority;
  reason?: string;
  referring_physician?: string;
  accession?: string;
}

export interface Resource {
  id: string;
  kind: 'modality' | 'room' | 'staff';
  name: string;
  modality: string;
  ae_title: string;
  station_name: string;
  site: string;
  subspecialties: string[];
  user_name: string;
  /** `HH:MM` */
  open_from: string;
  /** `HH:MM` */
  open_to: string;
}

export interface Shift {
  id: string;
  resource_id: string;
  starts_at: Time;
  ends_at: Time;
}

export interface AutoScheduleResult {
  placed: Appointment[];
  unplaced: { order_id: string; reason: string }[];
  metrics: { utilisation: number; mean_wait_min: number; stat_mean_wait_min: number; objective: number };
}

export interface TechItem {
  appointment: Appointment;
  order: Order;
}

export interface Rule {
  name: string;
  modality?: string;
  body_part?: string;
  priority?: Priority;
  subspecialty?: string;
  group?: string;
}

export interface Routing {
  rules: Rule[];
  stat_escalation_minutes: number;
}

export interface Unmatched {
  study_uid: string;
  patient_id: string;
  patient_name: string;
  accession: string;
  study_date: string;
  modalities: string[];
  description: string;
  reason: string;
  received_at: Time;
  candidates: Order[];
}

export interface Analytics {
  turnaround: {
    by_modality: {
      modality: string;
      n: number;
      order_to_scan_min: number | null;
      scan_to_preliminary_min: number | null;
      preliminary_to_final_min: number | null;
      order_to_final_min: number | null;
    }[];
    by_radiologist: { radiologist: string; n: number; images_to_preliminary_min: number | null; images_to_final_min: number | null }[];
  };
  queues: Partial<Record<OrderState, number>>;
  reading_load: { radiologist: string; open: number }[];
  utilisation: { resource_id: string; name: string; booked_min: number; open_min: number; utilisation: number }[];
}

export interface Items<T> {
  items: T[];
}

/** A query string from the set (non-empty) parameters, with its `?`, or ''. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

const seg = encodeURIComponent;
const get = <T>(path: string) => request<T>(RIS_ROOT + path);
/** Every write sends a JSON body (`{}` where the route takes none). */
const send = <T>(method: string, path: string, body: unknown) => request<T>(RIS_ROOT + path, { method, body: JSON.stringify(body) });

/** What the user should read of an error: the server's detail verbatim, else its title. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.detail || e.title;
  if (e instanceof Error) return e.message === 'Failed to fetch' ? 'The server cannot be reached.' : e.message;
  return String(e);
}

/** The appointments a 409 on booking names (`conflicts`), or [] for any other error. */
export function conflictsOf(e: unknown): Appointment[] {
  if (!(e instanceof ApiError) || e.status !== 409) return [];
  const c = e.body.conflicts;
  return Array.isArray(c) ? (c as Appointment[]) : [];
}

// --- patients ---------------------------------------------------------------------------

export async function searchPatients(q: string, limit = 20): Promise<Patient[]> {
  return (await get<Items<Patient>>(`/patients${query({ q, limit })}`)).items;
}
export const createPatient = (p: NewPatient) => send<Patient>('POST', '/patients', p);
export const getPatient = (id: string) => get<Patient>(`/patients/${seg(id)}`);
export const updatePatient = (id: string, p: Partial<Pick<Patient, 'name' | 'birth_date' | 'sex'>>) =>
  send<Patient>('PATCH', `/patients/${seg(id)}`, p);
/** `id` is the duplicate: its orders and studies move to `into`. */
export const mergePatient = (id: string, into: string) =>
  send<{ patient: Patient; orders_moved: number; studies_moved: number }>('POST', `/patients/${seg(id)}/merge`, { into });
export const linkPatient = (id: string, other: string) => send<Patient>('POST', `/patients/${seg(id)}/links`, { other });

// --- procedure catalogue -----------------------------------------------------------------

export async function listProcedures(): Promise<Procedure[]> {
  return (await get<Items<Procedure>>('/procedures')).items;
}
export const putProcedure = ({ code, ...rest }: Procedure) => send<Procedure>('PUT', `/procedures/${seg(code)}`, rest);

// --- orders --------------------------------------------------------------------------------

export interface OrderFilter {
  /** one state or several, comma-separated */
  state?: string;
  patient?: string;
  q?: string;
  limit?: number;
}

export async function listOrders(f: OrderFilter = {}): Promise<Order[]> {
  return (await get<Items<Order>>(`/orders${query({ state: f.state, patient: f.patient, q: f.q, limit: f.limit })}`)).items;
}
export const createOrder = (o: NewOrder) => send<Order>('POST', '/orders', o);
export const getOrder = (id: string) => get<OrderDetail>(`/orders/${seg(id)}`);
export const updateOrder = (id: string, p: { priority?: Priority; reason?: string; referring_physician?: string; procedure_code?: string }) =>
  send<Order>('PATCH', `/orders/${seg(id)}`, p);
export const cancelOrder = (id: string, reason: string) => send<Order>('POST', `/orders/${seg(id)}/cancel`, { reason });
export const transitionOrder = (id: string, to: OrderState, detail?: string) =>
  send<Order>('POST', `/orders/${seg(id)}/transition`, detail ? { to, detail } : { to });

// --- resources, shifts, appointments -------------------------------------------------------

export async function listResources(): Promise<Resource[]> {
  return (await get<Items<Resource>>('/resources')).items;
}
export const createResource = (r: Omit<Resource, 'id'>) => send<Resource>('POST', '/resources', r);
export async function listShifts(from?: Time, to?: Time): Promise<Shift[]> {
  return (await get<Items<Shift>>(`/shifts${query({ from, to })}`)).items;
}
export const createShift = (s: Omit<Shift, 'id'>) => send<Shift>('POST', '/shifts', s);
export async function listAppointments(from?: Time, to?: Time, resource?: string): Promise<Appointment[]> {
  return (await get<Items<Appointment>>(`/appointments${query({ from, to, resource })}`)).items;
}
/** Book: the end is the start plus the procedure's duration. 409 → `conflictsOf(e)`. */
export const bookAppointment = (order_id: string, resource_id: string, starts_at: Time) =>
  send<Appointment>('POST', '/appointments', { order_id, resource_id, starts_at });
export const arriveAppointment = (id: string) => send<Appointment>('POST', `/appointments/${seg(id)}/arrive`, {});
export const noShowAppointment = (id: string) => send<Appointment>('POST', `/appointments/${seg(id)}/no-show`, {});
export const cancelAppointment = (id: string) => send<Appointment>('POST', `/appointments/${seg(id)}/cancel`, {});
export const autoSchedule = (p: { order_ids?: string[]; from?: Time; to?: Time } = {}) => send<AutoScheduleResult>('POST', '/schedule/auto', p);

// --- worklists and routing -----------------------------------------------------------------

export async function technologistWorklist(date: string, resource?: string): Promise<TechItem[]> {
  return (await get<Items<TechItem>>(`/worklist/technologist${query({ date, resource })}`)).items;
}

export interface ReadingFilter {
  /** `mine`, `all` or `group:<g>` */
  scope: string;
  modality?: string;
  body_part?: string;
  priority?: string;
  state?: string;
  site?: string;
}

export async function readingWorklist(f: ReadingFilter): Promise<Order[]> {
  return (await get<Items<Order>>(`/reading${query({ ...f })}`)).items;
}
export const claimCase = (orderId: string) => send<Order>('POST', `/reading/${seg(orderId)}/claim`, {});
export const unclaimCase = (orderId: string) => send<Order>('POST', `/reading/${seg(orderId)}/unclaim`, {});
export const getRouting = () => get<Routing>('/routing');
export const putRouting = (r: Routing) => send<Routing>('PUT', '/routing', r);

// --- reconciliation and analytics -------------------------------------------------------------

export async function listUnmatched(): Promise<Unmatched[]> {
  return (await get<Items<Unmatched>>('/reconciliation')).items;
}
export const resolveUnmatched = (studyUid: string, orderId: string) =>
  send<Order>('POST', `/reconciliation/${seg(studyUid)}/resolve`, { order_id: orderId });

export const getAnalytics = (from?: Time, to?: Time) => get<Analytics>(`/analytics${query({ from, to })}`);
