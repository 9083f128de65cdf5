// The radiologist's reading worklist: mine, a group's or all cases, filtered, in the server's
// order (escalated first, then priority, then oldest); claim and unclaim, open the images and
// the report editor, and move the claimed case to preliminary and final.

import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError } from '../lib/api';
import { personName } from '../lib/format';
import {
  PRIORITIES,
  claimCase,
  errorText,
  getOrder,
  getRouting,
  readingWorklist,
  transitionOrder,
  unclaimCase,
  type Order,
} from '../lib/ris';
import { claimedMessage, dateTime, formatMinutes, groupsOfRules, priorityLabel, readingScope, stateLabel, waitingMinutes } from '../lib/risview';
import { ErrorLine, Notice, PriorityChip, StateChip, type PageProps } from './common';

type Tab = 'mine' | 'groups' | 'all';
const TABS: { id: Tab; label: string }[] = [
  { id: 'mine', label: 'Mine' },
  { id: 'groups', label: 'My groups' },
  { id: 'all', label: 'All' },
];
const MODALITIES = ['CT', 'MR', 'CR', 'DX', 'US', 'MG', 'PT', 'NM', 'XA', 'RF'];
const READ_STATES = ['images_complete', 'preliminary', 'final', 'amended'] as const;
const REFRESH_MS = 30_000;

interface Filters {
  modality: string;
  body_part: string;
  priority: string;
  state: string;
  site: string;
}
const noFilters: Filters = { modality: '', body_part: '', priority: '', state: '', site: '' };

