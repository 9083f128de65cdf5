// A series ready for Cornerstone: its instances' metadata fetched once over WADO-RS, ordered
// along the slice normal, registered with the image loader, and its image ids.

import { DICOMWEB_ROOT, seriesMetadata, type DicomJson } from '../lib/api';
import { TAG, imageIdsFor, parseImageId, sortInstances, str } from '../lib/dicom';
import { registerMetadata } from './cs';

export interface LoadedSeries {
  studyUid: string;
  seriesUid: string;
  modality: string;
  imageIds: string[];
  /** rows × columns of the first image */
  rows: number;
  cols: number;
  /** bytes of one decoded pixel (Bits Allocated / 8) */
  bytesPerPixel: number;
  /** `${sop}/${frame}` → index in imageIds */
  indexOf: Map<string, number>;
  volumeId: string;
}

const loaded = new Map<string, Promise<LoadedSeries>>();

export function loadSeries(studyUid: string, seriesUid: string): Promise<LoadedSeries> {
  let p = loaded.get(seriesUid);
  if (!p) {
    p = fetchSeries(studyUid, seriesUid);
    loaded.set(seriesUid, p);
    p.catch(() => loaded.delete(seriesUid));
  }
  return p;
}

async function fetchSeries(studyUid: string, seriesUid: string): Promise<LoadedSeries> {
  const instances = sortInstances(await seriesMetadata(studyUid, seriesUid));
  const imageIds = imageIdsFor(location.origin + DICOMWEB_ROOT, studyUid, seriesUid, instances);
  const frames = instances.map((d: DicomJson) => Math.max(1, Number(str(d, TAG.numberOfFrames)) || 1));
  registerMetadata(imageIds, instances, frames);
  const indexOf = new Map<string, number>();
  imageIds.forEach((id, i) => {
    const p = parseImageId(id);
    if (p) indexOf.set(`${p.sopInstanceUid}/${p.frame}`, i);
  });
  const first = instances[0] ?? {};
  return {
    studyUid,
    seriesUid,
    modality: str(first, TAG.modality),
    imageIds,
    rows: Number(str(first, '00280010')) || 0,
    cols: Number(str(first, '00280011')) || 0,
    bytesPerPixel: Math.max(1, (Number(str(first, '00280100')) || 16) / 8),
    indexOf,
    volumeId: `cornerstoneStreamingImageVolume:${seriesUid}`,
  };
}

/** Which loaded series an image id belongs to, with its instance and frame. */
export function locate(imageId: string): { seriesUid: string; sopInstanceUid: string; frame: number } | undefined {
  const m = /\/series\/([0-9.]+)\/instances\/([0-9.]+)\/frames\/(\d+)$/.exec(imageId);
  return m ? { seriesUid: m[1], sopInstanceUid: m[2], frame: Number(m[3]) } : undefined;
}

/** The image id of an instance frame, among the series loaded so far. */
export async function imageIdOf(seriesUid: string, sop: string, frame: number): Promise<string | undefined> {
  const s = await loaded.get(seriesUid);
  const i = s?.indexOf.get(`${sop}/${frame}`);
  return s && i !== undefined ? s.imageIds[i] : undefined;
}
