// The report editor at `/report/<order id>`, reached from the reading worklist: start the
// order's report from a template, fill the template's structured fields (rendered as our own
// form from the parsed MRRT template, never its HTML), the findings and the impression, with
// canned phrases, dictation and the viewer's measurements; autosave; sign with the password
// again (preliminary, final, addenda); the signed versions with their SHA-256 and a check of
// each signature; critical results and their acknowledgement; the PDF; the patient's prior
// report beside it.

import { useCallback, useEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { ApiError, getAnnotations } from '../lib/api';
import { parseDocument } from '../lib/annotations';
import { dictationAvailable, startDictation, type DictationSession } from '../lib/dictation';
import { personName } from '../lib/format';
import {
  checkForm,
  displayValue,
  emptyAlerts,
  formToValues,
  missingRequired,
  parseTemplate,
  problemsByField,
  valuesToForm,
  type FormState,
  type ParsedTemplate,
  type TemplateField,
  type TemplateSection,
} from '../lib/mrrt';
import {
  acknowledgeCritical,
  createReport,
  emptyContent,
  flagCritical,
  getReport,
  getTemplate,
  listTemplates,
  needsSecondFactor,
  reportOfOrder,
  reportPdfUrl,
  saveReport,
  signProblems,
  signReport,
  verifyVersion,
  type Content,
  type Report,
  type SignStatus,
  type TemplateInfo,
  type Verification,
} from '../lib/reports';
import {
  SIGN_LABEL,
  STATUS_LABEL,
  appendText,
  bestTemplate,
  bodyEditable,
  formatMeasurement,
  fromAnnotations,
  groupHex,
  insertAt,
  loadMacros,
  mergeKeyImages,
  mergeMeasurements,
  pendingAddendum,
  saveMacros,
  saveStateText,
  signOptions,
  signedAddenda,
  stableJson,
  withAddendum,
  type SaveState,
} from '../lib/reportview';
import { claimCase, errorText, getOrder, listOrders, type OrderDetail } from '../lib/ris';
import { dateTime, formatMinutes } from '../lib/risview';
import { ErrorLine, Notice, StateChip, type PageProps } from '../ris/common';

/** Autosave this long after the last edit. */
const SAVE_DEBOUNCE_MS = 1000;
/** Retry a save that failed for want of the network this long after. */
const RETRY_MS = 5000;

// Parsed templates by `id@version` (a version never changes).
const templateCache = new Map<string, Promise<ParsedTemplate>>();
function loadTemplate(id: string, version: number): Promise<ParsedTemplate> {
  const key = `${id}@${version}`;
  let p = templateCache.get(key);
  if (!p) {
    p = getTemplate(id, version).then((t) => parseTemplate(t.xhtml));
    p.catch(() => templateCache.delete(key));
    templateCache.set(key, p);
  }
  return p;
}

/** The server's content with every member present. */
function normalize(c: Partial<Content> | undefined): Content {
  const e = emptyContent();
  return {
    values: c?.values ?? e.values,
    narrative: c?.narrative ?? '',
    impression: c?.impression ?? '',
    measurements: c?.measurements ?? [],
    key_images: c?.key_images ?? [],
    addenda: c?.addenda ?? [],
  };
}

export function ReportPage({ orderId, user, go }: PageProps & { orderId: string }) {
  const [report, setReport] = useState<Report | null>();
  const [order, setOrder] = useState<OrderDetail>();
  const [error, setError] = useState<string>();
  const [templates, setTemplates] = useState<TemplateInfo[]>();
  const [choice, setChoice] = useState('');
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let live = true;
    setReport(undefined);
    reportOfOrder(orderId)
      .then((r) => {
        if (!live) return;
        setReport(r);
        if (!r)
          listTemplates()
            .then((t) => live && setTemplates(t))
            .catch((e) => live && setError(errorText(e)));
      })
      .catch((e) => live && setError(errorText(e)));
    getOrder(orderId)
      .then((o) => live && setOrder(o))
      .catch(() => {});
    return () => {
      live = false;
    };
  }, [orderId]);

  useEffect(() => {
    if (templates && !choice) setChoice(bestTemplate(templates, order?.procedure.name ?? ''));
  }, [templates, order, choice]);

  const start = async (e: FormEvent) => {
    e.preventDefault();
    if (!choice) return;
    setBusy(true);
    setError(undefined);
    try {
      setReport(await createReport(orderId, choice));
    } catch (x) {
      setError(errorText(x));
    } finally {
      setBusy(false);
    }
  };

  if (report === undefined) {
    return (
      <main className="ris-page report-page">
        <h2>Report</h2>
        {error ? <ErrorLine error={error} /> : <p className="muted">Loading…</p>}
      </main>
    );
  }
  if (report === null) {
    return (
      <main className="ris-page report-page">
        <div className="ris-toolbar">
          <h2>New report</h2>
          <button onClick={() => go('/reading')}>Back to reading</button>
        </div>
        {order && (
          <p className="report-who">
            {personName(order.patient.name)} <small className="muted">{order.patient.patient_id}</small> · {order.procedure.name} ·{' '}
            {order.accession} <StateChip state={order.state} />
          </p>
        )}
        <ErrorLine error={error} />
        <form className="row-form panel start-report" aria-label="Start a report" onSubmit={start}>
          <p className="muted">This order has no report yet. Choose a template to start it.</p>
          <label htmlFor="template-choice">Template</label>
          <select id="template-choice" value={choice} onChange={(e) => setChoice(e.target.value)} disabled={!templates}>
              {(templates ?? []).map((t) => (
                <option key={t.id} value={t.id}>
                  {t.title || t.id} (v{t.version})
                </option>
              ))}
          </select>
          <button type="submit" className="primary" disabled={busy || !choice}>
            Start report
          </button>
        </form>
      </main>
    );
  }
  return <Editor key={report.id} initial={report} order={order} setOrder={setOrder} user={user} go={go} />;
}

