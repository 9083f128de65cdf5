import { describe, expect, it } from 'vitest';
import { AUTO_MPR_MAX_SLICES, chooseHanging, matchPrior, mprHanging, primarySeries, relayout, type SeriesInfo } from './hanging';

const s = (uid: string, modality: string, n: number, description = '', study = 'S1'): SeriesInfo => ({
  seriesUid: uid,
  studyUid: study,
  modality,
  description,
  numInstances: n,
  seriesNumber: uid,
});

describe('hanging protocols', () => {
  it('puts a CT volume in axial, sagittal and coronal', () => {
    const h = chooseHanging([s('1', 'CT', 300, 'Lung 1.0 mm'), s('2', 'SR', 1)], undefined, false);
    expect(h.protocol).toBe('ct-3-plane');
    expect(h.layout).toEqual({ rows: 1, cols: 3 });
    expect(h.viewports.map((v) => v.kind)).toEqual(['stack', 'sagittal', 'coronal']);
  });
  it('shows current and prior side by side, synchronised', () => {
    const prior = [s('p1', 'CT', 100, 'Lung 3 mm', 'S0'), s('p2', 'CT', 2, 'Scout', 'S0')];
    const h = chooseHanging([s('1', 'CT', 300, 'Lung 1.0 mm')], prior, false);
    expect(h.protocol).toBe('current-prior');
    expect(h.syncPrior).toBe(true);
    expect(h.viewports.map((v) => [v.seriesUid, v.role])).toEqual([
      ['1', 'current'],
      ['p1', 'prior'],
    ]);
  });
  it('ignores a prior of another modality', () => {
    const h = chooseHanging([s('1', 'MR', 24)], [s('p', 'CT', 40, '', 'S0')], false);
    expect(h.protocol).toBe('single');
  });
  it('uses one stack viewport on a phone', () => {
    const h = chooseHanging([s('1', 'CT', 300)], [s('p', 'CT', 300, '', 'S0')], true);
    expect(h.layout).toEqual({ rows: 1, cols: 1 });
    expect(h.viewports).toHaveLength(1);
    expect(h.viewports[0].kind).toBe('stack');
  });
  it('opens a very long series as a stack, not a volume', () => {
    const h = chooseHanging([s('1', 'CT', AUTO_MPR_MAX_SLICES + 1)], undefined, false);
    expect(h.viewports.every((v) => v.kind === 'stack')).toBe(true);
  });
  it('hangs PET/CT side by side with CT first', () => {
    const h = chooseHanging([s('pet', 'PT', 80), s('ct', 'CT', 10)], undefined, false);
    expect(h.protocol).toBe('side-by-side');
    expect(h.viewports.map((v) => v.seriesUid)).toEqual(['ct', 'pet']);
  });
  it('prefers image series and the most images', () => {
    expect(primarySeries([s('a', 'SR', 5), s('b', 'CT', 2), s('c', 'CT', 40)])?.seriesUid).toBe('c');
    expect(primarySeries([s('a', 'SR', 5)])).toBeUndefined();
  });
  it('matches the prior by modality and description', () => {
    const m = matchPrior(s('1', 'CT', 300, 'Lung 1.0 mm'), [s('a', 'CT', 400, 'Abdomen'), s('b', 'CT', 100, 'Lung 3 mm'), s('c', 'MR', 500, 'Lung')]);
    expect(m?.seriesUid).toBe('b');
  });
  it('builds MPR and relayouts', () => {
    expect(mprHanging(s('1', 'CT', 300)).viewports.map((v) => v.kind)).toEqual(['axial', 'sagittal', 'coronal']);
    const series = [s('1', 'CT', 300), s('2', 'CT', 50), s('3', 'CT', 20)];
    const h = relayout(chooseHanging(series, undefined, true), { rows: 2, cols: 2 }, series);
    expect(h.viewports.map((v) => [v.id, v.seriesUid])).toEqual([
      ['vp-0', '1'],
      ['vp-1', '2'],
      ['vp-2', '3'],
    ]);
    expect(relayout(h, { rows: 1, cols: 1 }, series).viewports).toHaveLength(1);
  });
});
