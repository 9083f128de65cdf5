// Pure helpers of the RIS pages: state labels, colours and allowed actions (the order state
// machine), local day arithmetic, the scheduling calendar's layout and free slots, duration
// formatting, and the dashboard's chart scales. No DOM, no fetch: tested in ris.test.ts.

import type { Appointment, AppointmentState, Order, OrderState, OrderTimes, Priority, Resource } from './ris';

// --- states, priorities --------------------------------------------------------------------

export const STATE_LABEL: Record<OrderState, string> = {
  ordered: 'Ordered',
  scheduled: 'Scheduled',
  arrived: 'Arrived',
  in_progress: 'In progress',
  images_complete: 'Images complete',
  preliminary: 'Preliminary',
  final: 'Final',
  amended: 'Amended',
  cancelled: 'Cancelled',
};

/** One hue per step of the workflow, readable on the dark theme (text on it is dark). */
export const STATE_COLOUR: Record<OrderState, string> = {
  ordered: '#9aa7b6',
  scheduled: '#4da3ff',
  arrived: '#38c7d6',
  in_progress: '#b48cff',
  images_complete: '#ffb020',
  preliminary: '#f08fd0',
  final: '#4cd27a',
  amended: '#8fd14c',
  cancelled: '#6b7682',
};

export const APPOINTMENT_LABEL: Record<AppointmentState, string> = {
  booked: 'Booked',
  arrived: 'Arrived',
  in_progress: 'In progress',
  completed: 'Completed',
  no_show: 'No-show',
  cancelled: 'Cancelled',
};

export const PRIORITY_LABEL: Record<Priority, string> = { stat: 'STAT', urgent: 'Urgent', routine: 'Routine' };
export const PRIORITY_COLOUR: Record<Priority, string> = { stat: '#ff6b6b', urgent: '#ffb020', routine: '#4da3ff' };

const has = <K extends string>(o: Record<K, string>, k: string): k is K => Object.prototype.hasOwnProperty.call(o, k);

export function stateLabel(s: string): string {
  return has(STATE_LABEL, s) ? STATE_LABEL[s] : s;
}
export function stateColour(s: string): string {
  return has(STATE_COLOUR, s) ? STATE_COLOUR[s] : '#8797a8';
}
export function appointmentLabel(s: string): string {
  return has(APPOINTMENT_LABEL, s) ? APPOINTMENT_LABEL[s] : s;
}
export function priorityLabel(p: string): string {
  return has(PRIORITY_LABEL, p) ? PRIORITY_LABEL[p] : p;
}
export function priorityColour(p: string): string {
  return has(PRIORITY_COLOUR, p) ? PRIORITY_COLOUR[p] : '#8797a8';
}

// --- the order state machine ---------------------------------------------------------------

/** ordered → scheduled → arrived → in_progress → images_complete → preliminary → final → amended */
const NEXT: Partial<Record<OrderState, OrderState>> = {
  ordered: 'scheduled',
  scheduled: 'arrived',
  arrived: 'in_progress',
  in_progress: 'images_complete',
  images_complete: 'preliminary',
  preliminary: 'final',
  final: 'amended',
};

export function nextState(s: OrderState): OrderState | undefined {
  return NEXT[s];
}

/** Cancelling is allowed until a report exists (before `preliminary`). */
export function canCancel(s: OrderState): boolean {
  return s === 'ordered' || s === 'scheduled' || s === 'arrived' || s === 'in_progress' || s === 'images_complete';
}

export function canTransition(from: OrderState, to: OrderState): boolean {
  return NEXT[from] === to || (to === 'cancelled' && canCancel(from));
}

/** Reported: a preliminary or final report exists. */
export function isReported(s: OrderState): boolean {
  return s === 'preliminary' || s === 'final' || s === 'amended';
}

/** The procedure may still change (before the exam starts). */
export function canChangeProcedure(s: OrderState): boolean {
  return s === 'ordered' || s === 'scheduled' || s === 'arrived';
}