type TextKey = 'narrative' | 'impression' | 'addendum' | `field:${string}`;

interface SignOutcome {
  error?: string;
  needCode?: boolean;
}

function Editor({
  initial,
  order,
  setOrder,
  user,
  go,
}: PageProps & { initial: Report; order?: OrderDetail; setOrder: (o: OrderDetail) => void }) {
  const [report, setReport] = useState(initial);
  const [content, setContentState] = useState(() => normalize(initial.content));
  const [template, setTemplate] = useState<ParsedTemplate | null>();
  const [form, setFormState] = useState<FormState>({});
  const [save, setSave] = useState<SaveState>({ kind: 'saved' });
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [serverProblems, setServerProblems] = useState<{ byField: Record<string, string[]>; other: string[] }>({ byField: {}, other: [] });
  const [showMissing, setShowMissing] = useState(false);
  const [signing, setSigning] = useState<SignStatus | null>(null);
  const [addendumOpen, setAddendumOpen] = useState(false);
  const [busy, setBusy] = useState(false);

  // what the async save machinery reads (state is a render behind)
  const contentRef = useRef(content);
  const formRef = useRef(form);
  const templateRef = useRef<ParsedTemplate | null>(null);
  const reportRef = useRef(report);
  const revRef = useRef(initial.rev);
  const savedJson = useRef(stableJson(normalize(initial.content)));
  const inflight = useRef<Promise<boolean> | null>(null);
  const timer = useRef<number | undefined>(undefined);
  reportRef.current = report;

  const locked = !bodyEditable(report.status);

  /** Take the server's copy: metadata, content, revision. */
  const apply = useCallback((r: Report) => {
    const c = normalize(r.content);
    setReport(r);
    reportRef.current = r;
    contentRef.current = c;
    setContentState(c);
    revRef.current = r.rev;
    savedJson.current = stableJson(c);
    const t = templateRef.current;
    if (t) {
      const f = valuesToForm(t, c.values);
      formRef.current = f;
      setFormState(f);
    }
  }, []);

  /** Save now (after any save in flight) when the content differs from the server's. */
  const saveNow = useCallback(async (keepalive = false): Promise<boolean> => {
    window.clearTimeout(timer.current);
    while (inflight.current) await inflight.current;
    const c = contentRef.current;
    const json = stableJson(c);
    if (json === savedJson.current) {
      setSave({ kind: 'saved' });
      return true;
    }
    const id = reportRef.current.id;
    const run = (async () => {
      setSave({ kind: 'saving' });
      try {
        const r = await saveReport(id, revRef.current, c, { keepalive });
        revRef.current = r.rev;
        savedJson.current = json;
        if (stableJson(contentRef.current) === json) setSave({ kind: 'saved' });
        return true;
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) {
          const why = errorText(e);
          try {
            apply(await getReport(id));
            setSave({ kind: 'error', reason: `${why}. The report was read again from the server: check it before you go on.` });
          } catch (x) {
            setSave({ kind: 'error', reason: `${why} (${errorText(x)})` });
          }
        } else {
          setSave({ kind: 'error', reason: errorText(e) });
          if (!(e instanceof ApiError)) timer.current = window.setTimeout(() => void saveNow(), RETRY_MS);
        }
        return false;
      }
    })();
    inflight.current = run;
    try {
      return await run;
    } finally {
      if (inflight.current === run) inflight.current = null;
    }
  }, [apply]);

  /** Change the content: shown at once, saved a second after the last change. */
  const edit = useCallback(
    (next: Content) => {
      contentRef.current = next;
      setContentState(next);
      setSave({ kind: 'saving' });
      window.clearTimeout(timer.current);
      timer.current = window.setTimeout(() => void saveNow(), SAVE_DEBOUNCE_MS);
    },
    [saveNow],
  );

  const setField = useCallback(
    (id: string, raw: string | string[]) => {
      const t = templateRef.current;
      if (!t) return;
      const f = { ...formRef.current, [id]: raw };
      formRef.current = f;
      setFormState(f);
      setServerProblems((p) => (p.byField[id] ? { ...p, byField: { ...p.byField, [id]: [] } } : p));
      edit({ ...contentRef.current, values: formToValues(t, f, contentRef.current.values) });
    },
    [edit],
  );

  // the template, then the form from the saved values (a new report takes its defaults)
  useEffect(() => {
    let live = true;
    loadTemplate(initial.template_id, initial.template_version)
      .then((t) => {
        if (!live) return;
        templateRef.current = t;
        setTemplate(t);
        const c = contentRef.current;
        const fresh = reportRef.current.status === 'draft' && Object.keys(c.values).length === 0;
        const f = valuesToForm(t, c.values, fresh);
        formRef.current = f;
        setFormState(f);
        if (fresh) {
          const values = formToValues(t, f, c.values);
          if (Object.keys(values).length) edit({ ...c, values });
        }
      })
      .catch((e) => {
        if (!live) return;
        setTemplate(null);
        setError(`The template ${initial.template_id} v${initial.template_version} cannot be shown: ${errorText(e)}`);
      });
    return () => {
      live = false;
    };
  }, [initial.template_id, initial.template_version, edit]);

  // closing the tab or leaving the page loses nothing
  useEffect(() => {
    const onVisibility = () => {
      if (document.visibilityState === 'hidden') void saveNow(true);
    };
    const onPageHide = () => void saveNow(true);
    document.addEventListener('visibilitychange', onVisibility);
    window.addEventListener('pagehide', onPageHide);
    return () => {
      document.removeEventListener('visibilitychange', onVisibility);
      window.removeEventListener('pagehide', onPageHide);
      void saveNow(true);
    };
  }, [saveNow]);

  // --- the text areas: macros and dictation write into the last one focused ---

  const areas = useRef(new Map<TextKey, HTMLTextAreaElement>());
  const lastArea = useRef<TextKey>('narrative');
  const areaRef = (key: TextKey) => (el: HTMLTextAreaElement | null) => {
    if (el) areas.current.set(key, el);
    else areas.current.delete(key);
  };
  const textOf = (key: TextKey): string => {
    const c = contentRef.current;
    if (key === 'narrative' || key === 'impression') return c[key];
    if (key === 'addendum') return pendingAddendum(reportRef.current, c) ?? '';
    const v = formRef.current[key.slice(6)];
    return typeof v === 'string' ? v : '';
  };
  const setText = (key: TextKey, value: string) => {
    const c = contentRef.current;
    if (key === 'narrative' || key === 'impression') edit({ ...c, [key]: value });
    else if (key === 'addendum') edit({ ...c, addenda: withAddendum(reportRef.current, c, value) });
    else setField(key.slice(6), value);
  };
  const writable = (key: TextKey) => (key === 'addendum' ? !bodyEditable(reportRef.current.status) : bodyEditable(reportRef.current.status));
  const focusArea = (key: TextKey) => () => {
    lastArea.current = key;
  };

  // macros
  const [macros, setMacros] = useState(() => loadMacros(localStorage, user));
  const [newMacro, setNewMacro] = useState('');
  const changeMacros = (list: string[]) => {
    setMacros(list);
    saveMacros(localStorage, user, list);
  };
  const insertMacro = (phrase: string) => {
    const key = lastArea.current;
    if (!writable(key)) {
      setError('Put the cursor in a text field you can edit first.');
      return;
    }
    const el = areas.current.get(key);
    const value = textOf(key);
    const { value: next, caret } = insertAt(value, el?.selectionStart ?? value.length, el?.selectionEnd ?? value.length, phrase);
    setText(key, next);
    requestAnimationFrame(() => {
      const a = areas.current.get(key);
      if (a) {
        a.focus();
        a.setSelectionRange(caret, caret);
      }
    });
  };

  // dictation
  const [dictating, setDictating] = useState<TextKey | null>(null);
  const [interim, setInterim] = useState('');
  const session = useRef<DictationSession | null>(null);
  const canDictate = dictationAvailable();
  const toggleDictation = () => {
    if (session.current) {
      session.current.stop();
      return;
    }
    const key = lastArea.current;
    if (!writable(key)) {
      setError('Put the cursor in a text field you can edit first.');
      return;
    }
    setDictating(key);
    setError(undefined);
    session.current = startDictation(
      (text, final) => {
        if (final) {
          setText(key, appendText(textOf(key), text));
          setInterim('');
        } else {
          setInterim(text);
        }
      },
      (why) => {
        session.current = null;
        setDictating(null);
        setInterim('');
        if (why) setError(`Dictation stopped: ${why}`);
      },
    );
  };
  useEffect(() => () => session.current?.stop(), []);

  // --- measurements from the viewer ---

  const importMeasurements = async () => {
    setError(undefined);
    setNotice(undefined);
    try {
      const doc = parseDocument((await getAnnotations(report.study_uid)).document);
      const { measurements, keyImages } = fromAnnotations(doc);
      if (!measurements.length && !keyImages.length) {
        setNotice('The viewer has no saved measurements or key images for this study.');
        return;
      }
      const c = contentRef.current;
      edit({ ...c, measurements: mergeMeasurements(c.measurements, measurements), key_images: mergeKeyImages(c.key_images, keyImages) });
      setNotice(`Inserted ${measurements.length} measurement${measurements.length === 1 ? '' : 's'} and ${keyImages.length} key image${keyImages.length === 1 ? '' : 's'} from the viewer.`);
    } catch (e) {
      setError(e instanceof ApiError && e.status === 404 ? 'The viewer has no saved measurements for this study.' : errorText(e));
    }
  };

  // --- signing ---

  const openSign = async (to: SignStatus) => {
    setError(undefined);
    setNotice(undefined);
    const t = templateRef.current;
    if (to !== 'amended' && t) {
      const missing = missingRequired(t, formRef.current);
      if (missing.length) {
        setShowMissing(true);
        setError(`Fill the required fields first: ${missing.map((m) => m.label).join(', ')}.`);
        return;
      }
    }
    if (to === 'amended' && !(pendingAddendum(reportRef.current, contentRef.current) ?? '').trim()) {
      setError('Write the addendum before signing it.');
      return;
    }
    const alerts = to !== 'amended' && t ? emptyAlerts(t, formRef.current) : [];
    if (alerts.length) setNotice(`Still empty (the template asks for them): ${alerts.map((f) => f.label).join(', ')}.`);
    setSigning(to);
  };

  const sign = async (to: SignStatus, password: string, code?: string): Promise<SignOutcome> => {
    // the server signs what it has: save first
    if (!(await saveNow())) return { error: 'The report could not be saved; it was not signed.' };
    try {
      const res = await signReport(reportRef.current.id, to, password, code);
      apply(await getReport(reportRef.current.id));
      setSigning(null);
      setAddendumOpen(false);
      setServerProblems({ byField: {}, other: [] });
      setShowMissing(false);
      setNotice(`Signed as ${STATUS_LABEL[to].toLowerCase()}: version ${res.version.version}.`);
      getOrder(reportRef.current.order_id)
        .then(setOrder)
        .catch(() => {});
      return {};
    } catch (e) {
      if (needsSecondFactor(e)) return { needCode: true, error: errorText(e) };
      const problems = signProblems(e);
      if (problems.length) {
        const t = templateRef.current;
        setServerProblems(t ? problemsByField(t, problems) : { byField: {}, other: problems });
        setShowMissing(true);
        setSigning(null);
        setError(errorText(e));
        return {};
      }
      return { error: errorText(e) };
    }
  };

  const claim = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await claimCase(report.order_id);
      setOrder(await getOrder(report.order_id));
      setNotice(`You claimed ${report.accession}.`);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  // --- critical results ---

  const [criticalOpen, setCriticalOpen] = useState(false);
  const [criticalText, setCriticalText] = useState('');
  const [criticalError, setCriticalError] = useState<string>();
  /** take the server's metadata, keep the content being edited */
  const meta = (r: Report) => {
    setReport((cur) => ({ ...r, content: cur.content, rev: cur.rev }));
  };
  const flag = async (e: FormEvent) => {
    e.preventDefault();
    setCriticalError(undefined);
    try {
      meta(await flagCritical(report.id, criticalText));
      setCriticalOpen(false);
      setCriticalText('');
    } catch (x) {
      setCriticalError(errorText(x));
    }
  };
  const acknowledge = async () => {
    setCriticalError(undefined);
    try {
      meta(await acknowledgeCritical(report.id));
    } catch (x) {
      setCriticalError(errorText(x));
    }
  };

  // --- verification of signed versions ---

  const [verified, setVerified] = useState<Record<number, Verification | string>>({});
  const verify = async (n: number) => {
    try {
      const v = await verifyVersion(report.id, n);
      setVerified((m) => ({ ...m, [n]: v }));
    } catch (e) {
      setVerified((m) => ({ ...m, [n]: errorText(e) }));
    }
  };

  // --- render ---

  const localProblems = template ? checkForm(template, form) : [];
  const problemsOf = (id: string): string[] => {
    const local = localProblems.filter((p) => p.field === id && (p.kind !== 'missing' || showMissing)).map((p) => p.message);
    return [...local, ...(serverProblems.byField[id] ?? [])];
  };
  const pending = pendingAddendum(report, content);
  // the starter templates have an Impression field of their own: then it is the impression,
  // and its section comes after the free-text findings
  const impressionField = template?.fields.find((f) => f.kind === 'textarea' && (f.id.toLowerCase() === 'impression' || f.label.toLowerCase() === 'impression'));
  const sections = template?.sections ?? [];
  const split = impressionField ? sections.findIndex((s) => s.fields.includes(impressionField)) : -1;
  const sectionsBefore = split < 0 ? sections : sections.slice(0, split);
  const sectionsAfter = split < 0 ? [] : sections.slice(split);
  const renderSection = (s: TemplateSection, i: number) => {
    const H = s.level <= 1 ? 'h3' : 'h4';
    return (
      <section key={`${s.name}-${i}`} className={`template-section level-${s.level}`} aria-label={s.name || undefined}>
        {s.name && <H>{s.name}</H>}
        <div className="field-grid">
          {s.fields.map((f) => (
            <Field
              key={f.id}
              field={f}
              value={form[f.id]}
              problems={problemsOf(f.id)}
              disabled={locked}
              onChange={(v) => setField(f.id, v)}
              textarea={(label) => textArea(`field:${f.id}`, label, typeof form[f.id] === 'string' ? (form[f.id] as string) : '', locked, 3)}
            />
          ))}
        </div>
      </section>
    );
  };
  const signedCount = signedAddenda(report);
  const claimedByMe = order ? order.claimed_by === user : true;
  const options = signOptions(report.status);

  const textArea = (key: TextKey, label: string, value: string, readOnly: boolean, rows = 6, extra?: ReactNode) => {
    const id = `report-${key.replace(':', '-')}`;
    return (
      <div className="report-text">
        <label htmlFor={id}>{label}</label>
        <textarea
          id={id}
          ref={areaRef(key)}
          rows={rows}
          value={value}
          readOnly={readOnly}
          onFocus={focusArea(key)}
          onChange={(e) => setText(key, e.target.value)}
          spellCheck
        />
        {dictating === key && (
          <p className="interim" aria-live="polite">
            <span className="rec-dot" aria-hidden="true" /> Listening… <em>{interim}</em>
          </p>
        )}
        {extra}
      </div>
    );
  };

  return (
    <main className="ris-page report-page" data-report-id={report.id} data-study-uid={report.study_uid} data-status={report.status}>
      <div className="ris-toolbar">
        <h2>Report</h2>
        <span className={`chip report-status status-${report.status}`} data-testid="report-status">
          {STATUS_LABEL[report.status]}
        </span>
        <span
          className={`save-line save-${save.kind}`}
          role="status"
          aria-live="polite"
          data-testid="save-state"
          data-state={save.kind}
        >
          {saveStateText(save)}
        </span>
        <span className="spacer" />
        {report.study_uid && <button onClick={() => go(`/viewer/${report.study_uid}`)}>Open images</button>}
        <a className="button-link" href={reportPdfUrl(report.id)} target="_blank" rel="noopener noreferrer">
          PDF
        </a>
        <button onClick={() => go('/reading')}>Back to reading</button>
      </div>
      <p className="report-who">
        <strong>{personName(report.patient_name)}</strong> <small className="muted">{report.patient_id}</small> · {report.procedure} · {report.accession}{' '}
        <StateChip state={report.order_state} />
        {template && (
          <small className="muted">
            {' '}
            · template {template.title || report.template_id} v{report.template_version}
          </small>
        )}
      </p>
      <ErrorLine error={error} />
      <Notice text={notice} />
      {serverProblems.other.length > 0 && (
        <ul className="problems" aria-label="Problems">
          {serverProblems.other.map((p, i) => (
            <li key={i}>{p}</li>
          ))}
        </ul>
      )}

      <div className="report-columns">
        <form className="report-form panel" aria-label="Report" onSubmit={(e) => e.preventDefault()}>
          {locked && (
            <p className="muted small" data-testid="read-only">
              This report is {STATUS_LABEL[report.status].toLowerCase()}: it is read-only and changes only by addendum.
            </p>
          )}
          {template === undefined && <p className="muted">Loading the template…</p>}
          {sectionsBefore.map(renderSection)}

          <section className="template-section level-1" aria-label="Narrative">
            {textArea('narrative', 'Findings (free text)', content.narrative, locked, 8)}
            {(!impressionField || content.impression !== '') && textArea('impression', 'Impression', content.impression, locked, 4)}
          </section>

          {sectionsAfter.map(renderSection)}

          <section className="template-section level-1" aria-label="Measurements">
            <h3>Measurements and key images</h3>
            <button type="button" onClick={() => void importMeasurements()} disabled={locked || !report.study_uid}>
              Insert measurements from the viewer
            </button>
            {content.measurements.length > 0 && (
              <table className="ris-table compact" aria-label="Measurements">
                <thead>
                  <tr>
                    <th>Measurement</th>
                    <th>Value</th>
                    <th>Image</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {content.measurements.map((m, i) => (
                    <tr key={`${m.label}-${i}`}>
                      <td>{m.label}</td>
                      <td className="num">{formatMeasurement(m)}</td>
                      <td className="small muted" title={m.sop_instance_uid}>
                        {m.sop_instance_uid ? `…${m.sop_instance_uid.slice(-8)}${m.frame && m.frame > 1 ? ` frame ${m.frame}` : ''}` : '—'}
                      </td>
                      <td>
                        {!locked && (
                          <button
                            type="button"
                            className="icon"
                            aria-label={`Remove ${m.label}`}
                            onClick={() => edit({ ...contentRef.current, measurements: contentRef.current.measurements.filter((_, j) => j !== i) })}
                          >
                            ×
                          </button>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            {content.key_images.length > 0 && (
              <ul className="key-image-list" aria-label="Key images">
                {content.key_images.map((k, i) => (
                  <li key={`${k.sop_instance_uid}-${k.frame}`}>
                    Key image …{k.sop_instance_uid.slice(-8)}
                    {k.frame && k.frame > 1 ? ` frame ${k.frame}` : ''}
                    {!locked && (
                      <button
                        type="button"
                        className="icon"
                        aria-label={`Remove key image ${i + 1}`}
                        onClick={() => edit({ ...contentRef.current, key_images: contentRef.current.key_images.filter((_, j) => j !== i) })}
                      >
                        ×
                      </button>
                    )}
                  </li>
                ))}
              </ul>
            )}
          </section>

          {(locked || content.addenda.length > 0) && (
            <section className="template-section level-1" aria-label="Addenda">
              <h3>Addenda</h3>
              {content.addenda.slice(0, signedCount).map((a, i) => (
                <div key={i} className="addendum signed">
                  <strong>Addendum {i + 1}</strong>
                  <p>{a}</p>
                </div>
              ))}
              {locked && (addendumOpen || pending !== undefined) ? (
                textArea('addendum', `Addendum ${signedCount + 1}`, pending ?? '', false, 4)
              ) : locked ? (
                <button
                  type="button"
                  onClick={() => {
                    setAddendumOpen(true);
                    lastArea.current = 'addendum';
                    requestAnimationFrame(() => areas.current.get('addendum')?.focus());
                  }}
                >
                  Add addendum
                </button>
              ) : null}
            </section>
          )}
        </form>

        <aside className="report-side">
          <section className="panel" aria-label="Signature">
            <h3>Sign</h3>
            {!claimedByMe && (
              <p className="notice small" data-testid="claim-hint">
                {order?.claimed_by ? `${order.claimed_by} holds this case: only they can sign.` : 'Signing needs the case claimed by you.'}{' '}
                {order && !order.claimed_by && (order.state === 'images_complete' || order.state === 'preliminary') && (
                  <button type="button" disabled={busy} onClick={() => void claim()}>
                    Claim
                  </button>
                )}
              </p>
            )}
            <div className="form-actions">
              {options.map((to) =>
                to === 'amended' && pending === undefined ? null : (
                  <button key={to} type="button" className={to === 'preliminary' ? '' : 'primary'} onClick={() => void openSign(to)}>
                    {SIGN_LABEL[to]}
                  </button>
                ),
              )}
              {options[0] === 'amended' && pending === undefined && <span className="muted small">Signed. Add an addendum to amend it.</span>}
            </div>
          </section>

          <section className="panel" aria-label="Signed versions">
            <h3>Signed versions</h3>
            {report.versions.length === 0 ? (
              <p className="muted small">Not signed yet.</p>
            ) : (
              <table className="ris-table compact versions" aria-label="Signed versions">
                <thead>
                  <tr>
                    <th>#</th>
                    <th>Status</th>
                    <th>Signed</th>
                    <th>SHA-256</th>
                    <th>Check</th>
                  </tr>
                </thead>
                <tbody>
                  {report.versions.map((v) => {
                    const check = verified[v.version];
                    return (
                      <tr key={v.version} data-version={v.version}>
                        <td>{v.version}</td>
                        <td>{STATUS_LABEL[v.status] ?? v.status}</td>
                        <td>
                          {v.signer}
                          <br />
                          <small className="muted">{v.signed_at ? dateTime(v.signed_at) : ''}</small>
                        </td>
                        <td>
                          <code className="sha" data-testid={`sha256-${v.version}`} data-sha256={v.sha256} title={v.sha256}>
                            {groupHex(v.sha256)}
                          </code>
                        </td>
                        <td>
                          <button type="button" onClick={() => void verify(v.version)} aria-label={`Verify version ${v.version}`}>
                            Verify
                          </button>{' '}
                          {check !== undefined && (
                            <span
                              data-testid={`verify-${v.version}`}
                              data-valid={typeof check === 'string' ? 'error' : String(check.valid)}
                              className={typeof check !== 'string' && check.valid ? 'valid' : 'error'}
                            >
                              {typeof check === 'string' ? check : check.valid ? '✓ valid' : `✗ ${check.problem ?? 'invalid'}`}
                            </span>
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            )}
          </section>

          <section className="panel critical-panel" aria-label="Critical result">
            <h3>Critical result</h3>
            {report.critical ? (
              <div className={`critical ${report.critical.acknowledged_at ? 'acknowledged' : 'open'}`} data-testid="critical">
                <p>
                  <strong>{report.critical.text}</strong>
                </p>
                <p className="small">Flagged {report.critical.flagged_at ? dateTime(report.critical.flagged_at) : ''}</p>
                {report.critical.acknowledged_at ? (
                  <p className="small">
                    Acknowledged by {report.critical.acknowledged_by} at {dateTime(report.critical.acknowledged_at)}
                    {report.critical.communication_min !== null && ` (after ${formatMinutes(report.critical.communication_min)})`}
                  </p>
                ) : (
                  <p className="small">
                    Not acknowledged yet.{' '}
                    <button type="button" onClick={() => void acknowledge()}>
                      Acknowledge
                    </button>
                  </p>
                )}
              </div>
            ) : (
              <>
                <label className="check">
                  <input type="checkbox" checked={criticalOpen} onChange={(e) => setCriticalOpen(e.target.checked)} /> Critical result
                </label>
                {criticalOpen && (
                  <form className="critical-form" onSubmit={flag} aria-label="Flag a critical result">
                    <label htmlFor="critical-text">Critical finding</label>
                    <textarea id="critical-text" rows={2} maxLength={1024} value={criticalText} onChange={(e) => setCriticalText(e.target.value)} />
                    <button type="submit" className="danger" disabled={!criticalText.trim()}>
                      Flag critical result
                    </button>
                  </form>
                )}
              </>
            )}
            <ErrorLine error={criticalError} />
          </section>

          <section className="panel" aria-label="Macros">
            <h3>Macros</h3>
            <p className="muted small">Inserted at the cursor of the last text field you were in.</p>
            <ul className="macros">
              {macros.map((m, i) => (
                <li key={`${m}-${i}`}>
                  <button type="button" className="macro" onMouseDown={(e) => e.preventDefault()} onClick={() => insertMacro(m)} aria-label={`Insert macro: ${m}`}>
                    {m}
                  </button>
                  <button type="button" className="icon" onClick={() => changeMacros(macros.filter((_, j) => j !== i))} aria-label={`Remove macro: ${m}`}>
                    ×
                  </button>
                </li>
              ))}
            </ul>
            <form
              className="row-form"
              aria-label="Add a macro"
              onSubmit={(e) => {
                e.preventDefault();
                const t = newMacro.trim();
                if (t && !macros.includes(t)) changeMacros([...macros, t]);
                setNewMacro('');
              }}
            >
              <input aria-label="New macro" placeholder="New phrase" value={newMacro} onChange={(e) => setNewMacro(e.target.value)} />
              <button type="submit" disabled={!newMacro.trim()}>
                Add
              </button>
            </form>
            {canDictate && (
              <p>
                <button
                  type="button"
                  aria-pressed={dictating !== null}
                  className={dictating ? 'on' : ''}
                  onMouseDown={(e) => e.preventDefault()}
                  onClick={toggleDictation}
                >
                  {dictating ? 'Stop dictation' : 'Dictate'}
                </button>
              </p>
            )}
          </section>

          <PriorReport order={order} currentOrderId={report.order_id} />
        </aside>
      </div>

      {signing && <SignDialog status={signing} onSign={(pw, code) => sign(signing, pw, code)} onClose={() => setSigning(null)} />}
    </main>
  );
}

/** One structured field of the template, with its label and problems. */
function Field({
  field: f,
  value,
  problems,
  disabled,
  onChange,
  textarea,
}: {
  field: TemplateField;
  value: string | string[] | undefined;
  problems: string[];
  disabled: boolean;
  onChange: (v: string | string[]) => void;
  textarea: (label: string) => ReactNode;
}) {
  const id = `rf-${f.id}`;
  const errId = `${id}-problems`;
  const label = (
    <>
      {f.label}
      {f.required && (
        <span className="required" aria-hidden="true">
          {' '}
          *
        </span>
      )}
    </>
  );
  const aria = {
    'aria-required': f.required || undefined,
    'aria-invalid': problems.length > 0 || undefined,
    'aria-describedby': problems.length ? errId : undefined,
  };
  const str = typeof value === 'string' ? value : Array.isArray(value) ? value.join(', ') : '';
  const list = Array.isArray(value) ? value : value ? [value] : [];
  let control: ReactNode;
  switch (f.kind) {
    case 'textarea':
      return (
        <div className={`field field-textarea wide${problems.length ? ' invalid' : ''}`} data-field={f.id} data-kind={f.kind} data-required={f.required || undefined}>
          {textarea(f.required ? `${f.label} *` : f.label)}
          <Problems id={errId} problems={problems} />
        </div>
      );
    case 'choice':
      control = (
        <select id={id} value={str} disabled={disabled} onChange={(e) => onChange(e.target.value)} {...aria}>
          <option value="">—</option>
          {(f.options ?? []).map((o) => (
            <option key={o.value} value={o.value}>
              {o.label}
            </option>
          ))}
        </select>
      );
      break;
    case 'multichoice':
      return (
        <fieldset className={`field field-multi${problems.length ? ' invalid' : ''}`} data-field={f.id} data-kind={f.kind} data-required={f.required || undefined} {...(problems.length ? { 'aria-describedby': errId } : {})}>
          <legend>{label}</legend>
          {(f.options ?? []).map((o) => (
            <label key={o.value} className="check">
              <input
                type="checkbox"
                checked={list.includes(o.value)}
                disabled={disabled}
                onChange={(e) => onChange(e.target.checked ? [...list, o.value] : list.filter((x) => x !== o.value))}
              />{' '}
              {o.label}
            </label>
          ))}
          <Problems id={errId} problems={problems} />
        </fieldset>
      );
    case 'boolean': {
      const on = f.options?.[0]?.value ?? 'true';
      return (
        <div className={`field field-bool${problems.length ? ' invalid' : ''}`} data-field={f.id} data-kind={f.kind} data-required={f.required || undefined}>
          <label className="check">
            <input id={id} type="checkbox" checked={str === on} disabled={disabled} onChange={(e) => onChange(e.target.checked ? on : '')} {...aria} /> {label}
          </label>
          <Problems id={errId} problems={problems} />
        </div>
      );
    }
    case 'number':
      control = (
        <input
          id={id}
          type="number"
          inputMode="decimal"
          step={f.step ?? 'any'}
          min={f.min}
          max={f.max}
          value={str}
          readOnly={disabled}
          placeholder={f.placeholder}
          onChange={(e) => onChange(e.target.value)}
          {...aria}
        />
      );
      if (f.unit) {
        control = (
          <span className="with-unit">
            {control} <span className="unit">{f.unit}</span>
          </span>
        );
      }
      break;
    default:
      control = (
        <input
          id={id}
          type={f.kind === 'date' ? 'date' : f.kind === 'time' ? 'time' : 'text'}
          value={str}
          readOnly={disabled}
          placeholder={f.placeholder}
          onChange={(e) => onChange(e.target.value)}
          {...aria}
        />
      );
  }
  return (
    <div className={`field field-${f.kind}${problems.length ? ' invalid' : ''}`} data-field={f.id} data-kind={f.kind} data-required={f.required || undefined}>
      <label htmlFor={id}>{label}</label>
      {control}
      <Problems id={errId} problems={problems} />
    </div>
  );
}

function Problems({ id, problems }: { id: string; problems: string[] }) {
  if (!problems.length) return null;
  return (
    <ul className="field-problems error" id={id}>
      {problems.map((p, i) => (
        <li key={i}>{p}</li>
      ))}
    </ul>
  );
}

/** The password again (and the second factor's code when the server asks for it). */
function SignDialog({ status, onSign, onClose }: { status: SignStatus; onSign: (password: string, code?: string) => Promise<SignOutcome>; onClose: () => void }) {
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needCode, setNeedCode] = useState(false);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    const r = await onSign(password, needCode ? code.trim() : undefined);
    setBusy(false);
    if (r.needCode) setNeedCode(true);
    if (r.error) setError(r.error);
  };
  // a modal <dialog>: the page behind is inert, Escape cancels
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      className="modal panel"
      aria-labelledby="sign-title"
      onCancel={(e) => {
        e.preventDefault();
        if (!busy) onClose();
      }}
    >
      <h3 id="sign-title">{SIGN_LABEL[status]}</h3>
      <p className="small">
        {status === 'amended'
          ? 'Signing adds the addendum to the signed report.'
          : `Signing makes this version ${status === 'final' ? 'final: it then changes only by addendum' : 'preliminary'}.`}{' '}
        Enter your password to confirm it is you.
      </p>
      <form className="sign-form" onSubmit={submit}>
        <label>
          Password
          <input type="password" autoComplete="current-password" autoFocus value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {needCode && (
          <label>
            Code
            <input autoComplete="one-time-code" inputMode="numeric" autoFocus value={code} onChange={(e) => setCode(e.target.value)} />
          </label>
        )}
        <ErrorLine error={error} />
        <div className="form-actions">
          <button type="submit" className="primary" disabled={busy || !password || (needCode && !code.trim())}>
            {busy ? 'Signing…' : 'Sign'}
          </button>
          <button type="button" onClick={onClose} disabled={busy}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}

/** The patient's latest signed report of another order, read-only, for comparison. */
function PriorReport({ order, currentOrderId }: { order?: OrderDetail; currentOrderId: string }) {
  const [prior, setPrior] = useState<{ report: Report; template: ParsedTemplate | null } | null>();
  const patient = order?.patient.id;
  useEffect(() => {
    if (!patient) return;
    let live = true;
    (async () => {
      const orders = (await listOrders({ patient, state: 'final,amended', limit: 20 })).filter((o) => o.id !== currentOrderId);
      for (const o of orders.slice(0, 5)) {
        const r = await reportOfOrder(o.id);
        if (r && r.status !== 'draft') {
          const t = await loadTemplate(r.template_id, r.template_version).catch(() => null);
          if (live) setPrior({ report: r, template: t });
          return;
        }
      }
      if (live) setPrior(null);
    })().catch(() => live && setPrior(null));
    return () => {
      live = false;
    };
  }, [patient, currentOrderId]);

  if (!prior) return null;
  const { report: r, template: t } = prior;
  const c = normalize(r.content);
  const last = r.versions[r.versions.length - 1];
  return (
    <section className="panel prior-report" aria-label="Prior report">
      <h3>Prior report</h3>
      <p className="small">
        {r.procedure} · {r.accession} · {STATUS_LABEL[r.status]}
        {last?.signed_at && ` ${dateTime(last.signed_at)}`} {last && <span className="muted">by {last.signer}</span>}
      </p>
      {t && (
        <dl className="prior-values">
          {t.fields
            .filter((f) => c.values[f.id] !== undefined && displayValue(f, c.values[f.id]) !== '')
            .map((f) => (
              <div key={f.id}>
                <dt>{f.label}</dt>
                <dd>{displayValue(f, c.values[f.id])}</dd>
              </div>
            ))}
        </dl>
      )}
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
      {c.addenda.map((a, i) => (
        <p key={i} className="prewrap">
          <strong>Addendum {i + 1}:</strong> {a}
        </p>
      ))}
    </section>
  );
}
