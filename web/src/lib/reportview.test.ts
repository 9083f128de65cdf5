import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from './api';
import type { SavedMeasurement } from './annotations';
import { readSpeechEvent } from './dictation';
import {
  KEEPALIVE_LIMIT,
  createReport,
  emptyContent,
  getTemplate,
  listTemplates,
  needsSecondFactor,
  putTemplate,
  reportOfOrder,
  reportPdfUrl,
  saveReport,
  signProblems,
  signReport,
  verifyVersion,
  type Version,
} from './reports';
import {
  DEFAULT_MACROS,
  UCUM_HU,
  appendText,
  bestTemplate,
  fromAnnotations,
  formatMeasurement,
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
} from './reportview';

function saved(tool: string, values: Record<string, number | string>, extra: Partial<SavedMeasurement> = {}): SavedMeasurement {
  return { uid: `u-${tool}`, tool, seriesUid: '1.2', sopInstanceUid: '1.2.3', frame: 1, frameOfReferenceUid: '', points: [[0, 0, 0]], summary: '', values, ...extra };
}

describe('measurements from the viewer', () => {
  it('maps each tool to labelled values in UCUM units', () => {
    const { measurements, keyImages } = fromAnnotations({
      measurements: [
        saved('Length', { length: 12.345, unit: 'mm' }),
        saved('Length', { length: 20 }, { label: 'Aorta', frame: 3 }),
        saved('Angle', { angle: 89.96 }),
        saved('EllipticalROI', { mean: 41.25, stdDev: 19.8, area: 307.4, modalityUnit: 'HU', areaUnit: 'mm²' }, { label: 'Liver' }),
        saved('Bidirectional', { length: 20.04, width: 11.26, unit: 'mm' }),
        saved('Probe', {}, { summary: '-851 HU' }),
        saved('ArrowAnnotate', {}, { label: 'nodule' }),
      ],
      keyImages: [{ seriesUid: '1.2', sopInstanceUid: '1.2.9', frame: 2 }],
    });
    const where = { sop_instance_uid: '1.2.3', frame: 1 };
    expect(measurements).toEqual([
      { label: 'Length 1', value: 12.3, unit: 'mm', ...where },
      { label: 'Aorta', value: 20, unit: 'mm', sop_instance_uid: '1.2.3', frame: 3 },
      { label: 'Angle 1', value: 90, unit: 'deg', ...where },
      { label: 'Liver mean', value: 41.3, unit: UCUM_HU, ...where },
      { label: 'Liver area', value: 307, unit: 'mm2', ...where },
      { label: 'Lesion 1 long axis', value: 20, unit: 'mm', ...where },
      { label: 'Lesion 1 short axis', value: 11.3, unit: 'mm', ...where },
      { label: 'Point 1', value: -851, unit: UCUM_HU, ...where },
    ]);
    expect(keyImages).toEqual([{ sop_instance_uid: '1.2.9', frame: 2 }]);
    expect(formatMeasurement(measurements[3])).toBe('41.3 HU');
    expect(formatMeasurement(measurements[2])).toBe('90°');
    expect(formatMeasurement(measurements[4])).toBe('307 mm²');
  });

  it('merges a second import without duplicates', () => {
    const a = { label: 'Length 1', value: 12, unit: 'mm', sop_instance_uid: '1', frame: 1 };
    const b = { label: 'Angle 1', value: 30, unit: 'deg', sop_instance_uid: '1', frame: 1 };
    expect(mergeMeasurements([a], [{ ...a, value: 13 }, b])).toEqual([{ ...a, value: 13 }, b]);
    const k = { sop_instance_uid: '1', frame: 1 };
    expect(mergeKeyImages([k], [{ ...k }, { sop_instance_uid: '2', frame: 1 }])).toHaveLength(2);
  });
});

