import { describe, expect, it } from 'vitest';
import { fromSaved, parseDocument, summarize, toSaved, toggleKeyImage, type CsAnnotation } from './annotations';

const imageId = 'wadors:http://h/dicom-web/studies/1/series/1.2/instances/1.2.3/frames/1';
const locate = (id: string) => (id === imageId ? { seriesUid: '1.2', sopInstanceUid: '1.2.3', frame: 1 } : undefined);

const length: CsAnnotation = {
  annotationUID: 'u1',
  metadata: { toolName: 'Length', FrameOfReferenceUID: '9.9', referencedImageId: imageId, viewPlaneNormal: [0, 0, -1], viewUp: [0, -1, 0] },
  data: {
    handles: { points: [[-72.2, 0, -150], [72.2, 0, -150]], textBox: { worldPosition: [80, 5, -150] } },
    cachedStats: { 'imageId:x': { length: 144.4123, unit: 'mm' } },
  },
};

describe('measurement summaries', () => {
  it('reads each tool as a radiologist would', () => {
    expect(summarize('Length', { length: 144.41, unit: 'mm' })).toBe('144.4 mm');
    expect(summarize('Angle', { angle: 89.96 })).toBe('90.0°');
    expect(summarize('Bidirectional', { length: 20.04, width: 11.26, unit: 'mm' })).toBe('20.0 × 11.3 mm');
    expect(summarize('EllipticalROI', { mean: 41.25, stdDev: 19.8, area: 307.4, modalityUnit: 'HU', areaUnit: 'mm²' })).toBe(
      'mean 41.3 HU, SD 19.8, area 307 mm²',
    );
    expect(summarize('Probe', { value: [-851], modalityUnit: 'HU' })).toBe('-851 HU');
    expect(summarize('ArrowAnnotate', {}, 'nodule')).toBe('nodule');
    expect(summarize('Length', {})).toBe('? mm');
  });
});

describe('saved form', () => {
  it('round-trips a length measurement through the saved form', () => {
    const saved = toSaved(length, locate);
    expect(saved).toMatchObject({ uid: 'u1', tool: 'Length', seriesUid: '1.2', sopInstanceUid: '1.2.3', frame: 1, summary: '144.4 mm' });
    expect(saved?.values.length).toBeCloseTo(144.412);
    const back = fromSaved(saved!, (sop, frame) => (sop === '1.2.3' && frame === 1 ? imageId : undefined));
    expect(back?.metadata.referencedImageId).toBe(imageId);
    expect(back?.data.handles.points).toEqual(length.data.handles.points);
    expect(back?.annotationUID).toBe('u1');
  });
  it('skips annotations it cannot place', () => {
    expect(toSaved({ ...length, metadata: { ...length.metadata, toolName: 'Crosshairs' } }, locate)).toBeUndefined();
    expect(toSaved({ ...length, metadata: { ...length.metadata, referencedImageId: 'volume:x' } }, locate)).toBeUndefined();
    expect(fromSaved(toSaved(length, locate)!, () => undefined)).toBeUndefined();
  });
  it('validates documents from the server', () => {
    const ok = toSaved(length, locate);
    const doc = parseDocument({ measurements: [ok, { uid: 3 }, null, { ...ok, points: [[1, 2]] }], keyImages: [{ sopInstanceUid: '1', frame: 1, seriesUid: '2' }, { frame: 'x' }] });
    expect(doc.measurements).toHaveLength(1);
    expect(doc.keyImages).toHaveLength(1);
    expect(parseDocument(null)).toEqual({ measurements: [], keyImages: [] });
  });
  it('toggles key images', () => {
    const k = { seriesUid: 's', sopInstanceUid: 'i', frame: 1 };
    const once = toggleKeyImage([], k);
    expect(once).toHaveLength(1);
    expect(toggleKeyImage(once, { ...k })).toHaveLength(0);
  });
});
