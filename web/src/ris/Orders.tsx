// Order entry: find or register the patient, pick a procedure from the catalogue, priority,
// reason and referring physician → an order (the server gives its accession). Below, the
// orders with their states: filter, change priority, cancel with a reason, history on expand.

import { Fragment, useCallback, useEffect, useState, type FormEvent } from 'react';
import { dicomDate, personName } from '../lib/format';
import {
  ORDER_STATES,
  PRIORITIES,
  cancelOrder,
  createOrder,
  createPatient,
  errorText,
  listOrders,
  listProcedures,
  searchPatients,
  updateOrder,
  type Order,
  type Patient,
  type Priority,
  type Procedure,
} from '../lib/ris';
import { canCancel, dateTime, isOpen, priorityLabel, stateLabel } from '../lib/risview';
import { AppointmentChip, ErrorLine, Notice, OrderDetails, PatientCell, PriorityChip, StateChip, type PageProps } from './common';

const emptyPatient = { patient_id: '', issuer: '', family: '', given: '', birth: '', sex: '' as Patient['sex'] };

export function Orders(_: PageProps) {
  // the patient
  const [q, setQ] = useState('');
  const [found, setFound] = useState<Patient[]>();
  const [patient, setPatient] = useState<Patient>();
  const [registering, setRegistering] = useState(false);
  const [np, setNp] = useState(emptyPatient);
  // the order
  const [procedures, setProcedures] = useState<Procedure[]>([]);
  const [code, setCode] = useState('');
  const [priority, setPriority] = useState<Priority>('routine');
  const [reason, setReason] = useState('');
  const [referring, setReferring] = useState('');
  const [created, setCreated] = useState<Order>();
  // the list
  const [filterQ, setFilterQ] = useState('');
  const [filterState, setFilterState] = useState('');
  const [onlyPatient, setOnlyPatient] = useState(false);
  const [applied, setApplied] = useState({ q: '', state: '', patient: '' });
  const [orders, setOrders] = useState<Order[]>([]);
  const [expanded, setExpanded] = useState<string>();
  const [cancelling, setCancelling] = useState<string>();
  const [cancelReason, setCancelReason] = useState('');
  const [stamp, setStamp] = useState(0);

  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    listProcedures()
      .then(setProcedures)
      .catch((e) => setError(errorText(e)));
  }, []);

  const refresh = useCallback(() => {
    listOrders({ q: applied.q, state: applied.state, patient: applied.patient, limit: 200 })
      .then((o) => {
        setOrders(o);
        setStamp((s) => s + 1);
      })
      .catch((e) => setError(errorText(e)));
  }, [applied]);
  useEffect(refresh, [refresh]);

  const act = async (what: () => Promise<unknown>, done?: string) => {
    setBusy(true);
    setError(undefined);
    setNotice(undefined);
    try {
      await what();
      if (done) setNotice(done);
      return true;
    } catch (e) {
      setError(errorText(e));
      return false;
    } finally {
      setBusy(false);
    }
  };

  const find = (e: FormEvent) => {
    e.preventDefault();
    void act(async () => setFound(await searchPatients(q.trim(), 50)));
  };

  const register = (e: FormEvent) => {
    e.preventDefault();
    void act(async () => {
      const p = await createPatient({
        patient_id: np.patient_id.trim(),
        issuer: np.issuer.trim() || undefined,
        name: [np.family.trim(), np.given.trim()].join('^').replace(/\^$/, ''),
        birth_date: np.birth ? np.birth.replaceAll('-', '') : undefined,
        sex: np.sex || undefined,
      });
      setPatient(p);
      setRegistering(false);
      setNp(emptyPatient);
      setNotice(`Patient ${personName(p.name)} (${p.patient_id}) registered.`);
    });
  };

  const procedure = procedures.find((p) => p.code === code);

  const order = (e: FormEvent) => {
    e.preventDefault();
    if (!patient || !code) return;
    void act(async () => {
      const o = await createOrder({
        patient: patient.id,
        procedure_code: code,
        priority,
        reason: reason.trim() || undefined,
        referring_physician: referring.trim() || undefined,
      });
      setCreated(o);
      refresh();
    });
  };

  const applyFilter = (e: FormEvent) => {
    e.preventDefault();
    setApplied({ q: filterQ.trim(), state: filterState, patient: onlyPatient && patient ? patient.id : '' });
  };

  return (
    <main className="ris-page orders-page">
      <h2>Order entry</h2>
      <ErrorLine error={error} />
      <Notice text={notice} />
      <div className="ris-columns">
        <section className="panel" aria-labelledby="patient-h">
          <h3 id="patient-h">Patient</h3>
          {patient ? (
            <p data-testid="selected-patient">
              <strong>{personName(patient.name)}</strong> <span className="muted">{patient.patient_id}</span>
              {patient.issuer && <span className="muted"> ({patient.issuer})</span>} {patient.sex} {dicomDate(patient.birth_date)}{' '}
              <button className="link" onClick={() => setPatient(undefined)}>
                Change
              </button>
            </p>
          ) : (
            <p className="muted">No patient chosen.</p>
          )}
          <form className="row-form" onSubmit={find} role="search" aria-label="Find a patient">
            <input aria-label="Find patient" placeholder="Name or patient ID" value={q} onChange={(e) => setQ(e.target.value)} />
            <button type="submit" disabled={busy}>
              Find
            </button>
            <button type="button" onClick={() => setRegistering((r) => !r)} aria-expanded={registering}>
              New patient
            </button>
          </form>
          {found && (
            <table className="ris-table compact" aria-label="Patients found">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>ID</th>
                  <th>Birth date</th>
                  <th>Sex</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {found.map((p) => (
                  <tr key={p.id} className={patient?.id === p.id ? 'selected' : ''}>
                    <td>{personName(p.name)}</td>
                    <td>
                      {p.patient_id}
                      {p.issuer && <small className="muted"> {p.issuer}</small>}
                    </td>
                    <td>{dicomDate(p.birth_date)}</td>
                    <td>{p.sex}</td>
                    <td>
                      <button onClick={() => setPatient(p)} aria-label={`Select ${personName(p.name)} ${p.patient_id}`}>
                        Select
                      </button>
                    </td>
                  </tr>
                ))}
                {found.length === 0 && (
                  <tr>
                    <td colSpan={5} className="muted">
                      No patient matches.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          )}
          {registering && (
            <form className="grid-form" onSubmit={register} aria-label="New patient">
              <label>
                Patient ID <input required value={np.patient_id} onChange={(e) => setNp({ ...np, patient_id: e.target.value })} />
              </label>
              <label>
                Issuer <input value={np.issuer} placeholder="optional" onChange={(e) => setNp({ ...np, issuer: e.target.value })} />
              </label>
              <label>
                Family name <input required value={np.family} onChange={(e) => setNp({ ...np, family: e.target.value })} />
              </label>
              <label>
                Given name <input value={np.given} onChange={(e) => setNp({ ...np, given: e.target.value })} />
              </label>
              <label>
                Birth date <input type="date" value={np.birth} onChange={(e) => setNp({ ...np, birth: e.target.value })} />
              </label>
              <label>
                Sex{' '}
                <select aria-label="Sex" value={np.sex} onChange={(e) => setNp({ ...np, sex: e.target.value as Patient['sex'] })}>
                  <option value="">Unknown</option>
                  <option value="F">F</option>
                  <option value="M">M</option>
                  <option value="O">O</option>
                </select>
              </label>
              <div className="form-actions">
                <button type="submit" className="primary" disabled={busy}>
                  Register patient
                </button>
              </div>
            </form>
          )}
        </section>

        <section className="panel" aria-labelledby="order-h">
          <h3 id="order-h">New order</h3>
          <form className="grid-form" onSubmit={order} aria-label="New order">
            <label className="wide">
              Procedure{' '}
              <select aria-label="Procedure" required value={code} onChange={(e) => setCode(e.target.value)}>
                <option value="">Choose a procedure…</option>
                {procedures.map((p) => (
                  <option key={p.code} value={p.code}>
                    {p.name} ({p.modality}, {p.duration_min} min)
                  </option>
                ))}
              </select>
            </label>
            {procedure && (
              <p className="wide procedure-info" data-testid="procedure-info">
                <strong>{procedure.modality}</strong> {procedure.body_part} · {procedure.duration_min} min · code {procedure.code}
                {procedure.scheme && <span className="muted"> ({procedure.scheme})</span>}
                <br />
                <span className="muted">Preparation:</span> {procedure.preparation || 'none'}
              </p>
            )}
            <label>
              Priority{' '}
              <select aria-label="Priority" value={priority} onChange={(e) => setPriority(e.target.value as Priority)}>
                {PRIORITIES.map((p) => (
                  <option key={p} value={p}>
                    {priorityLabel(p)}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Referring physician <input value={referring} onChange={(e) => setReferring(e.target.value)} placeholder="FAMILY^Given" />
            </label>
            <label className="wide">
              Reason <input value={reason} onChange={(e) => setReason(e.target.value)} placeholder="Clinical question" />
            </label>
            <div className="form-actions wide">
              <button type="submit" className="primary" disabled={busy || !patient || !code}>
                Create order
              </button>
              {!patient && <span className="muted"> Choose or register a patient first.</span>}
            </div>
          </form>
          {created && (
            <p className="notice" role="status" data-testid="created-order">
              Order <strong data-testid="created-accession">{created.accession}</strong> created for {personName(created.patient.name)}:{' '}
              {created.procedure.name}, {priorityLabel(created.priority)}.
            </p>
          )}
        </section>
      </div>

      <section aria-labelledby="orders-h">
        <h3 id="orders-h">Orders</h3>
        <form className="row-form" onSubmit={applyFilter} aria-label="Filter orders">
          <input aria-label="Search orders" placeholder="Accession or patient name" value={filterQ} onChange={(e) => setFilterQ(e.target.value)} />
          <select aria-label="State filter" value={filterState} onChange={(e) => setFilterState(e.target.value)}>
            <option value="">Any state</option>
            <option value="ordered,scheduled,arrived,in_progress,images_complete,preliminary">Open</option>
            {ORDER_STATES.map((s) => (
              <option key={s} value={s}>
                {stateLabel(s)}
              </option>
            ))}
          </select>
          <label className="check">
            <input type="checkbox" checked={onlyPatient} disabled={!patient} onChange={(e) => setOnlyPatient(e.target.checked)} /> Only this patient
          </label>
          <button type="submit">Filter</button>
          <button type="button" onClick={refresh}>
            Refresh
          </button>
        </form>
        <table className="ris-table" data-testid="orders">
          <thead>
            <tr>
              <th>Accession</th>
              <th>Patient</th>
              <th>Procedure</th>
              <th>Priority</th>
              <th>State</th>
              <th>Ordered</th>
              <th>Appointment</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {orders.map((o) => (
              <Fragment key={o.id}>
                <tr data-accession={o.accession} data-state={o.state} className={expanded === o.id ? 'selected' : ''}>
                  <td>
                    <button className="link" aria-expanded={expanded === o.id} onClick={() => setExpanded(expanded === o.id ? undefined : o.id)} aria-label={`Details of ${o.accession}`}>
                      {o.accession}
                    </button>
                  </td>
                  <td>
                    <PatientCell name={o.patient.name} id={o.patient.patient_id} />
                  </td>
                  <td>
                    {o.procedure.name} <small className="muted">{o.procedure.modality}</small>
                  </td>
                  <td>
                    {isOpen(o.state) ? (
                      <select
                        aria-label={`Priority of ${o.accession}`}
                        value={o.priority}
                        disabled={busy}
                        onChange={(e) => {
                          const p = e.target.value as Priority;
                          void act(() => updateOrder(o.id, { priority: p }), `${o.accession} is now ${priorityLabel(p)}.`).then(refresh);
                        }}
                      >
                        {PRIORITIES.map((p) => (
                          <option key={p} value={p}>
                            {priorityLabel(p)}
                          </option>
                        ))}
                      </select>
                    ) : (
                      <PriorityChip priority={o.priority} />
                    )}
                  </td>
                  <td>
                    <StateChip state={o.state} />
                  </td>
                  <td>{dateTime(o.times.ordered ?? o.created_at)}</td>
                  <td>
                    {o.appointment ? (
                      <>
                        {dateTime(o.appointment.starts_at)} {o.appointment.resource_name} <AppointmentChip state={o.appointment.state} />
                      </>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  <td>
                    {canCancel(o.state) && (
                      <button
                        onClick={() => {
                          setCancelling(cancelling === o.id ? undefined : o.id);
                          setCancelReason('');
                        }}
                        aria-label={`Cancel order ${o.accession}`}
                        aria-expanded={cancelling === o.id}
                      >
                        Cancel
                      </button>
                    )}
                  </td>
                </tr>
                {cancelling === o.id && (
                  <tr className="inline-form">
                    <td colSpan={8}>
                      <form
                        className="row-form"
                        aria-label={`Cancel ${o.accession}`}
                        onSubmit={(e) => {
                          e.preventDefault();
                          void act(() => cancelOrder(o.id, cancelReason.trim()), `${o.accession} cancelled.`).then((ok) => {
                            if (ok) setCancelling(undefined);
                            refresh();
                          });
                        }}
                      >
                        <label>
                          Reason for cancelling {o.accession}{' '}
                          <input required value={cancelReason} onChange={(e) => setCancelReason(e.target.value)} autoFocus />
                        </label>
                        <button type="submit" className="danger" disabled={busy}>
                          Confirm cancel
                        </button>
                        <button type="button" onClick={() => setCancelling(undefined)}>
                          Keep the order
                        </button>
                      </form>
                    </td>
                  </tr>
                )}
                {expanded === o.id && (
                  <tr className="details-row">
                    <td colSpan={8}>
                      <OrderDetails orderId={o.id} stamp={`${stamp}`} />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
            {orders.length === 0 && (
              <tr>
                <td colSpan={8} className="muted">
                  No orders match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
    </main>
  );
}