describe('lifecycle', () => {
  const v = (version: number, status: Version['status']): Version => ({ version, status, signer: 'd', signed_at: null, sha256: 'x', sr_sop_uid: '' });

  it('offers the signatures each status allows', () => {
    expect(signOptions('draft')).toEqual(['preliminary', 'final']);
    expect(signOptions('preliminary')).toEqual(['final']);
    expect(signOptions('final')).toEqual(['amended']);
    expect(signOptions('amended')).toEqual(['amended']);
  });

  it('tells the addendum being written from the signed ones', () => {
    const final = { versions: [v(1, 'preliminary'), v(2, 'final')] };
    expect(signedAddenda(final)).toBe(0);
    expect(pendingAddendum(final, { addenda: [] })).toBeUndefined();
    expect(pendingAddendum(final, { addenda: ['typo'] })).toBe('typo');
    expect(withAddendum(final, { addenda: ['typo'] }, 'typo fixed')).toEqual(['typo fixed']);
    const amended = { versions: [...final.versions, v(3, 'amended')] };
    expect(pendingAddendum(amended, { addenda: ['first'] })).toBeUndefined();
    expect(withAddendum(amended, { addenda: ['first'] }, 'second')).toEqual(['first', 'second']);
  });
});

describe('text editing and macros', () => {
  it('inserts a phrase at the cursor, spaced from its neighbours', () => {
    expect(insertAt('', 0, 0, 'No acute abnormality.')).toEqual({ value: 'No acute abnormality.', caret: 21 });
    expect(insertAt('Lungs clear.', 12, 12, 'Heart normal.')).toEqual({ value: 'Lungs clear. Heart normal.', caret: 26 });
    expect(insertAt('A B', 1, 2, 'x')).toEqual({ value: 'A x B', caret: 3 });
    expect(insertAt('Lungs clear.\n', 13, 13, 'Next.').value).toBe('Lungs clear.\nNext.');
    expect(insertAt('abc', 99, 99, 'd').value).toBe('abc d');
  });

  it('appends dictated words', () => {
    expect(appendText('', ' hello ')).toBe('hello');
    expect(appendText('Lungs', 'are clear')).toBe('Lungs are clear');
    expect(appendText('Lungs\n', 'clear')).toBe('Lungs\nclear');
    expect(appendText('Lungs', '  ')).toBe('Lungs');
  });

  it('keeps the macros per user, with defaults', () => {
    const mem = new Map<string, string>();
    const store = { getItem: (k: string) => mem.get(k) ?? null, setItem: (k: string, v: string) => void mem.set(k, v) };
    expect(loadMacros(store, 'demo')).toEqual(DEFAULT_MACROS);
    saveMacros(store, 'demo', ['Unchanged.']);
    expect(loadMacros(store, 'demo')).toEqual(['Unchanged.']);
    expect(loadMacros(store, 'other')).toEqual(DEFAULT_MACROS);
    mem.set('radris.macros.x', '{bad');
    expect(loadMacros(store, 'x')).toEqual(DEFAULT_MACROS);
  });

  it('reads interim and final speech results', () => {
    const r = (t: string, isFinal: boolean) => Object.assign([{ transcript: t }], { isFinal });
    expect(readSpeechEvent({ resultIndex: 1, results: [r('old', true), r('lungs are', true), r(' clear', false)] })).toEqual({ final: 'lungs are', interim: ' clear' });
  });
});

describe('small helpers', () => {
  it('says how the autosave went', () => {
    expect(saveStateText({ kind: 'saved' })).toBe('Saved');
    expect(saveStateText({ kind: 'saving' })).toBe('Saving…');
    expect(saveStateText({ kind: 'error', reason: 'offline' })).toBe('Not saved: offline');
  });
  it('compares content regardless of key order', () => {
    expect(stableJson({ b: 1, a: { d: [{ y: 1, x: 2 }], c: 2 } })).toBe(stableJson({ a: { c: 2, d: [{ x: 2, y: 1 }] }, b: 1 }));
    expect(stableJson({ a: [1, 2] })).not.toBe(stableJson({ a: [2, 1] }));
  });
  it('picks the template that fits the procedure', () => {
    const t = (id: string, title: string) => ({ id, title, version: 1, created_by: '', created_at: null });
    const list = [t('generic', 'General radiology report'), t('ct-chest', 'CT Chest'), t('mr-brain', 'MR Brain')];
    expect(bestTemplate(list, 'CT chest with contrast')).toBe('ct-chest');
    expect(bestTemplate(list, 'MR brain')).toBe('mr-brain');
    expect(bestTemplate(list, 'Ultrasound')).toBe('generic');
    expect(bestTemplate([], 'x')).toBe('');
  });
  it('groups a hash for reading', () => {
    expect(groupHex('0123456789abcdef01')).toBe('01234567 89abcdef 01');
  });
});

