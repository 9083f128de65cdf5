// Hanging protocols: which series go into which viewport, in which layout, when a study opens.
// Pure logic over the study's series list so it can be tested without a browser.

export interface SeriesInfo {
  seriesUid: string;
  studyUid: string;
  modality: string;
  description: string;
  numInstances: number;
  seriesNumber: string;
}

export type ViewKind = 'stack' | 'axial' | 'sagittal' | 'coronal' | 'volume3d';

export interface ViewportSpec {
  id: string;
  kind: ViewKind;
  seriesUid: string;
  studyUid: string;
  role: 'current' | 'prior';
}

export interface Layout {
  rows: number;
  cols: number;
}

export interface Hanging {
  protocol: string;
  layout: Layout;
  viewports: ViewportSpec[];
  /** synchronise scrolling and window/level between current and prior */
  syncPrior: boolean;
}

export const LAYOUTS: Layout[] = [
  { rows: 1, cols: 1 },
  { rows: 1, cols: 2 },
  { rows: 2, cols: 1 },
  { rows: 2, cols: 2 },
];

/** Above this many slices the 3-plane protocol is not chosen automatically. */
export const AUTO_MPR_MAX_SLICES = 1000;

const IMAGE_MODALITIES = new Set(['CT', 'MR', 'PT', 'CR', 'DX', 'MG', 'US', 'XA', 'RF', 'NM', 'OT']);

/** A series worth showing first: images (not SR, KO, PR), the most images wins, CT before PET. */
export function primarySeries(series: SeriesInfo[]): SeriesInfo | undefined {
  const images = series.filter((s) => IMAGE_MODALITIES.has(s.modality) && s.numInstances > 0);
  const rank = (s: SeriesInfo) => (s.modality === 'PT' ? 0 : 1) * 1e9 + s.numInstances;
  return [...images].sort((a, b) => rank(b) - rank(a) || a.seriesNumber.localeCompare(b.seriesNumber))[0];
}

/** Enough slices for multiplanar reformatting. */
export function isVolume(s: SeriesInfo): boolean {
  return (s.modality === "CT" || s.modality === "MR" || s.modality === "PT") && s.numInstances >= 20;
}

/** The prior series that best matches the current one: same modality, closest description. */
export function matchPrior(current: SeriesInfo, prior: SeriesInfo[]): SeriesInfo | undefined {
  const same = prior.filter((s) => s.modality === current.modality && s.numInstances > 0);
  const words = (d: string) => new Set(d.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean));
  const cw = words(current.description);
  const score = (s: SeriesInfo) => {
    let common = 0;
    for (const w of words(s.description)) if (cw.has(w)) common += 1;
    return common * 1e6 + s.numInstances;
  };
  return [...same].sort((a, b) => score(b) - score(a))[0];
}

/**
 * Choose the hanging for a study.
 * - with a prior of the same modality: current and prior side by side, synchronised;
 * - a CT volume on a large screen: axial + sagittal + coronal;
 * - two image series (PET/CT): side by side;
 * - otherwise, and always on a phone: the primary series alone.
 */
export function chooseHanging(current: SeriesInfo[], prior: SeriesInfo[] | undefined, smallScreen: boolean): Hanging {
  const main = primarySeries(current);
  if (!main) return { protocol: 'empty', layout: { rows: 1, cols: 1 }, viewports: [], syncPrior: false };
  const vp = (id: string, kind: ViewKind, s: SeriesInfo, role: 'current' | 'prior' = 'current'): ViewportSpec => ({
    id,
    kind,
    seriesUid: s.seriesUid,
    studyUid: s.studyUid,
    role,
  });
  if (smallScreen) {
    return { protocol: 'single', layout: { rows: 1, cols: 1 }, viewports: [vp('vp-0', 'stack', main)], syncPrior: false };
  }
  const priorMatch = prior ? matchPrior(main, prior) : undefined;
  if (priorMatch) {
    return {
      protocol: 'current-prior',
      layout: { rows: 1, cols: 2 },
      viewports: [vp('vp-0', 'stack', main), vp('vp-1', 'stack', priorMatch, 'prior')],
      syncPrior: true,
    };
  }
  // a very long series opens as a stack: building its volume at once would exhaust memory
  if (main.modality === 'CT' && isVolume(main) && main.numInstances <= AUTO_MPR_MAX_SLICES) {
    return {
      protocol: 'ct-3-plane',
      layout: { rows: 1, cols: 3 },
      viewports: [vp('vp-0', 'stack', main), vp('vp-1', 'sagittal', main), vp('vp-2', 'coronal', main)],
      syncPrior: false,
    };
  }
  const others = current.filter((s) => s !== main && IMAGE_MODALITIES.has(s.modality) && s.numInstances > 0);
  if (others.length > 0) {
    return {
      protocol: 'side-by-side',
      layout: { rows: 1, cols: 2 },
      viewports: [vp('vp-0', 'stack', main), vp('vp-1', 'stack', others[0])],
      syncPrior: false,
    };
  }
  return { protocol: 'single', layout: { rows: 1, cols: 1 }, viewports: [vp('vp-0', 'stack', main)], syncPrior: false };
}

/** The MPR hanging: three orthogonal planes of one series (crosshairs link them). */
export function mprHanging(s: SeriesInfo): Hanging {
  return {
    protocol: 'mpr',
    layout: { rows: 1, cols: 3 },
    viewports: (['axial', 'sagittal', 'coronal'] as const).map((k, i) => ({
      id: `mpr-${i}`,
      kind: k,
      seriesUid: s.seriesUid,
      studyUid: s.studyUid,
      role: 'current' as const,
    })),
    syncPrior: false,
  };
}

/** The 3D hanging: a volume rendering beside the axial plane. */
export function volumeHanging(s: SeriesInfo): Hanging {
  return {
    protocol: '3d',
    layout: { rows: 1, cols: 2 },
    viewports: [
      { id: 'vr-0', kind: 'volume3d', seriesUid: s.seriesUid, studyUid: s.studyUid, role: 'current' },
      { id: 'vr-1', kind: 'axial', seriesUid: s.seriesUid, studyUid: s.studyUid, role: 'current' },
    ],
    syncPrior: false,
  };
}

/** Change the layout, keeping the viewports that still fit and filling new cells with series in order. */
export function relayout(h: Hanging, layout: Layout, series: SeriesInfo[]): Hanging {
  const cells = layout.rows * layout.cols;
  const stacks = h.viewports.filter((v) => v.kind === 'stack');
  const kept = stacks.slice(0, cells);
  const used = new Set(kept.map((v) => v.seriesUid));
  const fill = series.filter((s) => !used.has(s.seriesUid) && IMAGE_MODALITIES.has(s.modality) && s.numInstances > 0);
  const viewports: ViewportSpec[] = [...kept];
  for (const s of fill) {
    if (viewports.length >= cells) break;
    viewports.push({ id: '', kind: 'stack', seriesUid: s.seriesUid, studyUid: s.studyUid, role: 'current' });
  }
  return {
    protocol: 'custom',
    layout,
    viewports: viewports.map((v, i) => ({ ...v, id: `vp-${i}` })),
    syncPrior: h.syncPrior && viewports.some((v) => v.role === 'prior'),
  };
}
