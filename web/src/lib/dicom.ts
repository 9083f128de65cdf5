// Reading DICOM JSON (PS3.18 F.2) and ordering a series' instances.

import type { DicomJson } from './api';

export function str(ds: DicomJson, tag: string): string {
  const v = ds[tag]?.Value?.[0];
  if (v === undefined || v === null) return '';
  if (typeof v === 'object' && 'Alphabetic' in (v as Record<string, unknown>)) {
    return String((v as Record<string, unknown>).Alphabetic ?? '');
  }
  return String(v);
}

export function nums(ds: DicomJson, tag: string): number[] {
  return (ds[tag]?.Value ?? []).map((v) => Number(v)).filter((v) => Number.isFinite(v));
}

export const TAG = {
  sopInstanceUid: '00080018',
  sopClassUid: '00080016',
  studyUid: '0020000D',
  seriesUid: '0020000E',
  instanceNumber: '00200013',
  imagePosition: '00200032',
  imageOrientation: '00200037',
  numberOfFrames: '00280008',
  modality: '00080060',
} as const;

function cross(a: number[], b: number[]): number[] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

/**
 * Order instances for display: along the slice normal when every instance has a position and
 * the same orientation (head to foot for axial), else by instance number. Returns new array.
 */
export function sortInstances(list: DicomJson[]): DicomJson[] {
  const orient = list.map((d) => nums(d, TAG.imageOrientation));
  const pos = list.map((d) => nums(d, TAG.imagePosition));
  const geometric =
    list.length > 1 &&
    orient.every((o) => o.length === 6) &&
    pos.every((p) => p.length === 3) &&
    orient.every((o) => o.every((v, i) => Math.abs(v - orient[0][i]) < 1e-3));
  if (geometric) {
    const n = cross(orient[0].slice(0, 3), orient[0].slice(3, 6));
    const dist = (p: number[]) => p[0] * n[0] + p[1] * n[1] + p[2] * n[2];
    return list
      .map((d, i) => ({ d, k: dist(pos[i]) }))
      .sort((a, b) => b.k - a.k)
      .map((x) => x.d);
  }
  const num = (d: DicomJson) => {
    const v = Number(str(d, TAG.instanceNumber));
    return Number.isFinite(v) ? v : Number.MAX_SAFE_INTEGER;
  };
  return [...list].sort((a, b) => num(a) - num(b));
}

/** wadors image ids, one per frame, in display order. */
export function imageIdsFor(root: string, studyUid: string, seriesUid: string, sorted: DicomJson[]): string[] {
  const ids: string[] = [];
  for (const d of sorted) {
    const sop = str(d, TAG.sopInstanceUid);
    const frames = Math.max(1, Number(str(d, TAG.numberOfFrames)) || 1);
    for (let f = 1; f <= frames; f += 1) {
      ids.push(`wadors:${root}/studies/${studyUid}/series/${seriesUid}/instances/${sop}/frames/${f}`);
    }
  }
  return ids;
}

/** The SOP Instance UID and frame number inside a wadors image id. */
export function parseImageId(imageId: string): { sopInstanceUid: string; frame: number } | undefined {
  const m = /\/instances\/([0-9.]+)\/frames\/(\d+)$/.exec(imageId);
  return m ? { sopInstanceUid: m[1], frame: Number(m[2]) } : undefined;
}
