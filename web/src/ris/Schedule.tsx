// The scheduling calendar: a day, one column per modality (closed hours shaded), the booked
// appointments as blocks; beside it the orders waiting for a slot and the booking form (a
// click in a column fills in the resource and time). A 409 shows the appointments in the way.

import { useCallback, useEffect, useMemo, useState, type FormEvent, type MouseEvent } from 'react';
import { personName } from '../lib/format';
import {
  arriveAppointment,
  autoSchedule,
  bookAppointment,
  cancelAppointment,
  conflictsOf,
  errorText,
  listAppointments,
  listOrders,
  listResources,
  noShowAppointment,
  type Appointment,
  type AutoScheduleResult,
  type Order,
  type Resource,
} from '../lib/ris';
import {
  addDays,
  appointmentActions,
  appointmentLabel,
  atLocal,
  dateTime,
  dayRange,
  firstFreeSlot,
  formatMinutes,
  hhmm,
  isoDay,
  layoutCalendar,
  percent,
  priorityColour,
  priorityLabel,
  timeAtPx,
} from '../lib/risview';
import { AppointmentChip, ErrorLine, Notice, PriorityChip, type PageProps } from './common';

const PX_PER_MIN = 1.4;

export function Schedule(_: PageProps) {
  const [day, setDay] = useState(() => isoDay(new Date()));
  const [resources, setResources] = useState<Resource[]>([]);
  const [appointments, setAppointments] = useState<Appointment[]>([]);
  /** the day whose appointments are shown (they load after the day changes) */
  const [loadedDay, setLoadedDay] = useState('');
  const [waiting, setWaiting] = useState<Order[]>([]);
  const [orderId, setOrderId] = useState('');
  const [resourceId, setResourceId] = useState('');
  const [time, setTime] = useState('');
  const [selected, setSelected] = useState<string>();
  const [conflicts, setConflicts] = useState<Appointment[]>();
  const [auto, setAuto] = useState<{ result: AutoScheduleResult; names: Record<string, string> }>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    listResources()
      .then(setResources)
      .catch((e) => setError(errorText(e)));
  }, []);

  const refresh = useCallback(() => {
    const { from, to } = dayRange(day);
    listAppointments(from, to)
      .then((a) => {
        setAppointments(a);
        setLoadedDay(day);
      })
      .catch((e) => setError(errorText(e)));
    listOrders({ state: 'ordered', limit: 500 })
      .then(setWaiting)
      .catch((e) => setError(errorText(e)));
  }, [day]);
  useEffect(refresh, [refresh]);

  const layout = useMemo(() => layoutCalendar(day, resources, appointments, { pxPerMin: PX_PER_MIN }), [day, resources, appointments]);
  const bookable = resources.filter((r) => r.kind === 'modality');
  const order = waiting.find((o) => o.id === orderId);
  const resource = resources.find((r) => r.id === resourceId);

  const begin = () => {
    setBusy(true);
    setError(undefined);
    setNotice(undefined);
    setConflicts(undefined);
  };

  const pick = (o: Order) => {
    setOrderId(o.id);
    if (!resourceId || resources.find((r) => r.id === resourceId)?.modality !== o.procedure.modality) {
      const match = bookable.find((r) => r.modality === o.procedure.modality);
      if (match) setResourceId(match.id);
    }
  };

  const book = async (e: FormEvent) => {
    e.preventDefault();
    if (!order || !resourceId || !time) return;
    begin();
    try {
      const a = await bookAppointment(order.id, resourceId, atLocal(day, time).toISOString());
      setNotice(`Booked ${a.accession || order.accession} on ${a.resource_name || resource?.name} at ${hhmm(a.starts_at)}–${hhmm(a.ends_at)}.`);
      setOrderId('');
      setSelected(a.id);
      refresh();
    } catch (err) {
      setError(errorText(err));
      const c = conflictsOf(err);
      if (c.length) setConflicts(c);
    } finally {
      setBusy(false);
    }
  };

  const freeSlot = () => {
    if (!resource) return;
    setError(undefined);
    const duration = order?.procedure.duration_min ?? 15;
    if (loadedDay !== day) return;
    const slot = firstFreeSlot(day, resource, appointments, duration, new Date());
    if (slot) {
      setTime(hhmm(slot.toISOString()));
      setNotice(undefined);
    } else {
      setTime('');
      setNotice(`No free ${duration}-minute slot on ${resource.name} on ${day}.`);
    }
  };

  const runAuto = async () => {
    begin();
    setAuto(undefined);
    try {
      const names = Object.fromEntries(waiting.map((o) => [o.id, `${o.accession} ${personName(o.patient.name)}`]));
      const result = await autoSchedule({});
      setAuto({ result, names });
      refresh();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const apptAction = async (a: Appointment, what: 'arrive' | 'no_show' | 'cancel') => {
    begin();
    try {
      const f = what === 'arrive' ? arriveAppointment : what === 'no_show' ? noShowAppointment : cancelAppointment;
      const r = await f(a.id);
      setNotice(`${a.accession} ${personName(a.patient_name)}: ${appointmentLabel(r.state)}.`);
      refresh();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const clickColumn = (r: Resource, e: MouseEvent<HTMLDivElement>) => {
    const y = e.clientY - e.currentTarget.getBoundingClientRect().top;
    setResourceId(r.id);
    setTime(timeAtPx(layout, y));
  };

  const select = (id: string) => {
    setSelected(id);
    document.getElementById(`appt-${id}`)?.scrollIntoView({ block: 'nearest' });
  };

  return (
    <main className="ris-page schedule-page">
      <div className="ris-toolbar" role="toolbar" aria-label="Calendar day">
        <h2>Schedule</h2>
        <button onClick={() => setDay(addDays(day, -1))}>Previous day</button>
        <input type="date" aria-label="Day" value={day} onChange={(e) => e.target.value && setDay(e.target.value)} />
        <button onClick={() => setDay(addDays(day, 1))}>Next day</button>
        <button onClick={() => setDay(isoDay(new Date()))}>Today</button>
        <button onClick={refresh}>Refresh</button>
        <button className="primary" onClick={() => void runAuto()} disabled={busy}>
          Auto-schedule all
        </button>
      </div>
      <ErrorLine error={error} />
      {conflicts && (
        <div className="conflicts" data-testid="conflicts" aria-label="Conflicting appointments">
          <p>The slot conflicts with:</p>
          <ul>
            {conflicts.map((c) => (
              <li key={c.id}>
                {dateTime(c.starts_at)}–{hhmm(c.ends_at)} {c.resource_name}: {personName(c.patient_name)}, {c.procedure_name} <small className="muted">{c.accession}</small>
              </li>
            ))}
          </ul>
        </div>
      )}
      <Notice text={notice} />
      {auto && <AutoResult result={auto.result} names={auto.names} onClose={() => setAuto(undefined)} />}

      <div className="schedule-body">
        <div className="calendar-wrap">
          <div className="calendar" data-testid="calendar" data-loaded-day={loadedDay} style={{ gridTemplateColumns: `3.5rem repeat(${layout.columns.length}, minmax(160px, 1fr))` }}>
            <div className="cal-corner" />
            {layout.columns.map((c) => (
              <div className="cal-head" key={c.resource.id}>
                <strong>{c.resource.name}</strong> <span className="muted">{c.resource.modality}</span>
                <div className="small muted">
                  {c.resource.ae_title} · {c.resource.open_from}–{c.resource.open_to}
                </div>
              </div>
            ))}
            <div className="cal-axis" style={{ height: layout.height }} aria-hidden="true">
              {layout.hours.map((h) => (
                <span key={h.label} style={{ top: h.top }}>
                  {h.label}
                </span>
              ))}
            </div>
            {layout.columns.map((c) => (
              <div
                className="cal-col"
                key={c.resource.id}
                style={{ height: layout.height }}
                onClick={(e) => clickColumn(c.resource, e)}
                title={`Click to book on ${c.resource.name}`}
                data-resource={c.resource.ae_title || c.resource.name}
              >
                {layout.hours.map((h) => (
                  <div key={h.label} className="cal-hour" style={{ top: h.top }} />
                ))}
                {c.open && <div className="cal-open" style={{ top: c.open.top, height: c.open.height }} />}
                {c.blocks.map((b) => {
                  const a = b.appointment;
                  return (
                    <button
                      key={a.id}
                      type="button"
                      className={`appt-block appt-${a.state}${b.height < 32 ? ' short' : ''}${selected === a.id ? ' selected' : ''}`}
                      style={{
                        top: b.top,
                        height: b.height,
                        left: `calc(${(b.lane / b.lanes) * 100}% + 2px)`,
                        width: `calc(${100 / b.lanes}% - 4px)`,
                        borderLeftColor: priorityColour(a.priority),
                      }}
                      onClick={(e) => {
                        e.stopPropagation();
                        select(a.id);
                      }}
                      aria-label={`${hhmm(a.starts_at)} ${personName(a.patient_name)}, ${a.procedure_name}, ${priorityLabel(a.priority)}, ${appointmentLabel(a.state)}`}
                      data-accession={a.accession}
                    >
                      <span className="t">{hhmm(a.starts_at)}</span> {personName(a.patient_name)}
                      <span className="p">
                        {a.procedure_name} · {appointmentLabel(a.state)}
                      </span>
                    </button>
                  );
                })}
              </div>
            ))}
          </div>
          {layout.columns.length === 0 && <p className="muted">No modality resources are set up.</p>}
        </div>

        <aside className="schedule-side" aria-label="Booking">
          <form className="grid-form booking" onSubmit={(e) => void book(e)} aria-label="Book an appointment">
            <h3 className="wide">Book</h3>
            <label className="wide">
              Order{' '}
              <select aria-label="Order" required value={orderId} onChange={(e) => setOrderId(e.target.value)}>
                <option value="">Choose an order…</option>
                {waiting.map((o) => (
                  <option key={o.id} value={o.id}>
                    {o.accession} · {personName(o.patient.name)} · {o.procedure.name} ({o.procedure.modality})
                  </option>
                ))}
              </select>
            </label>
            <label className="wide">
              Resource{' '}
              <select aria-label="Resource" required value={resourceId} onChange={(e) => setResourceId(e.target.value)}>
                <option value="">Choose a resource…</option>
                {bookable.map((r) => (
                  <option key={r.id} value={r.id}>
                    {r.name} ({r.modality}, {r.ae_title})
                  </option>
                ))}
              </select>
            </label>
            <label>
              Start time <input type="time" required value={time} step={300} onChange={(e) => setTime(e.target.value)} />
            </label>
            <div className="form-actions">
              <button type="button" onClick={freeSlot} disabled={!resourceId}>
                First free slot
              </button>
            </div>
            {order && (
              <p className="wide small muted">
                {order.procedure.duration_min} min {order.procedure.modality}
                {time ? `, ${day} ${time}–${hhmm(new Date(atLocal(day, time).getTime() + order.procedure.duration_min * 60_000).toISOString())}` : ''}
              </p>
            )}
            <div className="form-actions wide">
              <button type="submit" className="primary" disabled={busy || !orderId || !resourceId || !time}>
                Book
              </button>
            </div>
          </form>

          <h3>Waiting for a slot ({waiting.length})</h3>
          <ul className="waiting" data-testid="unscheduled">
            {waiting.map((o) => (
              <li key={o.id} className={o.id === orderId ? 'selected' : ''} data-accession={o.accession}>
                <PriorityChip priority={o.priority} /> <strong>{personName(o.patient.name)}</strong> <small className="muted">{o.accession}</small>
                <div className="small">
                  {o.procedure.name} · {o.procedure.modality} · {o.procedure.duration_min} min
                </div>
                <button onClick={() => pick(o)} aria-label={`Pick order ${o.accession}`}>
                  Pick
                </button>
              </li>
            ))}
            {waiting.length === 0 && <li className="muted">No order is waiting.</li>}
          </ul>
        </aside>
      </div>

      <section aria-labelledby="day-appts-h">
        <h3 id="day-appts-h">Appointments on {day}</h3>
        <table className="ris-table" data-testid="appointments">
          <thead>
            <tr>
              <th>Time</th>
              <th>Resource</th>
              <th>Patient</th>
              <th>Procedure</th>
              <th>Priority</th>
              <th>State</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {appointments.map((a) => (
              <tr key={a.id} id={`appt-${a.id}`} className={selected === a.id ? 'selected' : ''} data-accession={a.accession}>
                <td>
                  {hhmm(a.starts_at)}–{hhmm(a.ends_at)}
                </td>
                <td>{a.resource_name}</td>
                <td>
                  {personName(a.patient_name)} <small className="muted">{a.accession}</small>
                </td>
                <td>{a.procedure_name}</td>
                <td>
                  <PriorityChip priority={a.priority} />
                </td>
                <td>
                  <AppointmentChip state={a.state} />
                </td>
                <td className="actions">
                  {appointmentActions(a.state).map((act) => (
                    <button key={act} disabled={busy} onClick={() => void apptAction(a, act)} aria-label={`${act === 'arrive' ? 'Arrive' : act === 'no_show' ? 'No-show' : 'Cancel'} ${a.accession}`}>
                      {act === 'arrive' ? 'Arrive' : act === 'no_show' ? 'No-show' : 'Cancel'}
                    </button>
                  ))}
                </td>
              </tr>
            ))}
            {appointments.length === 0 && (
              <tr>
                <td colSpan={7} className="muted">
                  Nothing booked on this day.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
    </main>
  );
}

function AutoResult({ result, names, onClose }: { result: AutoScheduleResult; names: Record<string, string>; onClose: () => void }) {
  const m = result.metrics;
  return (
    <section className="panel auto-result" aria-label="Auto-schedule result" data-testid="auto-result">
      <h3>
        Auto-schedule: {result.placed.length} placed, {result.unplaced.length} not placed{' '}
        <button className="icon" onClick={onClose} aria-label="Close the auto-schedule result">
          ✕
        </button>
      </h3>
      <dl className="metrics">
        <dt>Utilisation</dt>
        <dd>{percent(m.utilisation)}</dd>
        <dt>Mean wait</dt>
        <dd>{formatMinutes(m.mean_wait_min)}</dd>
        <dt>STAT mean wait</dt>
        <dd>{formatMinutes(m.stat_mean_wait_min)}</dd>
        <dt>Objective</dt>
        <dd>{Number.isFinite(m.objective) ? m.objective.toFixed(2) : '—'}</dd>
      </dl>
      {result.placed.length > 0 && (
        <ul>
          {result.placed.map((a) => (
            <li key={a.id}>
              {a.accession} {personName(a.patient_name)}: {a.resource_name} {dateTime(a.starts_at)}
            </li>
          ))}
        </ul>
      )}
      {result.unplaced.length > 0 && (
        <ul className="unplaced">
          {result.unplaced.map((u) => (
            <li key={u.order_id}>
              {names[u.order_id] ?? u.order_id}: <span className="error">{u.reason}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
