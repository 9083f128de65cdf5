// The reconciliation queue: archived studies that matched no order. Pick one of the
// candidate orders (or find one by accession or patient) and resolve: the study takes the
// order's patient and accession, and leaves the queue.

import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { dicomDate, personName } from '../lib/format';
import { errorText, listOrders, listUnmatched, resolveUnmatched, type Order, type Unmatched } from '../lib/ris';
import { dateTime } from '../lib/risview';
import { ErrorLine, Notice, StateChip, type PageProps } from './common';

export function Reconciliation({ go }: PageProps) {
  const [items, setItems] = useState<Unmatched[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();

  const refresh = useCallback(() => {
    listUnmatched()
      .then(setItems)
      .catch((e) => setError(errorText(e)));
  }, []);
  useEffect(refresh, [refresh]);

  return (
    <main className="ris-page reconciliation-page">
      <div className="ris-toolbar">
        <h2>Reconciliation</h2>
        <button onClick={refresh}>Refresh</button>
      </div>
      <ErrorLine error={error} />
      <Notice text={notice} />
      {items && items.length === 0 && <p className="muted">No unmatched studies: every archived study has its order.</p>}
      <div className="unmatched-list" data-testid="unmatched" data-loaded={items ? 'true' : 'false'}>
        {items?.map((u) => (
          <UnmatchedCard
            key={u.study_uid}
            item={u}
            onOpen={() => go(`/viewer/${u.study_uid}`)}
            onResolved={(o) => {
              setError(undefined);
              setNotice(`Study of ${personName(u.patient_name) || u.patient_id} linked to ${o.accession} (${personName(o.patient.name)}).`);
              setItems((list) => list?.filter((x) => x.study_uid !== u.study_uid));
            }}
          />
        ))}
      </div>
    </main>
  );
}

function UnmatchedCard({ item: u, onResolved, onOpen }: { item: Unmatched; onResolved: (o: Order) => void; onOpen: () => void }) {
  const [choice, setChoice] = useState('');
  const [q, setQ] = useState('');
  const [found, setFound] = useState<Order[]>([]);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const title = `${personName(u.patient_name) || '(no name)'} ${u.patient_id}`.trim();
  const options = [...u.candidates, ...found.filter((f) => !u.candidates.some((c) => c.id === f.id))];

  const search = async (e: FormEvent) => {
    e.preventDefault();
    if (!q.trim()) return;
    setError(undefined);
    try {
      const r = await listOrders({ q: q.trim(), limit: 20 });
      setFound(r);
      if (r.length === 0) setError('No order matches.');
    } catch (err) {
      setError(errorText(err));
    }
  };

  const resolve = async () => {
    setBusy(true);
    setError(undefined);
    try {
      onResolved(await resolveUnmatched(u.study_uid, choice));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <article className="panel unmatched" aria-label={`Unmatched study ${title}`} data-study-uid={u.study_uid}>
      <h3>
        {title} <small className="muted">{u.modalities.join('/')} {dicomDate(u.study_date)}</small>
      </h3>
      <p>
        {u.description || <span className="muted">No description</span>} · accession {u.accession || <span className="muted">none</span>} · received{' '}
        {dateTime(u.received_at)}{' '}
        <button className="link" onClick={onOpen}>
          Open images
        </button>
      </p>
      <p className="notice">{u.reason}</p>
      <fieldset>
        <legend>Orders to link</legend>
        {options.length === 0 && <p className="muted">No candidate: search for the order.</p>}
        {options.map((o) => (
          <label key={o.id} className="candidate">
            <input type="radio" name={`order-${u.study_uid}`} value={o.id} checked={choice === o.id} onChange={() => setChoice(o.id)} />
            <strong>{o.accession}</strong> {personName(o.patient.name)} <span className="muted">{o.patient.patient_id}</span> · {o.procedure.name} ·{' '}
            <StateChip state={o.state} />
          </label>
        ))}
      </fieldset>
      <form className="row-form" onSubmit={(e) => void search(e)} role="search" aria-label={`Find an order for ${title}`}>
        <input aria-label={`Search orders for ${title}`} placeholder="Accession or patient name" value={q} onChange={(e) => setQ(e.target.value)} />
        <button type="submit">Search</button>
      </form>
      <ErrorLine error={error} />
      <button className="primary" disabled={!choice || busy} onClick={() => void resolve()}>
        Resolve
      </button>
    </article>
  );
}