describe('report client', () => {
  const calls: { url: string; init: RequestInit }[] = [];
  function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
    calls.length = 0;
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init: RequestInit) => {
        calls.push({ url, init });
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        return new Response(text, { status, headers: { 'Content-Type': status < 400 ? 'application/json' : 'application/problem+json', ...headers } });
      }),
    );
  }
  afterEach(() => vi.unstubAllGlobals());

  it('calls the contract paths', async () => {
    answer(200, { items: [{ id: 'ct-chest', version: 2, title: 'CT Chest', created_by: 'system', created_at: null }] });
    expect((await listTemplates())[0].id).toBe('ct-chest');
    expect(calls[0].url).toBe('/api/v1/reports/templates');
    answer(201, { id: 'r1' });
    await createReport('o 1', 'ct-chest');
    expect(calls[0].url).toBe('/api/v1/reports');
    expect(calls[0].init.method).toBe('POST');
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ order_id: 'o 1', template_id: 'ct-chest' });
    answer(200, { rev: 4 });
    expect(await saveReport('r/1', 3, emptyContent())).toEqual({ rev: 4 });
    expect(calls[0].url).toBe('/api/v1/reports/r%2F1');
    expect(calls[0].init.method).toBe('PUT');
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ rev: 3, content: emptyContent() });
    expect(calls[0].init.keepalive).toBe(false);
    await saveReport('r1', 3, emptyContent(), { keepalive: true });
    expect(calls[1].init.keepalive).toBe(true);
    await saveReport('r1', 3, { ...emptyContent(), narrative: 'x'.repeat(KEEPALIVE_LIMIT) }, { keepalive: true });
    expect(calls[2].init.keepalive).toBe(false);
    answer(200, { version: { version: 1 }, sr_sop_instance_uid: '1.2' });
    await signReport('r1', 'final', 'pw');
    expect(calls[0].url).toBe('/api/v1/reports/r1/sign');
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ status: 'final', password: 'pw' });
    await signReport('r1', 'amended', 'pw', '123456');
    expect(JSON.parse(String(calls[1].init.body))).toEqual({ status: 'amended', password: 'pw', code: '123456' });
    answer(200, { version: 1, valid: true });
    await verifyVersion('r1', 1);
    expect(calls[0].url).toBe('/api/v1/reports/r1/versions/1/verify');
    expect(reportPdfUrl('r1')).toBe('/api/v1/reports/r1/pdf');
  });

  it('reads and writes template XHTML as text', async () => {
    answer(200, '<html/>', { 'Content-Type': 'application/xhtml+xml', 'X-Template-Version': '3' });
    expect(await getTemplate('ct-chest')).toEqual({ version: 3, xhtml: '<html/>' });
    expect(calls[0].url).toBe('/api/v1/reports/templates/ct-chest');
    await getTemplate('ct-chest', 2);
    expect(calls[1].url).toBe('/api/v1/reports/templates/ct-chest?version=2');
    answer(200, { id: 't', version: 1, title: 'T' });
    await putTemplate('t', '<html/>');
    expect(calls[0].init.method).toBe('PUT');
    expect(calls[0].init.body).toBe('<html/>');
    expect(new Headers(calls[0].init.headers).get('Content-Type')).toBe('application/xhtml+xml');
  });

  it("answers null for an order without a report, and reads the server's refusals", async () => {
    answer(404, { title: 'Not Found', status: 404, detail: 'a report of order o1 not found' });
    expect(await reportOfOrder('o1')).toBeNull();
    expect(calls[0].url).toBe('/api/v1/ris/orders/o1/report');
    answer(422, { title: 'Unprocessable Entity', status: 422, detail: 'the report cannot be signed', problems: ['indication is required'] });
    const e422 = await signReport('r1', 'final', 'pw').catch((x: unknown) => x);
    expect(signProblems(e422)).toEqual(['indication is required']);
    expect(needsSecondFactor(e422)).toBe(false);
    answer(403, { title: 'Forbidden', status: 403, detail: 'send code', second_factor_required: true });
    const e403 = await signReport('r1', 'final', 'pw').catch((x: unknown) => x);
    expect(e403).toBeInstanceOf(ApiError);
    expect(needsSecondFactor(e403)).toBe(true);
    expect(signProblems(e403)).toEqual([]);
  });
});