/** Open: neither finished (final, amended) nor cancelled. */
export function isOpen(s: OrderState): boolean {
  return s !== 'final' && s !== 'amended' && s !== 'cancelled';
}

export type OrderAction = 'book' | 'arrive' | 'no_show' | 'start' | 'complete' | 'preliminary' | 'final' | 'amend' | 'cancel';

export const ACTION_LABEL: Record<OrderAction, string> = {
  book: 'Book',
  arrive: 'Arrive',
  no_show: 'No-show',
  start: 'Start exam',
  complete: 'Exam complete',
  preliminary: 'Preliminary',
  final: 'Final',
  amend: 'Amend',
  cancel: 'Cancel',
};

/** The order state an action's transition leads to (`book`, `arrive`, `no_show` go through appointments). */
export const ACTION_TARGET: Partial<Record<OrderAction, OrderState>> = {
  start: 'in_progress',
  complete: 'images_complete',
  preliminary: 'preliminary',
  final: 'final',
  amend: 'amended',
  cancel: 'cancelled',
};

/**
 * What can be done with an order in this state. Arrival and no-show need a booked appointment
 * (they are appointment actions whose order follows).
 */
export function orderActions(state: OrderState, appointment?: Pick<Appointment, 'state'> | null): OrderAction[] {
  const a: OrderAction[] = [];
  switch (state) {
    case 'ordered':
      a.push('book');
      break;
    case 'scheduled':
      if (!appointment || appointment.state === 'booked') a.push('arrive', 'no_show');
      break;
    case 'arrived':
      a.push('start');
      break;
    case 'in_progress':
      a.push('complete');
      break;
    case 'images_complete':
      a.push('preliminary');
      break;
    case 'preliminary':
      a.push('final');
      break;
    case 'final':
      a.push('amend');
      break;
    default:
      break;
  }
  if (canCancel(state)) a.push('cancel');
  return a;
}

/** Appointment actions: only a booked appointment can be arrived, missed or cancelled. */
export function appointmentActions(s: AppointmentState): ('arrive' | 'no_show' | 'cancel')[] {
  return s === 'booked' ? ['arrive', 'no_show', 'cancel'] : [];
}

/** An appointment that holds its slot (a cancelled one frees it). */
export function holdsSlot(a: Pick<Appointment, 'state'>): boolean {
  return a.state !== 'cancelled';
}

// --- local days and times ------------------------------------------------------------------

const pad = (n: number) => String(n).padStart(2, '0');

/** The local calendar day of a time, `YYYY-MM-DD`. */
export function isoDay(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Local midnight at the start of `YYYY-MM-DD`. */
export function dayStart(day: string): Date {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d);
}

export function addDays(day: string, n: number): string {
  const d = dayStart(day);
  d.setDate(d.getDate() + n);
  return isoDay(d);
}

/** The UTC instants bounding a local day, for `from`/`to` queries. */
export function dayRange(day: string): { from: string; to: string } {
  return { from: dayStart(day).toISOString(), to: dayStart(addDays(day, 1)).toISOString() };
}

