import { describe, expect, it } from 'vitest';
import { imageIdsFor, parseImageId, sortInstances, str } from './dicom';
import type { DicomJson } from './api';

const inst = (sop: string, z: number | null, num: number, frames?: number): DicomJson => {
  const d: DicomJson = {
    '00080018': { vr: 'UI', Value: [sop] },
    '00200013': { vr: 'IS', Value: [num] },
    '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Doe^Jane' }] },
  };
  if (z !== null) {
    d['00200032'] = { vr: 'DS', Value: [0, 0, z] };
    d['00200037'] = { vr: 'DS', Value: [1, 0, 0, 0, 1, 0] };
  }
  if (frames) d['00280008'] = { vr: 'IS', Value: [frames] };
  return d;
};

describe('series ordering', () => {
  it('orders along the slice normal, head first, whatever the instance numbers say', () => {
    const sorted = sortInstances([inst('a', -10, 1), inst('b', 0, 3), inst('c', -5, 2)]);
    expect(sorted.map((d) => str(d, '00080018'))).toEqual(['b', 'c', 'a']);
  });
  it('falls back to instance numbers without geometry', () => {
    const sorted = sortInstances([inst('a', null, 3), inst('b', null, 1), inst('c', -5, 2)]);
    expect(sorted.map((d) => str(d, '00080018'))).toEqual(['b', 'c', 'a']);
  });
  it('reads person names from DICOM JSON', () => {
    expect(str(inst('a', 0, 1), '00100010')).toBe('Doe^Jane');
    expect(str(inst('a', 0, 1), '00181234')).toBe('');
  });
  it('makes one image id per frame and parses them back', () => {
    const ids = imageIdsFor('http://h/dicom-web', '1.2', '1.2.3', [inst('1.2.3.4', 0, 1, 3), inst('1.2.3.5', 1, 2)]);
    expect(ids).toHaveLength(4);
    expect(ids[2]).toBe('wadors:http://h/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/3');
    expect(parseImageId(ids[3])).toEqual({ sopInstanceUid: '1.2.3.5', frame: 1 });
    expect(parseImageId('wadouri:x')).toBeUndefined();
  });
});
