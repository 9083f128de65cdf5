import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from './api';
import {
  ORDER_STATES,
  bookAppointment,
  claimCase,
  conflictsOf,
  errorText,
  listOrders,
  query,
  readingWorklist,
  transitionOrder,
  type Appointment,
  type OrderState,
  type Resource,
} from './ris';
import {
  addDays,
  appointmentActions,
  assignLanes,
  atLocal,
  barChartLayout,
  canCancel,
  canTransition,
  claimedMessage,
  compactMinutes,
  dayRange,
  firstFreeSlot,
  formatMinutes,
  MINUTE_STEPS,
  stepFrom,
  groupsOfRules,
  hhmm,
  layoutCalendar,
  minutesBetween,
  nextState,
  niceScale,
  niceStep,
  openingMinutes,
  orderActions,
  percent,
  priorityColour,
  priorityLabel,
  readingScope,
  stateColour,
  stateLabel,
  timeAtPx,
  turnaround,
} from './risview';

const DAY = '2026-11-28';
const at = (hm: string, day = DAY) => atLocal(day, hm).toISOString();

function appt(id: string, resource: string, from: string, to: string, state: Appointment['state'] = 'booked'): Appointment {
  return {
    id,
    order_id: `o-${id}`,
    resource_id: resource,
    resource_name: resource,
    starts_at: at(from),
    ends_at: at(to),
    state,
    accession: `ACC${id}`,
    patient_name: 'DOE^JANE',
    procedure_name: 'CT head',
    priority: 'routine',
    step_id: '',
  };
}

function resource(id: string, open_from = '08:00', open_to = '18:00', kind: Resource['kind'] = 'modality'): Resource {
  return { id, kind, name: id, modality: 'CT', ae_title: id, station_name: id, site: 'main', subspecialties: [], user_name: '', open_from, open_to };
}