/** `HH:MM` → minutes after midnight (NaN when malformed). */
export function hmToMin(hm: string): number {
  const m = /^(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?$/.exec(hm.trim());
  return m ? +m[1] * 60 + +m[2] : NaN;
}

export function minToHm(min: number): string {
  const m = ((Math.round(min) % 1440) + 1440) % 1440;
  return `${pad(Math.floor(m / 60))}:${pad(m % 60)}`;
}

/** The local time `HH:MM` on a local day as an instant. */
export function atLocal(day: string, hm: string): Date {
  const d = dayStart(day);
  const min = hmToMin(hm);
  d.setHours(Math.floor(min / 60), min % 60, 0, 0);
  return d;
}

/** Local `HH:MM` of an ISO time. */
export function hhmm(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Local `YYYY-MM-DD HH:MM` of an ISO time. */
export function dateTime(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : `${isoDay(d)} ${hhmm(iso)}`;
}

/** Minutes from the start of a local day to an instant (may be negative or past 1440). */
export function minutesIntoDay(day: string, iso: string): number {
  return (new Date(iso).getTime() - dayStart(day).getTime()) / 60_000;
}

/** Opening hours as minutes of the day; a closing time at or before the opening is the next day. */
export function openingMinutes(r: Pick<Resource, 'open_from' | 'open_to'>): { from: number; to: number } | null {
  const from = hmToMin(r.open_from ?? '');
  let to = hmToMin(r.open_to ?? '');
  if (Number.isNaN(from) || Number.isNaN(to)) return null;
  if (to <= from) to += 1440;
  return { from, to };
}

// --- durations and turnaround ----------------------------------------------------------------

export function minutesBetween(a: string | null | undefined, b: string | null | undefined): number | null {
  if (!a || !b) return null;
  const d = (new Date(b).getTime() - new Date(a).getTime()) / 60_000;
  return Number.isFinite(d) ? d : null;
}

/** `45 min`, `1 h 05 min`, `2 d 3 h`; `—` when unknown. */
export function formatMinutes(min: number | null | undefined): string {
  if (min === null || min === undefined || !Number.isFinite(min)) return '—';
  if (min < 0) return `−${formatMinutes(-min)}`;
  if (min < 1) return min === 0 ? '0 min' : '<1 min';
  const total = Math.round(min);
  if (total < 60) return `${total} min`;
  if (total < 24 * 60) return `${Math.floor(total / 60)} h ${pad(total % 60)} min`;
  const days = Math.floor(total / 1440);
  const hours = Math.floor((total % 1440) / 60);
  return hours ? `${days} d ${hours} h` : `${days} d`;
}

/** Short axis labels: `45m`, `1.5h`, `12h`, `2.5d`. */
export function compactMinutes(min: number): string {
  if (!Number.isFinite(min)) return '—';
  const trim = (x: string) => x.replace(/\.0$/, '');
  if (Math.abs(min) < 60) return `${Math.round(min)}m`;
  if (Math.abs(min) < 48 * 60) return `${trim((min / 60).toFixed(Math.abs(min) < 600 ? 1 : 0))}h`;
  return `${trim((min / 1440).toFixed(1))}d`;
}

export interface Turnaround {
  orderToScan: number | null;
  scanToPreliminary: number | null;
  preliminaryToFinal: number | null;
  orderToFinal: number | null;
}

/** The steps of one order's turnaround (scan = the exam's start, else its images complete). */
export function turnaround(t: OrderTimes): Turnaround {
  const scan = t.started ?? t.images_complete;
  return {
    orderToScan: minutesBetween(t.ordered, scan),
    scanToPreliminary: minutesBetween(scan, t.preliminary),
    preliminaryToFinal: minutesBetween(t.preliminary, t.final),
    orderToFinal: minutesBetween(t.ordered, t.final),
  };
}

/** How long a reading case has waited since its images were complete, at `now`. */
export function waitingMinutes(o: Pick<Order, 'times'>, now: Date = new Date()): number | null {
  return minutesBetween(o.times.images_complete, now.toISOString());
}

/** A fraction (0‥1) or a percentage as `73 %`. */
export function percent(u: number | null | undefined): string {
  if (u === null || u === undefined || !Number.isFinite(u)) return '—';
  const p = u <= 1 ? u * 100 : u;
  return `${Math.round(p)} %`;
}

// --- the scheduling calendar ---------------------------------------------------------------------

export interface CalendarBlock {
  appointment: Appointment;
  /** px from the top of the column */
  top: number;
  height: number;
  /** side-by-side position among overlapping blocks: lane `lane` of `lanes` */
  lane: number;
  lanes: number;
}

export interface CalendarColumn {
  resource: Resource;
  /** the open part of the column in px, or null when the hours are unknown */
  open: { top: number; height: number } | null;
  blocks: CalendarBlock[];
}

export interface CalendarLayout {
  /** minutes of the day shown at the top and bottom */
  startMin: number;
  endMin: number;
  pxPerMin: number;
  height: number;
  hours: { label: string; top: number }[];
  columns: CalendarColumn[];
}

export interface CalendarOptions {
  pxPerMin?: number;
  /** the smallest block height in px, so a short exam stays clickable */
  minBlockPx?: number;
  /** show cancelled appointments too */
  showCancelled?: boolean;
}

/** Lanes for overlapping intervals: clusters of transitively overlapping ones share a width. */
export function assignLanes<T>(items: T[], start: (t: T) => number, end: (t: T) => number): { item: T; lane: number; lanes: number }[] {
  const sorted = [...items].sort((a, b) => start(a) - start(b) || end(a) - end(b));
  const out: { item: T; lane: number; lanes: number }[] = [];
  let cluster: { item: T; lane: number; lanes: number }[] = [];
  let laneEnds: number[] = [];
  let clusterEnd = -Infinity;
  const close = () => {
    for (const c of cluster) c.lanes = laneEnds.length;
    out.push(...cluster);
    cluster = [];
    laneEnds = [];
    clusterEnd = -Infinity;
  };
  for (const item of sorted) {
    const s = start(item);
    const e = Math.max(end(item), s);
    if (cluster.length && s >= clusterEnd) close();
    let lane = laneEnds.findIndex((le) => le <= s);
    if (lane < 0) {
      lane = laneEnds.length;
      laneEnds.push(e);
    } else {
      laneEnds[lane] = e;
    }
    cluster.push({ item, lane, lanes: 0 });
    clusterEnd = Math.max(clusterEnd, e);
  }
  close();
  return out;
}

/**
 * A day view: one column per modality resource (and per other resource that has appointments
 * that day), the visible hours spanning every column's opening hours and every appointment
 * (whole hours, 07:00–19:00 when nothing says otherwise), blocks placed by their times.
 */
export function layoutCalendar(day: string, resources: Resource[], appointments: Appointment[], opts: CalendarOptions = {}): CalendarLayout {
  const pxPerMin = opts.pxPerMin ?? 1.5;
  const minBlock = opts.minBlockPx ?? 18;
  const shown = appointments.filter((a) => opts.showCancelled || holdsSlot(a));
  const used = new Set(shown.map((a) => a.resource_id));
  const cols = resources.filter((r) => r.kind === 'modality' || used.has(r.id));

  let lo = Infinity;
  let hi = -Infinity;
  for (const r of cols) {
    const o = openingMinutes(r);
    if (o) {
      lo = Math.min(lo, o.from);
      hi = Math.max(hi, o.to);
    }
  }
  for (const a of shown) {
    if (!cols.some((r) => r.id === a.resource_id)) continue;
    lo = Math.min(lo, minutesIntoDay(day, a.starts_at));
    hi = Math.max(hi, minutesIntoDay(day, a.ends_at));
  }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 7 * 60;
    hi = 19 * 60;
  }
  const startMin = Math.max(0, Math.floor(lo / 60) * 60);
  const endMin = Math.min(24 * 60, Math.max(startMin + 60, Math.ceil(hi / 60) * 60));
  const y = (min: number) => (Math.min(Math.max(min, startMin), endMin) - startMin) * pxPerMin;

  const hours: { label: string; top: number }[] = [];
  for (let m = startMin; m <= endMin; m += 60) hours.push({ label: minToHm(m), top: y(m) });

  const columns = cols.map((resource): CalendarColumn => {
    const o = openingMinutes(resource);
    const open = o ? { top: y(o.from), height: y(o.to) - y(o.from) } : null;
    const mine = shown.filter((a) => a.resource_id === resource.id);
    const laned = assignLanes(
      mine,
      (a) => minutesIntoDay(day, a.starts_at),
      (a) => minutesIntoDay(day, a.ends_at),
    );
    const blocks = laned
      .map(({ item, lane, lanes }) => {
        const top = y(minutesIntoDay(day, item.starts_at));
        const bottom = y(minutesIntoDay(day, item.ends_at));
        return { appointment: item, top, height: Math.max(bottom - top, minBlock), lane, lanes };
      })
      .sort((a, b) => a.top - b.top || a.lane - b.lane);
    return { resource, open, blocks };
  });
  return { startMin, endMin, pxPerMin, height: (endMin - startMin) * pxPerMin, hours, columns };
}

/** The time of day (`HH:MM`, rounded down to `stepMin`) at `px` from the top of the calendar. */
export function timeAtPx(layout: Pick<CalendarLayout, 'startMin' | 'endMin' | 'pxPerMin'>, px: number, stepMin = 15): string {
  const min = layout.startMin + px / layout.pxPerMin;
  const snapped = Math.floor(min / stepMin) * stepMin;
  return minToHm(Math.min(Math.max(snapped, layout.startMin), layout.endMin - stepMin));
}

/**
 * The first start (a multiple of `stepMin` minutes of the day) on a local day where an exam of
 * `durationMin` fits the resource's opening hours without touching a held appointment, not
 * before `notBefore`; null when none.
 */
export function firstFreeSlot(
  day: string,
  resource: Pick<Resource, 'id' | 'open_from' | 'open_to'>,
  appointments: Appointment[],
  durationMin: number,
  notBefore?: Date,
  stepMin = 5,
): Date | null {
  const open = openingMinutes(resource) ?? { from: 0, to: 1440 };
  const busy = appointments
    .filter((a) => a.resource_id === resource.id && holdsSlot(a))
    .map((a) => [minutesIntoDay(day, a.starts_at), minutesIntoDay(day, a.ends_at)] as const)
    .sort((a, b) => a[0] - b[0]);
  const up = (m: number) => Math.ceil(m / stepMin - 1e-9) * stepMin;
  let t = up(open.from);
  if (notBefore) t = Math.max(t, up((notBefore.getTime() - dayStart(day).getTime()) / 60_000));
  for (;;) {
    if (t + durationMin > open.to) return null;
    const clash = busy.find(([s, e]) => s < t + durationMin && e > t);
    if (!clash) break;
    t = up(clash[1]);
  }
  const d = dayStart(day);
  return new Date(d.getTime() + t * 60_000);
}

// --- chart scales ------------------------------------------------------------------------------

/** A round step (1, 2, 2.5 or 5 × 10^k) giving about `ticks` intervals over [0, max]. */
export function niceStep(max: number, ticks = 5): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const raw = max / Math.max(1, ticks);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * mag;
}

