// The quality-assurance page at `/qa`: RADPEER-style peer review of other radiologists'
// signed reports (draw some at random, read each signed report, score it 1–3 with the
// clinical significance a/b for discrepancies) and the department's quality figures (review
// scores, discrepancy rate, critical-result communication, reports signed).

import { useCallback, useEffect, useMemo, useState, type CSSProperties, type FormEvent, type MouseEvent, type ReactNode } from 'react';
import { personName } from '../lib/format';
import {
  COMMENT_MAX,
  COUNT_STEPS,
  SCORES,
  SCORE_KEY_COLOUR,
  SCORE_KEY_LABEL,
  SCORE_LABEL,
  SIGNIFICANCE_LABEL,
  drawCount,
  drawnText,
  emptyReviewForm,
  minutesText,
  needsSignificance,
  rateText,
  reviewProblems,
  reviewSubmission,
  scoreDistribution,
  scoreKey,
  splitReviews,
  withScore,
  type ReviewForm,
  type ScoreKey,
} from '../lib/qa';
import { assignPeerReviews, getQuality, getReport, listPeerReviews, reportPdfUrl, scorePeerReview, type PeerReview, type Quality, type Report } from '../lib/reports';
import { STATUS_LABEL } from '../lib/reportview';
import { errorText } from '../lib/ris';
import { dateTime } from '../lib/risview';
import { BarChart } from '../ris/BarChart';
import { ErrorLine, Notice, type PageProps } from '../ris/common';

// The reports under review, by id (a signed report's text does not change under review;
// a failed fetch is forgotten so that the next showing retries).
const reportCache = new Map<string, Promise<Report>>();
function fetchReport(id: string): Promise<Report> {
  let p = reportCache.get(id);
  if (!p) {
    p = getReport(id);
    reportCache.set(id, p);
    p.catch(() => reportCache.delete(id));
  }
  return p;
}

function useReport(id: string): { report?: Report; error?: string } {
  const [state, setState] = useState<{ id: string; report?: Report; error?: string }>({ id });
  useEffect(() => {
    let live = true;
    fetchReport(id)
      .then((report) => live && setState({ id, report }))
      .catch((e) => live && setState({ id, error: errorText(e) }));
    return () => {
      live = false;
    };
  }, [id]);
  return state.id === id ? state : {};
}

function Link({ to, go, children, label }: { to: string; go: (path: string) => void; children: ReactNode; label?: string }) {
  return (
    <a
      href={to}
      aria-label={label}
      onClick={(e: MouseEvent) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        go(to);
      }}
    >
      {children}
    </a>
  );
}

