// The technologist's worklist: the day's appointments per resource with their orders' states;
// arrival, no-show, the exam's start and completion, and the images in the viewer.

import { useCallback, useEffect, useMemo, useState } from 'react';
import { personName } from '../lib/format';
import {
  arriveAppointment,
  errorText,
  listResources,
  noShowAppointment,
  technologistWorklist,
  transitionOrder,
  type Resource,
  type TechItem,
} from '../lib/ris';
import { ACTION_LABEL, addDays, hhmm, isoDay, orderActions, stateLabel, type OrderAction } from '../lib/risview';
import { AppointmentChip, ErrorLine, Notice, PriorityChip, StateChip, type PageProps } from './common';

const TECH_ACTIONS: OrderAction[] = ['arrive', 'no_show', 'start', 'complete'];

export function Tech({ go }: PageProps) {
  const [day, setDay] = useState(() => isoDay(new Date()));
  const [resourceId, setResourceId] = useState('');
  const [resources, setResources] = useState<Resource[]>([]);
  const [items, setItems] = useState<TechItem[]>([]);
  const [loaded, setLoaded] = useState('');
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    listResources()
      .then((r) => setResources(r.filter((x) => x.kind === 'modality')))
      .catch((e) => setError(errorText(e)));
  }, []);

  const refresh = useCallback(() => {
    technologistWorklist(day, resourceId || undefined)
      .then((i) => {
        setItems(i);
        setLoaded(day);
      })
      .catch((e) => setError(errorText(e)));
  }, [day, resourceId]);
  useEffect(refresh, [refresh]);

  const groups = useMemo(() => {
    const m = new Map<string, TechItem[]>();
    for (const it of items) {
      const k = it.appointment.resource_name || it.appointment.resource_id;
      m.set(k, [...(m.get(k) ?? []), it]);
    }
    for (const list of m.values()) list.sort((a, b) => a.appointment.starts_at.localeCompare(b.appointment.starts_at));
    return [...m.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  }, [items]);

  const run = async (it: TechItem, action: OrderAction) => {
    setBusy(true);
    setError(undefined);
    setNotice(undefined);
    try {
      const { appointment: a, order: o } = it;
      if (action === 'arrive') await arriveAppointment(a.id);
      else if (action === 'no_show') await noShowAppointment(a.id);
      else if (action === 'start') await transitionOrder(o.id, 'in_progress');
      else if (action === 'complete') await transitionOrder(o.id, 'images_complete');
      setNotice(`${o.accession} ${personName(o.patient.name)}: ${ACTION_LABEL[action]} done.`);
      refresh();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="ris-page tech-page">
      <div className="ris-toolbar" role="toolbar" aria-label="Worklist day">
        <h2>Technologist worklist</h2>
        <button onClick={() => setDay(addDays(day, -1))}>Previous day</button>
        <input type="date" aria-label="Day" value={day} onChange={(e) => e.target.value && setDay(e.target.value)} />
        <button onClick={() => setDay(addDays(day, 1))}>Next day</button>
        <button onClick={() => setDay(isoDay(new Date()))}>Today</button>
        <select aria-label="Resource" value={resourceId} onChange={(e) => setResourceId(e.target.value)}>
          <option value="">All resources</option>
          {resources.map((r) => (
            <option key={r.id} value={r.id}>
              {r.name} ({r.ae_title})
            </option>
          ))}
        </select>
        <button onClick={refresh}>Refresh</button>
      </div>
      <ErrorLine error={error} />
      <Notice text={notice} />
      <div data-testid="tech-day" data-loaded-day={loaded} hidden />
      {loaded === day && groups.length === 0 && <p className="muted">No appointments on {day}.</p>}
      {groups.map(([name, list]) => (
        <section key={name} aria-label={name}>
          <table className="ris-table" data-testid="tech-worklist">
            <caption>
              {name} <span className="muted">({list.length})</span>
            </caption>
            <thead>
              <tr>
                <th>Time</th>
                <th>Patient</th>
                <th>Procedure</th>
                <th>Accession</th>
                <th>Priority</th>
                <th>Appointment</th>
                <th>Order</th>
                <th>Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((it) => {
                const { appointment: a, order: o } = it;
                const actions = orderActions(o.state, a).filter((x) => TECH_ACTIONS.includes(x));
                return (
                  <tr key={a.id} data-accession={o.accession} data-state={o.state}>
                    <td>
                      {hhmm(a.starts_at)}–{hhmm(a.ends_at)}
                    </td>
                    <td>
                      {personName(o.patient.name)} <small className="muted">{o.patient.patient_id}</small>
                    </td>
                    <td>
                      {o.procedure.name} <small className="muted">{o.procedure.modality}</small>
                    </td>
                    <td>{o.accession}</td>
                    <td>
                      <PriorityChip priority={o.priority} />
                    </td>
                    <td>
                      <AppointmentChip state={a.state} />
                    </td>
                    <td>
                      <StateChip state={o.state} />
                    </td>
                    <td className="actions">
                      {actions.map((x) => (
                        <button key={x} disabled={busy} onClick={() => void run(it, x)} aria-label={`${ACTION_LABEL[x]} ${o.accession}`} title={`${ACTION_LABEL[x]} (order is ${stateLabel(o.state)})`}>
                          {ACTION_LABEL[x]}
                        </button>
                      ))}
                      {o.study_uid && hasImages(o.state) && (
                        <button className="link" onClick={() => go(`/viewer/${o.study_uid}`)} aria-label={`Open images of ${o.accession}`}>
                          Open images
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </section>
      ))}
    </main>
  );
}

/** The study UID is assigned when the order is placed; images exist once acquisition began. */
function hasImages(state: string): boolean {
  return !['ordered', 'scheduled', 'arrived', 'cancelled'].includes(state);
}