export function Reading({ user, go }: PageProps) {
  const [tab, setTab] = useState<Tab>('mine');
  const [group, setGroup] = useState('');
  const [groups, setGroups] = useState<string[]>([]);
  const [draft, setDraft] = useState<Filters>(noFilters);
  const [filters, setFilters] = useState<Filters>(noFilters);
  const [rows, setRows] = useState<Order[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    getRouting()
      .then((r) => {
        const g = groupsOfRules(r.rules);
        setGroups(g);
        setGroup((cur) => cur || g[0] || '');
      })
      .catch(() => setGroups([]));
  }, []);

  const scope = readingScope(tab, group);
  const refresh = useCallback(() => {
    readingWorklist({ scope, ...filters })
      .then((r) => {
        setRows(r);
        setLoaded(true);
      })
      .catch((e) => setError(errorText(e)));
  }, [scope, filters]);
  useEffect(() => {
    setLoaded(false);
    refresh();
    const t = window.setInterval(refresh, REFRESH_MS);
    return () => window.clearInterval(t);
  }, [refresh]);

  const setSelect = (k: keyof Filters, v: string) => {
    setDraft((d) => ({ ...d, [k]: v }));
    setFilters((f) => ({ ...f, [k]: v }));
  };
  const apply = (e: FormEvent) => {
    e.preventDefault();
    setFilters({ ...draft, body_part: draft.body_part.trim(), site: draft.site.trim() });
  };

  const act = async (o: Order, what: 'claim' | 'unclaim' | 'preliminary' | 'final') => {
    setBusy(true);
    setError(undefined);
    setNotice(undefined);
    try {
      if (what === 'claim') await claimCase(o.id);
      else if (what === 'unclaim') await unclaimCase(o.id);
      else await transitionOrder(o.id, what);
      setNotice(
        what === 'claim'
          ? `You claimed ${o.accession}.`
          : what === 'unclaim'
            ? `${o.accession} is back on the worklist.`
            : `${o.accession} is now ${stateLabel(what)}.`,
      );
    } catch (e) {
      if (what === 'claim' && e instanceof ApiError && e.status === 409) {
        const now = await getOrder(o.id).catch(() => null);
        setError(claimedMessage(e.body, now, e.detail));
      } else {
        setError(errorText(e));
      }
    } finally {
      setBusy(false);
      refresh();
    }
  };

  return (
    <main className="ris-page reading-page">
      <div className="ris-toolbar">
        <h2>Reading worklist</h2>
        <div role="tablist" aria-label="Scope" className="tabs">
          {TABS.map((t) => (
            <button key={t.id} role="tab" aria-selected={tab === t.id} className={tab === t.id ? 'on' : ''} onClick={() => setTab(t.id)}>
              {t.label}
            </button>
          ))}
        </div>
        {tab === 'groups' && (
          <label>
            Group{' '}
            <input list="reading-groups" value={group} onChange={(e) => setGroup(e.target.value)} placeholder="e.g. neuro" />
            <datalist id="reading-groups">
              {groups.map((g) => (
                <option key={g} value={g} />
              ))}
            </datalist>
          </label>
        )}
        <button onClick={refresh}>Refresh</button>
      </div>
      <form className="row-form filters" onSubmit={apply} aria-label="Filter the worklist">
        <select aria-label="Modality" value={draft.modality} onChange={(e) => setSelect('modality', e.target.value)}>
          <option value="">Any modality</option>
          {MODALITIES.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
        <input aria-label="Body part" placeholder="Body part" value={draft.body_part} onChange={(e) => setDraft({ ...draft, body_part: e.target.value })} />
        <select aria-label="Priority" value={draft.priority} onChange={(e) => setSelect('priority', e.target.value)}>
          <option value="">Any priority</option>
          {PRIORITIES.map((p) => (
            <option key={p} value={p}>
              {priorityLabel(p)}
            </option>
          ))}
        </select>
        <select aria-label="State" value={draft.state} onChange={(e) => setSelect('state', e.target.value)}>
          <option value="">To read (images complete, preliminary)</option>
          {READ_STATES.map((s) => (
            <option key={s} value={s}>
              {stateLabel(s)}
            </option>
          ))}
        </select>
        <input aria-label="Site" placeholder="Site" value={draft.site} onChange={(e) => setDraft({ ...draft, site: e.target.value })} />
        <button type="submit">Apply</button>
      </form>
      <ErrorLine error={error} />
      <Notice text={notice} />
      <table className="ris-table" data-testid="reading-worklist" aria-label={`Reading worklist: ${TABS.find((t) => t.id === tab)?.label}`}>
        <thead>
          <tr>
            <th>Priority</th>
            <th>Patient</th>
            <th>Procedure</th>
            <th>Accession</th>
            <th>State</th>
            <th>Waiting</th>
            <th>Assigned</th>
            <th>Claimed by</th>
            <th>Actions</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((o) => {
            const mine = o.claimed_by === user;
            return (
              <tr key={o.id} className={o.escalated_at ? 'escalated' : ''} data-accession={o.accession} data-state={o.state} data-claimed-by={o.claimed_by ?? ''}>
                <td>
                  <PriorityChip priority={o.priority} />
                  {o.escalated_at && (
                    <span className="badge escalated-badge" title={`Escalated ${dateTime(o.escalated_at)}`}>
                      Escalated
                    </span>
                  )}
                </td>
                <td>
                  {personName(o.patient.name)} <small className="muted">{o.patient.patient_id}</small>
                </td>
                <td>
                  {o.procedure.name}{' '}
                  <small className="muted">
                    {o.procedure.modality} {o.procedure.body_part}
                  </small>
                  {o.site && <small className="muted"> · {o.site}</small>}
                </td>
                <td>{o.accession}</td>
                <td>
                  <StateChip state={o.state} />
                </td>
                <td>{formatMinutes(waitingMinutes(o))}</td>
                <td>
                  {o.assigned_to ?? <span className="muted">—</span>}
                  {o.assigned_group && <small className="muted"> ({o.assigned_group})</small>}
                  {o.assignment_reason && (
                    <details className="why">
                      <summary aria-label={`Why ${o.accession} was assigned`}>Why</summary>
                      <p>{o.assignment_reason}</p>
                    </details>
                  )}
                </td>
                <td>{o.claimed_by ? mine ? <strong>you</strong> : o.claimed_by : <span className="muted">—</span>}</td>
                <td className="actions">
                  {!o.claimed_by && (
                    <button disabled={busy} onClick={() => void act(o, 'claim')} aria-label={`Claim ${o.accession}`}>
                      Claim
                    </button>
                  )}
                  {mine && (
                    <button disabled={busy} onClick={() => void act(o, 'unclaim')} aria-label={`Unclaim ${o.accession}`}>
                      Unclaim
                    </button>
                  )}
                  {o.study_uid && (
                    <button className="link" onClick={() => go(`/viewer/${o.study_uid}`)} aria-label={`Open ${o.accession}`}>
                      Open
                    </button>
                  )}
                  {o.study_uid && (
                    <button className="link" onClick={() => go(`/report/${encodeURIComponent(o.id)}`)} aria-label={`Report ${o.accession}`}>
                      Report
                    </button>
                  )}
                  {mine && o.state === 'images_complete' && (
                    <button disabled={busy} onClick={() => void act(o, 'preliminary')} aria-label={`Preliminary ${o.accession}`}>
                      Preliminary
                    </button>
                  )}
                  {mine && o.state === 'preliminary' && (
                    <button disabled={busy} onClick={() => void act(o, 'final')} aria-label={`Final ${o.accession}`}>
                      Final
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
          {loaded && rows.length === 0 && (
            <tr>
              <td colSpan={9} className="muted">
                Nothing to read here.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </main>
  );
}
