// Pieces shared by the RIS pages: state and priority chips, the error line, an order's
// details (times, turnaround, routing, history) on expand.

import { useEffect, useState, type CSSProperties } from 'react';
import { errorText, getOrder, type OrderDetail } from '../lib/ris';
import { personName } from '../lib/format';
import {
  appointmentLabel,
  dateTime,
  formatMinutes,
  priorityColour,
  priorityLabel,
  stateColour,
  stateLabel,
  turnaround,
} from '../lib/risview';

export interface PageProps {
  /** the signed-in user's name (claims, "mine") */
  user: string;
  /** change the page without reloading */
  go: (path: string) => void;
}

const tint = (colour: string) => ({ '--chip': colour }) as CSSProperties;

export function StateChip({ state }: { state: string }) {
  return (
    <span className="chip" style={tint(stateColour(state))} data-state={state}>
      {stateLabel(state)}
    </span>
  );
}

export function PriorityChip({ priority }: { priority: string }) {
  return (
    <span className={`chip priority priority-${priority}`} style={tint(priorityColour(priority))}>
      {priorityLabel(priority)}
    </span>
  );
}

export function AppointmentChip({ state }: { state: string }) {
  return (
    <span className={`chip appt appt-${state}`} data-state={state}>
      {appointmentLabel(state)}
    </span>
  );
}

export function ErrorLine({ error }: { error?: string }) {
  return error ? (
    <p className="error" role="alert">
      {error}
    </p>
  ) : null;
}

export function Notice({ text }: { text?: string }) {
  return text ? (
    <p className="notice" role="status">
      {text}
    </p>
  ) : null;
}

/** `DOE^JANE` → `DOE, Jane`-style, with the patient ID after it. */
export function PatientCell({ name, id }: { name: string; id?: string }) {
  return (
    <>
      {personName(name)}
      {id && <small className="muted"> {id}</small>}
    </>
  );
}

/** An order's times, turnaround, routing and state history, fetched when shown. */
export function OrderDetails({ orderId, stamp }: { orderId: string; stamp?: string }) {
  const [order, setOrder] = useState<OrderDetail>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    let live = true;
    getOrder(orderId)
      .then((o) => live && setOrder(o))
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [orderId, stamp]);
  if (error) return <ErrorLine error={error} />;
  if (!order) return <p className="muted">Loading…</p>;
  const t = turnaround(order.times);
  return (
    <div className="order-details" data-testid="order-details">
      <dl>
        <dt>Procedure</dt>
        <dd>
          {order.procedure.name} <small className="muted">({order.procedure.code}, {order.procedure.modality} {order.procedure.body_part})</small>
        </dd>
        {order.reason && (
          <>
            <dt>Reason</dt>
            <dd>{order.reason}</dd>
          </>
        )}
        {order.referring_physician && (
          <>
            <dt>Referring</dt>
            <dd>{personName(order.referring_physician)}</dd>
          </>
        )}
        {order.appointment && (
          <>
            <dt>Appointment</dt>
            <dd>
              {dateTime(order.appointment.starts_at)} on {order.appointment.resource_name} <AppointmentChip state={order.appointment.state} />
            </dd>
          </>
        )}
        {(order.assigned_to || order.assigned_group) && (
          <>
            <dt>Assigned</dt>
            <dd>
              {order.assigned_to ?? '—'}
              {order.assigned_group && <span className="muted"> (group {order.assigned_group})</span>}
              {order.assignment_reason && <div className="small muted">{order.assignment_reason}</div>}
            </dd>
          </>
        )}
        <dt>Turnaround</dt>
        <dd>
          order→scan {formatMinutes(t.orderToScan)}, scan→preliminary {formatMinutes(t.scanToPreliminary)}, preliminary→final{' '}
          {formatMinutes(t.preliminaryToFinal)}; order→final {formatMinutes(t.orderToFinal)}
        </dd>
      </dl>
      <table className="ris-table compact" aria-label={`History of ${order.accession}`}>
        <thead>
          <tr>
            <th>When</th>
            <th>From</th>
            <th>To</th>
            <th>By</th>
            <th>Detail</th>
          </tr>
        </thead>
        <tbody>
          {(order.history ?? []).map((h, i) => (
            <tr key={i}>
              <td>{dateTime(h.at)}</td>
              <td>{h.from ? stateLabel(h.from) : '—'}</td>
              <td>{stateLabel(h.to)}</td>
              <td>{h.actor}</td>
              <td>{h.detail}</td>
            </tr>
          ))}
          {(order.history ?? []).length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No history.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