export function QaPage({ go }: PageProps) {
  const [reviews, setReviews] = useState<PeerReview[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [count, setCount] = useState('5');
  const [drawing, setDrawing] = useState(false);
  const [open, setOpen] = useState<string>();
  /** changes whenever a review changes, so the quality figures reload */
  const [stamp, setStamp] = useState(0);

  useEffect(() => {
    let live = true;
    listPeerReviews()
      .then((r) => live && setReviews(r))
      .catch((e) => {
        if (!live) return;
        setReviews([]);
        setError(errorText(e));
      });
    return () => {
      live = false;
    };
  }, []);

  const { pending, done } = useMemo(() => splitReviews(reviews ?? []), [reviews]);
  const n = drawCount(count);

  const draw = async (e: FormEvent) => {
    e.preventDefault();
    if (n === null) return;
    setDrawing(true);
    setError(undefined);
    setNotice(undefined);
    try {
      const before = reviews?.length ?? 0;
      const after = await assignPeerReviews(n);
      setReviews(after);
      setNotice(drawnText(before, after.length));
      setStamp((s) => s + 1);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setDrawing(false);
    }
  };

  const scored = useCallback((r: PeerReview, accession: string) => {
    setReviews((list) => (list ?? []).map((x) => (x.id === r.id ? r : x)));
    setNotice(`Review of ${accession || 'the report'} saved: ${scoreKey(r)}.`);
    setOpen((o) => (o === r.id ? undefined : o));
    setStamp((s) => s + 1);
  }, []);

  return (
    <main className="ris-page qa-page">
      <div className="ris-toolbar">
        <h2>Quality assurance</h2>
      </div>
      <section className="panel qa-reviews" aria-labelledby="qa-reviews-title" data-testid="peer-reviews" data-loaded={reviews !== undefined}>
        <h3 id="qa-reviews-title">My peer reviews</h3>
        <form className="row-form" aria-label="Draw reports to review" onSubmit={(e) => void draw(e)}>
          <label>
            Count{' '}
            <input
              type="number"
              min={1}
              max={50}
              step={1}
              value={count}
              onChange={(e) => setCount(e.target.value)}
              aria-invalid={n === null}
              style={{ width: '5em' }}
            />
          </label>
          <button type="submit" className="primary" disabled={n === null || drawing}>
            Draw reports to review
          </button>
          <span className="muted small">Signed reports of other radiologists, at random, that you have not reviewed yet.</span>
        </form>
        <ErrorLine error={error} />
        <Notice text={notice} />
        {reviews === undefined ? (
          <p className="loading">Loading…</p>
        ) : (
          <>
            <table className="ris-table" aria-label="Pending reviews" data-testid="pending-reviews">
              <caption>Pending ({pending.length})</caption>
              <thead>
                <tr>
                  <th scope="col">Accession</th>
                  <th scope="col">Patient</th>
                  <th scope="col">Procedure</th>
                  <th scope="col">Author</th>
                  <th scope="col">Signed</th>
                  <th scope="col">Assigned</th>
                  <th scope="col" />
                </tr>
              </thead>
              <tbody>
                {pending.map((r) => (
                  <PendingRow key={r.id} review={r} go={go} open={open === r.id} toggle={() => setOpen((o) => (o === r.id ? undefined : r.id))} onScored={scored} />
                ))}
                {pending.length === 0 && (
                  <tr>
                    <td colSpan={7} className="muted">
                      Nothing to review. Draw reports to review.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
            <table className="ris-table" aria-label="Done reviews" data-testid="done-reviews">
              <caption>Done ({done.length})</caption>
              <thead>
                <tr>
                  <th scope="col">Accession</th>
                  <th scope="col">Patient</th>
                  <th scope="col">Procedure</th>
                  <th scope="col">Author</th>
                  <th scope="col">Score</th>
                  <th scope="col">Comment</th>
                  <th scope="col">Reviewed</th>
                </tr>
              </thead>
              <tbody>
                {done.map((r) => (
                  <DoneRow key={r.id} review={r} go={go} />
                ))}
                {done.length === 0 && (
                  <tr>
                    <td colSpan={7} className="muted">
                      No review done yet.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </>
        )}
      </section>
      <QualityFigures stamp={stamp} />
    </main>
  );
}

/** Accession (a link to the report), patient, procedure, author: the report's cells of a row. */
function ReportCells({ report, error, go }: { report?: Report; error?: string; go: (path: string) => void }) {
  if (error)
    return (
      <td colSpan={4}>
        <ErrorLine error={error} />
      </td>
    );
  if (!report)
    return (
      <td colSpan={4} className="muted">
        Loading…
      </td>
    );
  return (
    <>
      <td>
        <Link to={`/report/${encodeURIComponent(report.order_id)}`} go={go} label={`Open the report ${report.accession}`}>
          {report.accession || report.id}
        </Link>
      </td>
      <td>
        {personName(report.patient_name)} <small className="muted">{report.patient_id}</small>
      </td>
      <td>{report.procedure}</td>
      <td>{report.author}</td>
    </>
  );
}

function signedAt(report?: Report): string {
  const last = report?.versions[report.versions.length - 1];
  return last?.signed_at ? dateTime(last.signed_at) : '—';
}

function PendingRow({
  review,
  go,
  open,
  toggle,
  onScored,
}: {
  review: PeerReview;
  go: (path: string) => void;
  open: boolean;
  toggle: () => void;
  onScored: (r: PeerReview, accession: string) => void;
}) {
  const { report, error } = useReport(review.report_id);
  const acc = report?.accession ?? '';
  return (
    <>
      <tr data-review-id={review.id} data-accession={acc} className={open ? 'selected' : undefined}>
        <ReportCells report={report} error={error} go={go} />
        <td>{signedAt(report)}</td>
        <td>{dateTime(review.assigned_at)}</td>
        <td className="actions">
          <button type="button" aria-expanded={open} aria-label={`Review ${acc || review.report_id}`} onClick={toggle}>
            {open ? 'Close' : 'Review'}
          </button>
        </td>
      </tr>
      {open && (
        <tr className="details-row">
          <td colSpan={7}>
            <div className="qa-review">
              <SignedReport report={report} error={error} />
              <ScoreForm review={review} accession={acc} onScored={onScored} />
            </div>
          </td>
        </tr>
      )}
    </>
  );
}

function DoneRow({ review, go }: { review: PeerReview; go: (path: string) => void }) {
  const { report, error } = useReport(review.report_id);
  const key = scoreKey(review);
  const colour = SCORE_KEY_COLOUR[key as ScoreKey];
  return (
    <tr data-review-id={review.id} data-accession={report?.accession ?? ''} data-score={key}>
      <ReportCells report={report} error={error} go={go} />
      <td>
        <span className="chip qa-score" style={colour ? ({ '--chip': colour } as CSSProperties) : undefined} title={SCORE_KEY_LABEL[key as ScoreKey] ?? ''}>
          {key}
        </span>
      </td>
      <td className="prewrap">{review.comment || <span className="muted">—</span>}</td>
      <td>{dateTime(review.reviewed_at)}</td>
    </tr>
  );
}

/** The signed report, read-only: what the reviewer scores. */
function SignedReport({ report, error }: { report?: Report; error?: string }) {
  if (error) return <ErrorLine error={error} />;
  if (!report) return <p className="muted">Loading the report…</p>;
  const c = report.content;
  const last = report.versions[report.versions.length - 1];
  return (
    <article className="qa-report" aria-label={`Signed report ${report.accession}`}>
      <p className="small">
        {report.procedure} · {report.accession} · {personName(report.patient_name)} · {STATUS_LABEL[report.status] ?? report.status}
        {last?.signed_at && ` ${dateTime(last.signed_at)}`} <span className="muted">by {last?.signer || report.author}</span>
      </p>
      {c.narrative && (
        <>
          <h4>Findings</h4>
          <p className="prewrap">{c.narrative}</p>
        </>
      )}
      {c.impression && (
        <>
          <h4>Impression</h4>
          <p className="prewrap">{c.impression}</p>
        </>
      )}
      {(c.addenda ?? []).map((a, i) => (
        <p key={i} className="prewrap">
          <strong>Addendum {i + 1}:</strong> {a}
        </p>
      ))}
      <p>
        <a className="button-link" href={reportPdfUrl(report.id)} target="_blank" rel="noopener">
          PDF
        </a>
      </p>
    </article>
  );
}

function ScoreForm({ review, accession, onScored }: { review: PeerReview; accession: string; onScored: (r: PeerReview, accession: string) => void }) {
  const [form, setForm] = useState<ReviewForm>(emptyReviewForm);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const problems = reviewProblems(form);
  const sigOn = needsSignificance(form.score);
  const name = `review-${review.id}`;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body = reviewSubmission(form);
    if (!body) return;
    setBusy(true);
    setError(undefined);
    try {
      onScored(await scorePeerReview(review.id, body), accession);
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  };

  return (
    <form className="qa-score-form" aria-label={`Score ${accession || 'the report'}`} onSubmit={(e) => void submit(e)}>
      <fieldset>
        <legend>Score</legend>
        {SCORES.map((s) => (
          <label key={s} className="check">
            <input type="radio" name={`${name}-score`} value={s} checked={form.score === s} onChange={() => setForm((f) => withScore(f, s))} />
            <strong>{s}</strong> {SCORE_LABEL[s]}
          </label>
        ))}
      </fieldset>
      <fieldset disabled={!sigOn} aria-describedby={sigOn ? undefined : `${name}-sig-note`}>
        <legend>Clinical significance</legend>
        {(['a', 'b'] as const).map((s) => (
          <label key={s} className="check">
            <input
              type="radio"
              name={`${name}-sig`}
              value={s}
              checked={form.significance === s}
              onChange={() => setForm((f) => ({ ...f, significance: s }))}
            />
            <strong>{s}</strong> {SIGNIFICANCE_LABEL[s]}
          </label>
        ))}
        {!sigOn && (
          <p className="muted small" id={`${name}-sig-note`}>
            For scores 2 and 3.
          </p>
        )}
      </fieldset>
      <label className="qa-comment">
        Comment
        <textarea rows={3} maxLength={COMMENT_MAX} value={form.comment} onChange={(e) => setForm((f) => ({ ...f, comment: e.target.value }))} />
      </label>
      {form.score !== 0 && problems.length > 0 && (
        <ul className="problems small">
          {problems.map((p) => (
            <li key={p}>{p}</li>
          ))}
        </ul>
      )}
      <ErrorLine error={error} />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={problems.length > 0 || busy}>
          Submit review
        </button>
      </div>
    </form>
  );
}

/** The quality figures (GET /quality): as numbers in a table, the score distribution also as a chart. */
function QualityFigures({ stamp }: { stamp: number }) {
  const [q, setQ] = useState<Quality>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    let live = true;
    getQuality()
      .then((d) => {
        if (!live) return;
        setQ(d);
        setError(undefined);
      })
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [stamp]);

  const dist = useMemo(() => scoreDistribution(q?.by_score), [q]);
  const rows: [string, string][] = q
    ? [
        ['Reviews done', String(q.reviews_done)],
        ['Reviews pending', String(q.reviews_pending)],
        ['Discrepancy rate (scores 2 and 3)', rateText(q.discrepancy_rate)],
        ['Critical results flagged', String(q.critical_flagged)],
        ['Critical results acknowledged', String(q.critical_acknowledged)],
        ['Mean communication time of critical results', minutesText(q.critical_mean_communication_min)],
        ['Reports signed', String(q.reports_signed)],
      ]
    : [];

  return (
    <section className="qa-quality" aria-labelledby="qa-quality-title" data-testid="quality" data-stamp={stamp} data-loaded={q !== undefined}>
      <h3 id="qa-quality-title">Quality figures</h3>
      <ErrorLine error={error} />
      {!q && !error && <p className="loading">Loading…</p>}
      {q && (
        <div className="qa-quality-body">
          <div className="panel">
            <table className="ris-table compact qa-figures" aria-label="Quality figures">
              <tbody>
                {rows.map(([k, v]) => (
                  <tr key={k}>
                    <th scope="row">{k}</th>
                    <td className="num">{v}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <p className="muted small">Communication time: from flagging a critical result to its acknowledgement.</p>
          </div>
          <BarChart
            testId="chart-peer-scores"
            title="Peer review scores"
            series={[{ name: 'Reviews', colour: '#4da3ff' }]}
            rows={dist.map((d) => ({ label: d.key, values: [d.count], colour: SCORE_KEY_COLOUR[d.key as ScoreKey] }))}
            minMax={1}
            steps={COUNT_STEPS}
            extraColumns={[{ header: 'Meaning', cells: dist.map((d) => SCORE_KEY_LABEL[d.key as ScoreKey] ?? '') }]}
          />
        </div>
      )}
    </section>
  );
}
