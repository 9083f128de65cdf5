import { describe, expect, it } from 'vitest';
import { ageAt, dicomDate, dicomTime, personName } from './format';
import { SearchError, emptySearch, lastDays, toQuery } from './query';
import { clock, idleState } from './idle';
import { CT_PRESETS, fromVoiRange, presetsFor, toVoiRange } from './presets';
import { cacheBytes, volumeFits } from './cachePolicy';

describe('format', () => {
  it('formats person names the reading-room way', () => {
    expect(personName('Lindqvist^Maria')).toBe('LINDQVIST, Maria');
    expect(personName('Doe^John^Q^Dr^Jr')).toBe('DOE Jr, Dr John Q');
    expect(personName('Yamada^Tarou=山田^太郎')).toBe('YAMADA, Tarou');
    expect(personName('')).toBe('');
  });
  it('formats dates, times and ages', () => {
    expect(dicomDate('20260912')).toBe('2026-09-12');
    expect(dicomDate('bad')).toBe('bad');
    expect(dicomTime('083000.123')).toBe('08:30');
    expect(ageAt('19580314', '20260912')).toBe('68Y');
    expect(ageAt('19580914', '20260912')).toBe('67Y');
    expect(ageAt('', '20260912')).toBe('');
  });
});

describe('study search query', () => {
  it('maps the form to the REST parameters', () => {
    const q = toQuery({ ...emptySearch, name: 'lind', modality: 'ct', dateFrom: '2026-01-01', dateTo: '2026-12-31' }, 'CUR', 25);
    expect(q.get('patient_name')).toBe('lind*');
    expect(q.get('modality')).toBe('CT');
    expect(q.get('date_from')).toBe('20260101');
    expect(q.get('date_to')).toBe('20261231');
    expect(q.get('cursor')).toBe('CUR');
    expect(q.get('limit')).toBe('25');
    expect(q.get('sort')).toBe('-date');
  });
  it('keeps explicit wildcards and omits empty fields', () => {
    const q = toQuery({ ...emptySearch, name: '*qvist', accession: ' DA0001 ' });
    expect(q.get('patient_name')).toBe('*qvist');
    expect(q.get('accession_number')).toBe('DA0001');
    expect(q.has('patient_id')).toBe(false);
    expect(q.has('cursor')).toBe(false);
  });
  it('refuses a reversed or malformed date range', () => {
    expect(() => toQuery({ ...emptySearch, dateFrom: '2026-02-01', dateTo: '2026-01-01' })).toThrow(SearchError);
    expect(() => toQuery({ ...emptySearch, dateFrom: '01/02/2026' })).toThrow(SearchError);
  });
  it('computes quick ranges', () => {
    expect(lastDays(1, new Date('2026-11-28T10:00:00Z'))).toEqual({ dateFrom: '2026-11-28', dateTo: '2026-11-28' });
    expect(lastDays(7, new Date('2026-11-28T10:00:00Z'))).toEqual({ dateFrom: '2026-11-22', dateTo: '2026-11-28' });
  });
});

describe('idle logoff', () => {
  it('warns before and expires at the server timeout', () => {
    const t0 = 1_000_000;
    expect(idleState(t0, t0 + 60_000, 900, 120)).toEqual({ kind: 'active' });
    expect(idleState(t0, t0 + 800_000, 900, 120)).toEqual({ kind: 'warning', secondsLeft: 100 });
    expect(idleState(t0, t0 + 900_000, 900, 120)).toEqual({ kind: 'expired' });
    expect(clock(100)).toBe('1:40');
    expect(clock(5)).toBe('0:05');
  });
});

describe('window presets', () => {
  it('has the five CT presets radiologists expect', () => {
    expect(CT_PRESETS.map((p) => p.id)).toEqual(['lung', 'mediastinum', 'bone', 'brain', 'abdomen']);
    expect(presetsFor('CT')).toHaveLength(5);
    expect(presetsFor('MR')).toHaveLength(0);
  });
  it('converts width/level to a VOI range and back', () => {
    const r = toVoiRange(1500, -600);
    expect(r.upper - r.lower).toBeCloseTo(1499);
    const back = fromVoiRange(r);
    expect(back.width).toBeCloseTo(1500);
    expect(back.center).toBeCloseTo(-600);
    expect(toVoiRange(0, 40).upper).toBeGreaterThanOrEqual(toVoiRange(0, 40).lower);
  });
});

describe('cache policy', () => {
  it('caps the decoded-image cache from device memory', () => {
    const MiB = 1024 * 1024;
    expect(cacheBytes(8, false)).toBe(1536 * MiB);
    expect(cacheBytes(2, true)).toBe(512 * MiB);
    expect(cacheBytes(0.5, true)).toBe(256 * MiB);
    expect(cacheBytes(undefined, false)).toBe(1024 * MiB);
    // the workstation's own setting wins, within bounds
    expect(cacheBytes(8, false, 64)).toBe(64 * MiB);
    expect(cacheBytes(8, false, 1)).toBe(16 * MiB);
    expect(cacheBytes(8, false, 1e9)).toBe(4096 * MiB);
    expect(cacheBytes(8, false, Number.NaN)).toBe(1536 * MiB);
  });
  it('refuses a volume that would not fit', () => {
    const budget = 1024 * 1024 * 1024;
    expect(volumeFits(512, 512, 300, 2, budget)).toBe(true);
    expect(volumeFits(512, 512, 2000, 2, budget)).toBe(false);
  });
});
