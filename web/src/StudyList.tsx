// The study list: search by name, ID, accession, date range and modality; sort; cursor paging;
// the selected patient's timeline with priors and series thumbnails.

import { useCallback, useEffect, useState, type FormEvent, type SyntheticEvent } from 'react';
import { ApiError, getStudy, searchStudies, studiesOfPatient, studyThumbnailUrl, seriesThumbnailUrl, type Study, type StudyDetail } from './lib/api';
import { ageAt, dicomDate, dicomTime, personName } from './lib/format';
import { SearchError, emptySearch, lastDays, toQuery, type StudySearch } from './lib/query';

/** A thumbnail the server cannot render (damaged or non-image data) leaves an empty frame. */
const hideBroken = (e: SyntheticEvent<HTMLImageElement>) => {
  e.currentTarget.style.visibility = 'hidden';
};

const MODALITIES = ['', 'CT', 'MR', 'CR', 'DX', 'PT', 'NM', 'US', 'MG', 'XA', 'SR'];
const PAGE = 50;

export function StudyList({
  onOpen,
  initial,
  prewarm,
}: {
  onOpen: (studyUid: string, priorUid?: string) => void;
  initial: StudySearch;
  /** load the viewer's code while the user looks at the list */
  prewarm: () => void;
}) {
  const [form, setForm] = useState<StudySearch>(initial);
  const [search, setSearch] = useState<StudySearch>(initial);
  const [rows, setRows] = useState<Study[]>([]);
  const [cursor, setCursor] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [selected, setSelected] = useState<Study>();

  const load = useCallback(async (s: StudySearch, after?: string) => {
    setBusy(true);
    setError(undefined);
    try {
      const page = await searchStudies(toQuery(s, after, PAGE));
      setRows((r) => (after ? [...r, ...page.items] : page.items));
      setCursor(page.next_cursor);
    } catch (e) {
      setError(e instanceof SearchError || e instanceof ApiError ? e.message : 'The server cannot be reached.');
    } finally {
      setBusy(false);
    }
  }, []);

  useEffect(() => {
    const idle = (window as { requestIdleCallback?: (f: () => void) => number }).requestIdleCallback;
    if (idle) idle(prewarm);
    else window.setTimeout(prewarm, 300);
  }, [prewarm]);

  useEffect(() => {
    void load(search);
    sessionStorage.setItem('radris.search', JSON.stringify(search));
  }, [search, load]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    try {
      toQuery(form);
      setSearch({ ...form });
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };

  const sortBy = (key: 'date' | 'accession' | 'received') => {
    const desc = search.sort === `-${key}`;
    const sort = (search.sort === key ? `-${key}` : desc ? key : `-${key}`) as StudySearch['sort'];
    setForm({ ...form, sort });
    setSearch({ ...search, sort });
  };
  const arrow = (key: string) => (search.sort === key ? ' ▲' : search.sort === `-${key}` ? ' ▼' : '');

  return (
    <div className="study-list">
      <form className="search" onSubmit={submit} aria-label="Search studies">
        <input placeholder="Patient name" aria-label="Patient name" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} />
        <input placeholder="Patient ID" aria-label="Patient ID" value={form.patientId} onChange={(e) => setForm({ ...form, patientId: e.target.value })} />
        <input placeholder="Accession" aria-label="Accession number" value={form.accession} onChange={(e) => setForm({ ...form, accession: e.target.value })} />
        <select aria-label="Modality" value={form.modality} onChange={(e) => setForm({ ...form, modality: e.target.value })}>
          {MODALITIES.map((m) => (
            <option key={m} value={m}>
              {m || 'Any modality'}
            </option>
          ))}
        </select>
        <label className="date">
          From <input type="date" aria-label="From date" value={form.dateFrom} onChange={(e) => setForm({ ...form, dateFrom: e.target.value })} />
        </label>
        <label className="date">
          To <input type="date" aria-label="To date" value={form.dateTo} onChange={(e) => setForm({ ...form, dateTo: e.target.value })} />
        </label>
        <span className="quick">
          <button type="button" onClick={() => setForm({ ...form, ...lastDays(1) })}>
            Today
          </button>
          <button type="button" onClick={() => setForm({ ...form, ...lastDays(7) })}>
            7 d
          </button>
          <button type="button" onClick={() => setForm({ ...form, ...lastDays(30) })}>
            30 d
          </button>
        </span>
        <button type="submit">Search</button>
        <button
          type="button"
          onClick={() => {
            setForm(emptySearch);
            setSearch(emptySearch);
          }}
        >
          Clear
        </button>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="list-body">
        <table className="studies" data-testid="studies">
          <thead>
            <tr>
              <th />
              <th>Patient</th>
              <th>ID</th>
              <th className="sortable" onClick={() => sortBy('date')}>
                Date{arrow('date')}
              </th>
              <th>Mod.</th>
              <th>Description</th>
              <th className="sortable" onClick={() => sortBy('accession')}>
                Accession{arrow('accession')}
              </th>
              <th className="num">Images</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr
                key={s.study_uid}
                className={selected?.study_uid === s.study_uid ? 'selected' : ''}
                onClick={() => setSelected(s)}
                onDoubleClick={() => onOpen(s.study_uid)}
                data-study-uid={s.study_uid}
              >
                <td className="thumb">
                  <img src={studyThumbnailUrl(s.study_uid)} alt="" loading="lazy" width={48} height={48} onError={hideBroken} />
                </td>
                <td>
                  <button className="link" onClick={() => onOpen(s.study_uid)} data-testid="open-study">
                    {personName(s.patient_name)}
                  </button>
                  <small className="muted">
                    {' '}
                    {s.patient_sex} {ageAt(s.patient_birth_date, s.study_date)}
                  </small>
                </td>
                <td>{s.patient_id}</td>
                <td>
                  {dicomDate(s.study_date)} <small className="muted">{dicomTime(s.study_time)}</small>
                </td>
                <td>{s.modalities.join('/')}</td>
                <td>{s.description}</td>
                <td>{s.accession_number}</td>
                <td className="num">{s.num_instances}</td>
              </tr>
            ))}
            {rows.length === 0 && !busy && (
              <tr>
                <td colSpan={8} className="muted">
                  No studies match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
        {cursor && (
          <button className="more" disabled={busy} onClick={() => void load(search, cursor)}>
            {busy ? 'Loading…' : 'Load more'}
          </button>
        )}
        {selected && <Timeline study={selected} onOpen={onOpen} />}
      </div>
    </div>
  );
}