/** Steps for an axis of minutes: whole minutes, quarter hours, hours, days, a week. */
export const MINUTE_STEPS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 2880, 4320, 10080];

/** The smallest step of `steps` giving at most `ticks` intervals over [0, max] (else a round one). */
export function stepFrom(steps: number[], max: number, ticks = 5): number {
  if (!(max > 0) || !Number.isFinite(max)) return steps[0] ?? 1;
  const s = steps.find((x) => max / x <= ticks + 1e-9);
  if (s !== undefined) return s;
  const last = steps[steps.length - 1] ?? 1;
  return niceStep(max / last, ticks) * last;
}

/** An axis from 0 to a round maximum at or above `max`, with its ticks (steps from `steps` if given). */
export function niceScale(max: number, ticks = 5, steps?: number[]): { max: number; step: number; ticks: number[] } {
  const step = steps ? stepFrom(steps, max, ticks) : niceStep(max, ticks);
  const top = max > 0 && Number.isFinite(max) ? Math.ceil(max / step - 1e-9) * step : step;
  const out: number[] = [];
  for (let v = 0; v <= top + step / 1e6; v += step) out.push(Math.round(v * 1e9) / 1e9);
  return { max: top, step, ticks: out };
}

export interface BarRect {
  row: number;
  series: number;
  value: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface BarChartLayout {
  width: number;
  height: number;
  plotLeft: number;
  plotWidth: number;
  rowHeight: number;
  scale: { max: number; step: number; ticks: number[] };
  /** x of each tick */
  tickX: number[];
  rects: BarRect[];
  /** the y of each row's centre (for its label) */
  rowY: number[];
}

export interface BarChartOptions {
  mode?: 'stacked' | 'grouped';
  width?: number;
  rowHeight?: number;
  labelWidth?: number;
  /** space right of the plot for the value labels */
  rightPad?: number;
  topPad?: number;
  /** space under the plot for the axis labels */
  axisHeight?: number;
  /** the axis maximum at least this (e.g. 1 for fractions) */
  minMax?: number;
  /** the allowed tick steps (e.g. MINUTE_STEPS for durations) */
  steps?: number[];
}

/**
 * Horizontal bars: one row per category, one value per series (null or ≤ 0 draws nothing);
 * stacked (segments end to end) or grouped (thin bars under each other).
 */
export function barChartLayout(rows: (number | null | undefined)[][], opts: BarChartOptions = {}): BarChartLayout {
  const mode = opts.mode ?? 'stacked';
  const width = opts.width ?? 640;
  const rowHeight = opts.rowHeight ?? 28;
  const plotLeft = opts.labelWidth ?? 130;
  const rightPad = opts.rightPad ?? 70;
  const topPad = opts.topPad ?? 6;
  const axisHeight = opts.axisHeight ?? 22;
  const plotWidth = Math.max(10, width - plotLeft - rightPad);
  const clean = rows.map((r) => r.map((v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0)));
  const dataMax = Math.max(0, ...clean.map((r) => (mode === 'stacked' ? r.reduce((a, b) => a + b, 0) : Math.max(0, ...r))));
  const scale = niceScale(Math.max(dataMax, opts.minMax ?? 0), 5, opts.steps);
  const x = (v: number) => (v / scale.max) * plotWidth;
  const rects: BarRect[] = [];
  const rowY: number[] = [];
  const barBand = rowHeight * 0.7;
  clean.forEach((r, i) => {
    const top = topPad + i * rowHeight + (rowHeight - barBand) / 2;
    rowY.push(topPad + i * rowHeight + rowHeight / 2);
    let acc = 0;
    const n = Math.max(1, r.length);
    r.forEach((v, s) => {
      if (v <= 0) return;
      if (mode === 'stacked') {
        rects.push({ row: i, series: s, value: v, x: plotLeft + x(acc), y: top, width: x(v), height: barBand });
        acc += v;
      } else {
        const h = barBand / n;
        rects.push({ row: i, series: s, value: v, x: plotLeft, y: top + s * h, width: x(v), height: h });
      }
    });
  });
  return {
    width,
    height: topPad + rows.length * rowHeight + axisHeight,
    plotLeft,
    plotWidth,
    rowHeight,
    scale,
    tickX: scale.ticks.map((t) => plotLeft + x(t)),
    rects,
    rowY,
  };
}

// --- reading worklist ---------------------------------------------------------------------------

/** The groups the routing rules name, sorted, once each. */
export function groupsOfRules(rules: { group?: string }[]): string[] {
  return [...new Set(rules.map((r) => r.group?.trim() ?? '').filter(Boolean))].sort();
}

/** `mine`, `all` or `group:<g>` from the tab and the group field. */
export function readingScope(tab: 'mine' | 'groups' | 'all', group: string): string {
  if (tab === 'groups') return group.trim() ? `group:${group.trim()}` : 'mine';
  return tab;
}

/** "Already claimed by X": from the 409's `claimed_by` member, else the order as fetched now. */
export function claimedMessage(body: Record<string, unknown>, current?: { claimed_by: string | null } | null, detail = ''): string {
  const who = typeof body.claimed_by === 'string' && body.claimed_by ? body.claimed_by : current?.claimed_by;
  return who ? `Already claimed by ${who}` : `Already claimed${detail ? `: ${detail}` : ''}`;
}