describe('state machine', () => {
  it('labels and colours every state, unknown ones passed through', () => {
    for (const s of ORDER_STATES) {
      expect(stateLabel(s)).not.toBe(s.replace('_', ' ') === s ? '' : s);
      expect(stateColour(s)).toMatch(/^#[0-9a-f]{6}$/);
    }
    expect(stateLabel('images_complete')).toBe('Images complete');
    expect(stateLabel('weird')).toBe('weird');
    expect(priorityLabel('stat')).toBe('STAT');
    expect(priorityColour('stat')).not.toBe(priorityColour('routine'));
    expect(new Set(ORDER_STATES.map(stateColour)).size).toBe(ORDER_STATES.length);
  });

  it('moves forward one step at a time', () => {
    const chain: OrderState[] = ['ordered', 'scheduled', 'arrived', 'in_progress', 'images_complete', 'preliminary', 'final', 'amended'];
    for (let i = 0; i + 1 < chain.length; i += 1) {
      expect(nextState(chain[i])).toBe(chain[i + 1]);
      expect(canTransition(chain[i], chain[i + 1])).toBe(true);
      if (i + 2 < chain.length) expect(canTransition(chain[i], chain[i + 2])).toBe(false);
      expect(canTransition(chain[i + 1], chain[i])).toBe(false);
    }
    expect(nextState('amended')).toBeUndefined();
    expect(nextState('cancelled')).toBeUndefined();
  });

  it('cancels only before a report exists', () => {
    const ok: OrderState[] = ['ordered', 'scheduled', 'arrived', 'in_progress', 'images_complete'];
    for (const s of ORDER_STATES) {
      expect(canCancel(s)).toBe(ok.includes(s));
      expect(canTransition(s, 'cancelled')).toBe(ok.includes(s));
    }
  });

  it('offers the actions each state allows', () => {
    expect(orderActions('ordered')).toEqual(['book', 'cancel']);
    expect(orderActions('scheduled', { state: 'booked' })).toEqual(['arrive', 'no_show', 'cancel']);
    expect(orderActions('scheduled', { state: 'cancelled' })).toEqual(['cancel']);
    expect(orderActions('arrived')).toEqual(['start', 'cancel']);
    expect(orderActions('in_progress')).toEqual(['complete', 'cancel']);
    expect(orderActions('images_complete')).toEqual(['preliminary', 'cancel']);
    expect(orderActions('preliminary')).toEqual(['final']);
    expect(orderActions('final')).toEqual(['amend']);
    expect(orderActions('amended')).toEqual([]);
    expect(orderActions('cancelled')).toEqual([]);
    expect(appointmentActions('booked')).toEqual(['arrive', 'no_show', 'cancel']);
    expect(appointmentActions('arrived')).toEqual([]);
  });
});

describe('durations', () => {
  it('formats minutes for people', () => {
    expect(formatMinutes(null)).toBe('—');
    expect(formatMinutes(undefined)).toBe('—');
    expect(formatMinutes(Number.NaN)).toBe('—');
    expect(formatMinutes(0)).toBe('0 min');
    expect(formatMinutes(0.4)).toBe('<1 min');
    expect(formatMinutes(45)).toBe('45 min');
    expect(formatMinutes(59.6)).toBe('1 h 00 min');
    expect(formatMinutes(65)).toBe('1 h 05 min');
    expect(formatMinutes(24 * 60)).toBe('1 d');
    expect(formatMinutes(2 * 1440 + 185)).toBe('2 d 3 h');
    expect(formatMinutes(-5)).toBe('−5 min');
  });

  it('writes short axis labels', () => {
    expect(compactMinutes(45.4)).toBe('45m');
    expect(compactMinutes(90)).toBe('1.5h');
    expect(compactMinutes(120)).toBe('2h');
    expect(compactMinutes(12 * 60)).toBe('12h');
    expect(compactMinutes(3 * 1440 + 720)).toBe('3.5d');
  });

  it('computes turnaround steps from the order times', () => {
    const t = turnaround({
      ordered: '2026-11-28T08:00:00Z',
      scheduled: '2026-11-28T08:05:00Z',
      arrived: '2026-11-28T09:00:00Z',
      started: '2026-11-28T09:10:00Z',
      images_complete: '2026-11-28T09:30:00Z',
      preliminary: '2026-11-28T10:30:00Z',
      final: '2026-11-28T12:00:00Z',
    });
    expect(t).toEqual({ orderToScan: 70, scanToPreliminary: 80, preliminaryToFinal: 90, orderToFinal: 240 });
    const partial = turnaround({ ordered: '2026-11-28T08:00:00Z', scheduled: null, arrived: null, started: null, images_complete: null, preliminary: null, final: null });
    expect(partial.orderToScan).toBeNull();
    expect(minutesBetween('2026-11-28T08:00:00Z', 'garbage')).toBeNull();
  });

  it('shows fractions and percentages alike', () => {
    expect(percent(0.734)).toBe('73 %');
    expect(percent(73.4)).toBe('73 %');
    expect(percent(null)).toBe('—');
  });
});

describe('local days', () => {
  it('steps days across month ends and gives UTC bounds', () => {
    expect(addDays('2026-11-30', 1)).toBe('2026-12-01');
    expect(addDays('2026-01-01', -1)).toBe('2025-12-31');
    const r = dayRange(DAY);
    expect(new Date(r.to).getTime() - new Date(r.from).getTime()).toBeGreaterThanOrEqual(23 * 3600_000);
    expect(hhmm(at('09:05'))).toBe('09:05');
    expect(hhmm('')).toBe('');
  });

  it('reads opening hours, overnight too', () => {
    expect(openingMinutes({ open_from: '08:00', open_to: '18:30' })).toEqual({ from: 480, to: 1110 });
    expect(openingMinutes({ open_from: '20:00', open_to: '06:00' })).toEqual({ from: 1200, to: 1800 });
    expect(openingMinutes({ open_from: '00:00', open_to: '00:00' })).toEqual({ from: 0, to: 1440 });
    expect(openingMinutes({ open_from: '', open_to: '' })).toBeNull();
  });
});

describe('calendar layout', () => {
  it('places blocks by time in one column per modality resource', () => {
    const l = layoutCalendar(DAY, [resource('CT01'), resource('MR01', '07:30', '20:00'), resource('ROOM', '08:00', '18:00', 'room')], [
      appt('1', 'CT01', '09:00', '09:30'),
      appt('2', 'MR01', '10:00', '11:00'),
    ], { pxPerMin: 2 });
    expect(l.columns.map((c) => c.resource.id)).toEqual(['CT01', 'MR01']);
    expect(l.startMin).toBe(7 * 60);
    expect(l.endMin).toBe(20 * 60);
    expect(l.height).toBe(13 * 60 * 2);
    expect(l.hours[0]).toEqual({ label: '07:00', top: 0 });
    expect(l.hours.at(-1)).toEqual({ label: '20:00', top: 13 * 120 });
    const [ct, mr] = l.columns;
    expect(ct.open).toEqual({ top: 120, height: 10 * 120 });
    expect(mr.open).toEqual({ top: 60, height: 12.5 * 120 });
    expect(ct.blocks).toHaveLength(1);
    expect(ct.blocks[0]).toMatchObject({ top: 240, height: 60, lane: 0, lanes: 1 });
    expect(mr.blocks[0]).toMatchObject({ top: 360, height: 120 });
  });

  it('widens the day for appointments outside the hours and keeps short blocks clickable', () => {
    const l = layoutCalendar(DAY, [resource('CT01')], [appt('1', 'CT01', '06:10', '06:15'), appt('2', 'CT01', '18:20', '19:10')], { pxPerMin: 1, minBlockPx: 20 });
    expect(l.startMin).toBe(6 * 60);
    expect(l.endMin).toBe(20 * 60);
    expect(l.columns[0].blocks[0]).toMatchObject({ top: 10, height: 20 });
  });

  it('puts overlapping appointments side by side, cancelled ones out', () => {
    const l = layoutCalendar(DAY, [resource('CT01')], [
      appt('a', 'CT01', '09:00', '10:00'),
      appt('b', 'CT01', '09:30', '10:30'),
      appt('c', 'CT01', '10:00', '10:15'),
      appt('d', 'CT01', '11:00', '11:30'),
      appt('x', 'CT01', '09:00', '09:30', 'cancelled'),
    ]);
    const by = Object.fromEntries(l.columns[0].blocks.map((b) => [b.appointment.id, b]));
    expect(by.x).toBeUndefined();
    expect([by.a.lane, by.a.lanes]).toEqual([0, 2]);
    expect([by.b.lane, by.b.lanes]).toEqual([1, 2]);
    // c starts when a ends: a's lane is free again
    expect([by.c.lane, by.c.lanes]).toEqual([0, 2]);
    expect([by.d.lane, by.d.lanes]).toEqual([0, 1]);
    const all = layoutCalendar(DAY, [resource('CT01')], [appt('x', 'CT01', '09:00', '09:30', 'cancelled')], { showCancelled: true });
    expect(all.columns[0].blocks).toHaveLength(1);
  });

  it('assigns lanes to three-way overlaps', () => {
    const r = assignLanes([[0, 10], [1, 5], [2, 8], [6, 9]], (x) => x[0], (x) => x[1]);
    expect(r.map((x) => [x.lane, x.lanes])).toEqual([[0, 3], [1, 3], [2, 3], [1, 3]]);
  });

  it('falls back to 07:00–19:00 and adds a column for a non-modality resource in use', () => {
    const l = layoutCalendar(DAY, [resource('ROOM', 'x', 'y', 'room')], []);
    expect([l.startMin, l.endMin]).toEqual([7 * 60, 19 * 60]);
    expect(l.columns).toEqual([]);
    const used = layoutCalendar(DAY, [resource('ROOM', '', '', 'room')], [appt('1', 'ROOM', '12:00', '12:30')]);
    expect(used.columns.map((c) => c.resource.id)).toEqual(['ROOM']);
    expect(used.columns[0].open).toBeNull();
  });

  it('turns a click height into a time of day', () => {
    const l = { startMin: 7 * 60, endMin: 19 * 60, pxPerMin: 2 };
    expect(timeAtPx(l, 0)).toBe('07:00');
    expect(timeAtPx(l, 2 * 95)).toBe('08:30');
    expect(timeAtPx(l, 99_999)).toBe('18:45');
  });
});

describe('free slots', () => {
  const ct = resource('CT01', '08:00', '12:00');
  const booked = [appt('1', 'CT01', '08:00', '08:30'), appt('2', 'CT01', '08:40', '09:00'), appt('3', 'CT01', '09:00', '11:50'), appt('4', 'MR01', '08:30', '10:00')];
  it('finds the first gap long enough', () => {
    expect(hhmm(firstFreeSlot(DAY, ct, booked, 10)!.toISOString())).toBe('08:30');
    expect(hhmm(firstFreeSlot(DAY, ct, booked, 10, atLocal(DAY, '08:31'))!.toISOString())).toBe('11:50');
    expect(firstFreeSlot(DAY, ct, booked, 15)).toBeNull();
  });
  it('ignores cancelled appointments and respects a start not before', () => {
    const cancelled = [appt('1', 'CT01', '08:00', '12:00', 'cancelled')];
    expect(hhmm(firstFreeSlot(DAY, ct, cancelled, 30)!.toISOString())).toBe('08:00');
    expect(hhmm(firstFreeSlot(DAY, ct, [], 30, atLocal(DAY, '09:07'))!.toISOString())).toBe('09:10');
    expect(firstFreeSlot(DAY, ct, [], 30, atLocal(DAY, '11:45'))).toBeNull();
    expect(firstFreeSlot(DAY, ct, [], 30, atLocal(addDays(DAY, 1), '07:00'))).toBeNull();
  });
});

describe('chart scales', () => {
  it('rounds axes to readable steps', () => {
    expect(niceStep(100, 5)).toBe(20);
    expect(niceStep(7, 5)).toBe(2);
    expect(niceStep(12, 5)).toBe(2.5);
    expect(niceStep(0)).toBe(1);
    expect(niceScale(93)).toEqual({ max: 100, step: 20, ticks: [0, 20, 40, 60, 80, 100] });
    expect(niceScale(0.73)).toEqual({ max: 0.8, step: 0.2, ticks: [0, 0.2, 0.4, 0.6, 0.8] });
    expect(niceScale(0).max).toBe(1);
    expect(niceScale(40).max).toBe(40);
  });

  it('steps durations in minutes, hours and days', () => {
    expect(stepFrom(MINUTE_STEPS, 48)).toBe(10);
    expect(stepFrom(MINUTE_STEPS, 273)).toBe(60);
    expect(niceScale(2100, 5, MINUTE_STEPS)).toEqual({ max: 2400, step: 480, ticks: [0, 480, 960, 1440, 1920, 2400] });
    expect(stepFrom(MINUTE_STEPS, 100_000)).toBe(20_160);
    expect(stepFrom(MINUTE_STEPS, 0)).toBe(1);
    expect(barChartLayout([[95, 48, 130]], { steps: MINUTE_STEPS }).scale).toMatchObject({ max: 300, step: 60 });
  });

  it('lays out stacked and grouped bars', () => {
    const stacked = barChartLayout([[10, 20, null], [40, 0, 30]], { width: 400, labelWidth: 100, rightPad: 0, rowHeight: 20, topPad: 0 });
    expect(stacked.scale.max).toBe(80);
    expect(stacked.plotWidth).toBe(300);
    expect(stacked.rects).toHaveLength(4);
    const [a, b, c, d] = stacked.rects;
    expect(a).toMatchObject({ row: 0, series: 0, x: 100, width: 37.5 });
    expect(b).toMatchObject({ row: 0, series: 1, x: 137.5, width: 75 });
    expect(c).toMatchObject({ row: 1, series: 0, x: 100, width: 150 });
    expect(d).toMatchObject({ row: 1, series: 2, x: 250, width: 112.5 });
    expect(stacked.rowY).toEqual([10, 30]);
    expect(stacked.tickX[0]).toBe(100);
    expect(stacked.tickX.at(-1)).toBe(400);

    const grouped = barChartLayout([[10, 20]], { mode: 'grouped', width: 400, labelWidth: 100, rightPad: 0, rowHeight: 20, topPad: 0 });
    expect(grouped.scale.max).toBe(20);
    expect(grouped.rects.map((r) => [r.x, r.width])).toEqual([[100, 150], [100, 300]]);
    expect(grouped.rects[1].y).toBeGreaterThan(grouped.rects[0].y);
    expect(barChartLayout([[0.5]], { minMax: 1 }).scale.max).toBe(1);
    expect(barChartLayout([]).rects).toEqual([]);
  });
});

describe('reading worklist', () => {
  it('builds the scope and lists the rule groups', () => {
    expect(readingScope('mine', 'x')).toBe('mine');
    expect(readingScope('all', '')).toBe('all');
    expect(readingScope('groups', ' neuro ')).toBe('group:neuro');
    expect(readingScope('groups', '')).toBe('mine');
    expect(groupsOfRules([{ group: 'neuro' }, {}, { group: 'body' }, { group: 'neuro' }, { group: ' ' }])).toEqual(['body', 'neuro']);
  });
  it('says who holds a claimed case', () => {
    expect(claimedMessage({ claimed_by: 'drhouse' })).toBe('Already claimed by drhouse');
    expect(claimedMessage({}, { claimed_by: 'drwho' })).toBe('Already claimed by drwho');
    expect(claimedMessage({}, null, 'held')).toBe('Already claimed: held');
  });
});

describe('RIS client', () => {
  const calls: { url: string; init: RequestInit }[] = [];
  function answer(status: number, body: unknown) {
    calls.length = 0;
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init: RequestInit) => {
        calls.push({ url, init });
        return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': status < 400 ? 'application/json' : 'application/problem+json' } });
      }),
    );
  }
  afterEach(() => vi.unstubAllGlobals());

  it('builds query strings from the set parameters only', () => {
    expect(query({ a: '', b: undefined, c: null })).toBe('');
    expect(query({ state: 'ordered,scheduled', limit: 5 })).toBe('?state=ordered%2Cscheduled&limit=5');
  });

  it('calls the contract paths with JSON bodies', async () => {
    answer(200, { items: [] });
    await listOrders({ state: 'ordered', q: 'ACC1' });
    expect(calls[0].url).toBe('/api/v1/ris/orders?state=ordered&q=ACC1');
    await readingWorklist({ scope: 'group:neuro', modality: 'CT' });
    expect(calls[1].url).toBe('/api/v1/ris/reading?scope=group%3Aneuro&modality=CT');
    answer(200, {});
    await transitionOrder('o/1', 'images_complete');
    expect(calls[0].url).toBe('/api/v1/ris/orders/o%2F1/transition');
    expect(calls[0].init.method).toBe('POST');
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ to: 'images_complete' });
    expect(new Headers(calls[0].init.headers).get('Content-Type')).toBe('application/json');
    await claimCase('o1');
    expect(calls[1].init.body).toBe('{}');
  });

  it('surfaces a booking conflict with its appointments', async () => {
    const conflict = appt('1', 'CT01', '09:00', '09:30');
    answer(409, { type: 'about:blank', title: 'Conflict', status: 409, detail: 'CT01 is booked 09:00–09:30', conflicts: [conflict] });
    const e = await bookAppointment('o2', 'CT01', at('09:00')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(errorText(e)).toBe('CT01 is booked 09:00–09:30');
    expect(conflictsOf(e)).toEqual([conflict]);
    expect(conflictsOf(new ApiError(422, 'Unprocessable', 'unknown procedure', { conflicts: [conflict] }))).toEqual([]);
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ order_id: 'o2', resource_id: 'CT01', starts_at: at('09:00') });
  });
});