/** The patient's studies, newest first, with the selected study's series. */
function Timeline({ study, onOpen }: { study: Study; onOpen: (studyUid: string, priorUid?: string) => void }) {
  const [studies, setStudies] = useState<Study[]>([]);
  const [detail, setDetail] = useState<StudyDetail>();
  useEffect(() => {
    let live = true;
    studiesOfPatient(study.patient_id).then((s) => live && setStudies(s)).catch(() => {});
    getStudy(study.study_uid).then((d) => live && setDetail(d)).catch(() => {});
    return () => {
      live = false;
    };
  }, [study]);
  return (
    <aside className="timeline" aria-label="Patient timeline">
      <h3>
        {personName(study.patient_name)} <small className="muted">{study.patient_id}</small>
      </h3>
      <ol>
        {studies.map((s) => (
          <li key={s.study_uid} className={s.study_uid === study.study_uid ? 'current' : ''}>
            <span className="when">{dicomDate(s.study_date)}</span> {s.modalities.join('/')} {s.description}{' '}
            <button className="link" onClick={() => onOpen(s.study_uid)}>
              Open
            </button>
            {s.study_uid !== study.study_uid && s.study_date <= study.study_date && (
              <button className="link" onClick={() => onOpen(study.study_uid, s.study_uid)} title="Open the selected study with this one as the prior">
                Compare
              </button>
            )}
          </li>
        ))}
      </ol>
      {detail && (
        <div className="series-thumbs">
          {detail.series.map((s) => (
            <figure key={s.series_uid}>
              <img src={seriesThumbnailUrl(s.study_uid, s.series_uid)} alt="" loading="lazy" width={96} height={96} onError={hideBroken} />
              <figcaption>
                {s.modality} #{s.series_number} {s.description} ({s.num_instances})
              </figcaption>
            </figure>
          ))}
        </div>
      )}
    </aside>
  );
}
