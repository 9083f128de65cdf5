// The diagnostic viewer: hanging protocol, viewport grid, tools, series browser, measurements
// and key images saved on the server, MPR with crosshairs and slabs, 3D volume rendering.

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  Enums as CoreEnums,
  eventTarget,
  getRenderingEngine,
  metaData,
  setVolumesForViewports,
  utilities as coreUtils,
  volumeLoader,
  cache,
  type Types as CoreTypes,
} from '@cornerstonejs/core';
import {
  ApiError,
  getAnnotations,
  getStudy,
  putAnnotations,
  seriesThumbnailUrl,
  studiesOfPatient,
  type Series,
  type Study,
  type StudyDetail,
} from '../lib/api';
import {
  fromSaved,
  parseDocument,
  toSaved,
  toggleKeyImage,
  type AnnotationDocument,
  type CsAnnotation,
  type SavedMeasurement,
} from '../lib/annotations';
import { dicomDate, personName } from '../lib/format';
import {
  LAYOUTS,
  chooseHanging,
  isVolume,
  mprHanging,
  primarySeries,
  relayout,
  volumeHanging,
  type Hanging,
  type SeriesInfo,
  type ViewportSpec,
} from '../lib/hanging';
import { fromVoiRange, presetsFor, toVoiRange } from '../lib/presets';
import { volumeFits } from '../lib/cachePolicy';
import { ENGINE_ID, MEASURE_TOOLS, MPR_GROUP, NAV_TOOLS, STACK_GROUP, VR_GROUP, cornerstone, cst, isMobile, setPrimaryTool, softwareGl } from './cs';
import { imageIdOf, loadSeries, locate, type LoadedSeries } from './series';
import { mark, metrics } from '../metrics';
import { cacheInfo, serverMprState, serverMprToPage, synchronizers, toPage, viewportState } from './automation';
import { ServerMpr } from './ServerMpr';
import { renderUrl } from '../lib/render';

// automation hooks for browser tests, installed with the viewer's code
if (window.radris) Object.assign(window.radris, { toPage, viewportState, synchronizers, cacheInfo, serverMprState, serverMprToPage });

/**
 * Who draws MPR and 3D: the server (`/api/v1/render`, a thin client) or this browser's WebGL.
 * `?render=server|browser` in the address, else the user's last choice, else the server where
 * WebGL runs in software (seconds per volume there, milliseconds on the server).
 */
type RenderMode = 'server' | 'browser';
function initialRenderMode(): RenderMode {
  const asked = new URLSearchParams(window.location.search).get('render') ?? localStorage.getItem('radris.render');
  if (asked === 'server' || asked === 'browser') return asked;
  return softwareGl() ? 'server' : 'browser';
}

type AnyViewport = CoreTypes.IStackViewport | CoreTypes.IVolumeViewport;

interface Overlay {
  slice: number;
  slices: number;
  ww?: number;
  wl?: number;
  zoom?: number;
}

const VR_PRESETS = ['CT-Bone', 'CT-Soft-Tissue', 'CT-Lung', 'CT-MIP', 'CT-Chest-Contrast-Enhanced', 'CT-Cardiac', 'MR-Default'];
const SLAB_MODES = {
  none: CoreEnums.BlendModes.COMPOSITE,
  mip: CoreEnums.BlendModes.MAXIMUM_INTENSITY_BLEND,
  minip: CoreEnums.BlendModes.MINIMUM_INTENSITY_BLEND,
  avg: CoreEnums.BlendModes.AVERAGE_INTENSITY_BLEND,
} as const;
type SlabMode = keyof typeof SLAB_MODES;

const TOOL_BUTTONS: { tool: string; label: string; key?: string; title: string }[] = [
  { tool: NAV_TOOLS.WindowLevel, label: 'W/L', key: 'w', title: 'Window/level: drag (W)' },
  { tool: NAV_TOOLS.Scroll, label: 'Scroll', key: 's', title: 'Scroll through slices: drag (S)' },
  { tool: NAV_TOOLS.Zoom, label: 'Zoom', key: 'z', title: 'Zoom: drag (Z); also right drag or pinch' },
  { tool: NAV_TOOLS.Pan, label: 'Pan', key: 'p', title: 'Pan: drag (P); also middle drag' },
  { tool: NAV_TOOLS.Rotate, label: 'Rotate', title: 'Free rotation: drag' },
  { tool: MEASURE_TOOLS.Length, label: 'Length', key: 'l', title: 'Length in mm (L)' },
  { tool: MEASURE_TOOLS.Angle, label: 'Angle', key: 'a', title: 'Angle (A)' },
  { tool: MEASURE_TOOLS.EllipticalROI, label: 'Ellipse', key: 'e', title: 'Elliptical ROI: mean/SD/area (E)' },
  { tool: MEASURE_TOOLS.RectangleROI, label: 'Rect', key: 'r', title: 'Rectangle ROI: mean/SD/area (R)' },
  { tool: MEASURE_TOOLS.Bidirectional, label: 'Bidir', key: 'b', title: 'Bidirectional: long and short axis (B)' },
  { tool: MEASURE_TOOLS.Probe, label: 'Probe', key: 'o', title: 'Probe: pixel value (O)' },
  { tool: MEASURE_TOOLS.ArrowAnnotate, label: 'Arrow', title: 'Arrow with a note' },
];

const seriesInfo = (s: Series): SeriesInfo => ({
  seriesUid: s.series_uid,
  studyUid: s.study_uid,
  modality: s.modality,
  description: s.description,
  numInstances: s.num_instances,
  seriesNumber: s.series_number,
});

function viewportType(spec: ViewportSpec) {
  if (spec.kind === 'stack') return CoreEnums.ViewportType.STACK;
  if (spec.kind === 'volume3d') return CoreEnums.ViewportType.VOLUME_3D;
  return CoreEnums.ViewportType.ORTHOGRAPHIC;
}

function orientation(spec: ViewportSpec) {
  switch (spec.kind) {
    case 'sagittal':
      return CoreEnums.OrientationAxis.SAGITTAL;
    case 'coronal':
      return CoreEnums.OrientationAxis.CORONAL;
    case 'axial':
      return CoreEnums.OrientationAxis.AXIAL;
    case 'volume3d':
      // the patient seen from the front, as a 3D view is read
      return CoreEnums.OrientationAxis.CORONAL;
    default:
      return undefined;
  }
}

function groupOf(h: Hanging, spec: ViewportSpec): string {
  if (spec.kind === 'volume3d') return VR_GROUP;
  if (h.protocol === 'mpr') return MPR_GROUP;
  return STACK_GROUP;
}

function engineViewport(id: string): AnyViewport | undefined {
  return getRenderingEngine(ENGINE_ID)?.getViewport(id) as AnyViewport | undefined;
}

/**
 * Studies taken on different days have different frames of reference: align the prior to the
 * current by the slices each shows when the comparison opens (both start at the middle of the
 * same protocol's coverage), a translation the slice synchroniser then applies. Cornerstone's
 * own `calculateViewportsSpatialRegistration` cannot do this for stacks in 5.x (it looks up
 * plane metadata by slice index instead of image id).
 */
function registerByCurrentSlices(current: CoreTypes.IStackViewport, prior: CoreTypes.IStackViewport): void {
  const a = metaData.get('imagePlaneModule', current.getCurrentImageId()) as { imagePositionPatient?: number[] } | undefined;
  const b = metaData.get('imagePlaneModule', prior.getCurrentImageId()) as { imagePositionPatient?: number[] } | undefined;
  if (!a?.imagePositionPatient || !b?.imagePositionPatient) return;
  const [x, y, z] = a.imagePositionPatient.map((v, i) => v - (b.imagePositionPatient as number[])[i]);
  // column-major 4×4 translation, as gl-matrix stores it
  const m = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, x, y, z, 1]);
  coreUtils.spatialRegistrationMetadataProvider.add([current.id, prior.id], m as never);
}

/**
 * Load a streaming volume and resolve when it is complete, once per volume however many
 * viewports wait for it (Cornerstone's `load(callback)` drops the callbacks of calls made while
 * a load is already running).
 */
const volumeLoads = new WeakMap<object, Promise<void>>();
function loadedOnce(volume: { load: (done?: () => void) => void }): Promise<void> {
  let p = volumeLoads.get(volume);
  if (!p) {
    p = new Promise<void>((ok) => volume.load(() => ok()));
    volumeLoads.set(volume, p);
  }
  return p;
}

/** Load Cornerstone before the first study is opened (called while the study list is shown). */
export function prewarm(): void {
  void cornerstone().then(() => {
    metrics.viewerWarm = true;
  });
}

export function Viewer({ studyUid, priorUid, onClose }: { studyUid: string; priorUid?: string; onClose: () => void }) {
  const small = useMemo(() => isMobile(), []);
  const [detail, setDetail] = useState<StudyDetail>();
  const [priors, setPriors] = useState<Study[]>([]);
  const [priorDetail, setPriorDetail] = useState<StudyDetail>();
  const [chosenPrior, setChosenPrior] = useState<string | undefined>(priorUid);
  // the hanging waits until the priors are known, so a study is not hung twice
  const [priorsKnown, setPriorsKnown] = useState(false);
  const [hanging, setHanging] = useState<Hanging>();
  const [active, setActive] = useState('vp-0');
  const [tool, setTool] = useState<string>(NAV_TOOLS.WindowLevel);
  const [overlays, setOverlays] = useState<Record<string, Overlay>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [loadError, setLoadError] = useState<string>();
  const [doc, setDoc] = useState<AnnotationDocument>({ measurements: [], keyImages: [] });
  const [saveState, setSaveState] = useState<'idle' | 'saving' | 'saved' | 'error'>('idle');
  const [slab, setSlab] = useState<{ mode: SlabMode; thickness: number }>({ mode: 'none', thickness: 10 });
  const [vrPreset, setVrPreset] = useState('CT-Bone');
  const [cine, setCine] = useState(false);
  /** volumeId → percentage of its slices loaded, while loading */
  const [volumeProgress, setVolumeProgress] = useState<Record<string, number>>({});
  const [panelOpen, setPanelOpen] = useState(!small);
  const [renderMode, setRenderMode] = useState<RenderMode>(initialRenderMode);
  /** performance.now() of the MPR or 3D click (or the switch to server rendering) */
  const [volumeOpenedAt, setVolumeOpenedAt] = useState(0);
  const serverView = renderMode === 'server' && (hanging?.protocol === 'mpr' || hanging?.protocol === '3d');
  const elements = useRef<Record<string, HTMLDivElement | null>>({});
  const stacks = useRef<Record<string, LoadedSeries>>({});
  const version = useRef(0);
  const savedDoc = useRef<AnnotationDocument>({ measurements: [], keyImages: [] });
  const restoring = useRef(false);
  const saveTimer = useRef<number>(undefined);

  const series = useMemo(() => (detail?.series ?? []).map(seriesInfo), [detail]);
  const main = useMemo(() => primarySeries(series), [series]);

  // server rendering: once the first image is up, have the server build the main series'
  // volume while the reader looks at the stack, so MPR and 3D open without waiting
  useEffect(() => {
    if (renderMode !== 'server' || !main || !isVolume(main)) return;
    const t = window.setInterval(() => {
      if (metrics.firstImageAt === undefined) return;
      window.clearInterval(t);
      void fetch(renderUrl(main.studyUid, main.seriesUid, 'volume'), { credentials: 'same-origin' }).catch(() => undefined);
    }, 250);
    return () => window.clearInterval(t);
  }, [renderMode, main]);

  // the study, its annotations and the patient's other studies
  useEffect(() => {
    let live = true;
    setLoadError(undefined);
    (async () => {
      try {
        const [d, ann] = await Promise.all([getStudy(studyUid), getAnnotations(studyUid)]);
        if (!live) return;
        mark('study');
        version.current = ann.version;
        const parsed = parseDocument(ann.document);
        savedDoc.current = parsed;
        setDoc(parsed);
        setDetail(d);
        const others = (await studiesOfPatient(d.study.patient_id)).filter((s) => s.study_uid !== studyUid);
        if (!live) return;
        const older = others.filter((s) => s.study_date <= d.study.study_date);
        setPriors(older);
        if (priorUid === undefined) {
          // the most recent earlier study with a modality in common is the default comparison
          const match = older.find((s) => s.modalities.some((m) => d.study.modalities.includes(m)));
          setChosenPrior(match?.study_uid);
        }
        setPriorsKnown(true);
        mark('priors');
      } catch (e) {
        if (live) setLoadError(e instanceof ApiError ? e.message : String(e));
      }
    })();
    return () => {
      live = false;
    };
  }, [studyUid, priorUid]);

  useEffect(() => {
    let live = true;
    if (!chosenPrior) {
      setPriorDetail(undefined);
      return;
    }
    getStudy(chosenPrior)
      .then((d) => live && setPriorDetail(d))
      .catch(() => {
        // the prior is gone or not ours to read: hang the study alone
        if (live) setChosenPrior(undefined);
      });
    return () => {
      live = false;
    };
  }, [chosenPrior]);

  // the hanging protocol, once the study (and its prior, if any) are known
  useEffect(() => {
    if (!detail || !priorsKnown) return;
    if (chosenPrior && priorDetail?.study.study_uid !== chosenPrior) return;
    setHanging(chooseHanging(series, priorDetail?.series.map(seriesInfo), small));
    setActive('vp-0');
  }, [detail, priorDetail, chosenPrior, priorsKnown, series, small]);

  // build the viewports of the hanging (server-rendered MPR and 3D have none)
  useEffect(() => {
    if (!hanging || serverView) return;
    let cancelled = false;
    const ids = hanging.viewports.map((v) => v.id);
    const syncIds: string[] = [];
    (async () => {
      mark('hanging');
      const engine = await cornerstone();
      if (cancelled) return;
      mark('engine');
      const inputs = hanging.viewports
        .filter((v) => elements.current[v.id])
        .map((v) => ({
          viewportId: v.id,
          element: elements.current[v.id] as HTMLDivElement,
          type: viewportType(v),
          defaultOptions: { orientation: orientation(v), background: [0, 0, 0] as CoreTypes.Point3 },
        }));
      engine.setViewports(inputs);
      for (const v of hanging.viewports) {
        cst.ToolGroupManager.getToolGroup(groupOf(hanging, v))?.addViewport(v.id, ENGINE_ID);
      }
      await Promise.all(
        hanging.viewports.map(async (v) => {
          try {
            const s = await loadSeries(v.studyUid, v.seriesUid);
            if (cancelled) return;
            stacks.current[v.id] = s;
            mark(`metadata-${v.id}`);
            const vp = engine.getViewport(v.id);
            if (!vp) return;
            if (v.kind === 'stack') {
              const svp = vp as CoreTypes.IStackViewport;
              try {
                await svp.setStack(s.imageIds, Math.floor(s.imageIds.length / 2));
                mark(`stack-${v.id}`);
              } catch {
                // the first image failed to load or decode: its message is already in the
                // viewport (IMAGE_LOAD_ERROR below) and the other images stay reachable
              }
              svp.render();
            } else {
              // a volume that cannot fit this workstation's image memory would take the tab down
              const budget = cache.getMaxCacheSize();
              if (!volumeFits(s.rows, s.cols, s.imageIds.length, s.bytesPerPixel, budget)) {
                const mib = (b: number) => Math.round(b / 1048576);
                setErrors((x) => ({
                  ...x,
                  [v.id]: `This series (${s.imageIds.length} images, ${mib(s.rows * s.cols * s.imageIds.length * s.bytesPerPixel)} MiB) is larger than this workstation's image memory (${mib(budget)} MiB): use the stack view.`,
                }));
                return;
              }
              const volume = await volumeLoader.createAndCacheVolume(s.volumeId, { imageIds: s.imageIds });
              if (cancelled) return;
              const streaming = volume as unknown as { load: (done?: () => void) => void };
              if (softwareGl()) {
                // without a GPU every progressive redraw of the planes costs more than the
                // slices it shows (measured: 11 s instead of 3.5 s for 300 slices): attach the
                // volume once it is complete, with a progress figure meanwhile
                await loadedOnce(streaming);
                if (cancelled) return;
              } else {
                streaming.load();
              }
              await setVolumesForViewports(engine, [{ volumeId: s.volumeId }], [v.id]);
              if (v.kind === 'volume3d') {
                (vp as CoreTypes.IVolumeViewport).setProperties({ preset: vrPreset, sampleDistanceMultiplier: softwareGl() ? 4 : 1 });
              }
              vp.render();
            }
          } catch (e) {
            setErrors((x) => ({ ...x, [v.id]: `This series could not be opened: ${e instanceof Error ? e.message : String(e)}` }));
          }
        }),
      );
      if (cancelled) return;
      // every viewport shows its first image: now fetch the neighbours in the background
      for (const v of hanging.viewports) {
        const el = elements.current[v.id];
        if (v.kind === 'stack' && el && engine.getViewport(v.id)) cst.utilities.stackPrefetch.enable(el);
      }
      // reference lines: where the axial stack is, on the other planes
      const stackGroup = cst.ToolGroupManager.getToolGroup(STACK_GROUP);
      if (stackGroup && hanging.protocol === 'ct-3-plane') {
        stackGroup.setToolConfiguration(cst.ReferenceLinesTool.toolName, { sourceViewportId: 'vp-0' });
        stackGroup.setToolEnabled(cst.ReferenceLinesTool.toolName);
      } else {
        stackGroup?.setToolDisabled(cst.ReferenceLinesTool.toolName);
      }
      if (hanging.syncPrior) {
        const slice = cst.synchronizers.createImageSliceSynchronizer('radris-prior-slice');
        const voi = cst.synchronizers.createVOISynchronizer('radris-prior-voi', { syncInvertState: true, syncColormap: false });
        registerByCurrentSlices(engine.getViewport('vp-0') as CoreTypes.IStackViewport, engine.getViewport('vp-1') as CoreTypes.IStackViewport);
        for (const id of ['vp-0', 'vp-1']) {
          slice.add({ renderingEngineId: ENGINE_ID, viewportId: id });
          voi.add({ renderingEngineId: ENGINE_ID, viewportId: id });
        }
        syncIds.push('radris-prior-slice', 'radris-prior-voi');
      }
      if (hanging.protocol === 'mpr') applySlab(ids, slab.mode, slab.thickness);
      await restoreAnnotations();
    })();
    return () => {
      cancelled = true;
      for (const id of syncIds) cst.SynchronizerManager.destroySynchronizer(id);
      const engine = getRenderingEngine(ENGINE_ID);
      for (const v of hanging.viewports) {
        cst.ToolGroupManager.getToolGroup(groupOf(hanging, v))?.removeViewports(ENGINE_ID, v.id);
        const el = elements.current[v.id];
        if (el) {
          try {
            cst.utilities.stackPrefetch.disable(el);
            cst.utilities.cine.stopClip(el);
          } catch {
            // not enabled
          }
        }
        engine?.disableElement(v.id);
      }
      setCine(false);
    };
    // vrPreset and slab are applied by their own effects after the first build
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [hanging, serverView]);

  // overlays, first-image timing, decode errors and volume completion
  useEffect(() => {
    let frame = 0;
    const dirty = new Set<string>();
    const flush = () => {
      frame = 0;
      const next: Record<string, Overlay> = {};
      for (const id of dirty) {
        const vp = engineViewport(id);
        // a volume viewport whose volume was refused has no data to describe
        if (!vp || !vp.getDefaultActor()) continue;
        const props = vp.getProperties() as { voiRange?: { lower: number; upper: number } };
        const wl = props.voiRange ? fromVoiRange(props.voiRange) : undefined;
        const stack = 'setStack' in vp;
        const slices = stack ? (vp as CoreTypes.IStackViewport).getImageIds().length : ((vp as CoreTypes.IVolumeViewport).getNumberOfSlices?.() ?? 0);
        const slice = stack ? vp.getCurrentImageIdIndex() : ((vp as CoreTypes.IVolumeViewport).getSliceIndex?.() ?? 0);
        next[id] = {
          slice: slice + 1,
          slices,
          ww: wl ? Math.round(wl.width) : undefined,
          wl: wl ? Math.round(wl.center) : undefined,
          zoom: Math.round(((vp as { getZoom?: () => number }).getZoom?.() ?? 1) * 100) / 100,
        };
      }
      dirty.clear();
      setOverlays((o) => ({ ...o, ...next }));
    };
    const onRendered = (e: Event) => {
      const id = (e as CustomEvent).detail?.viewportId as string | undefined;
      if (!id) return;
      const vp = engineViewport(id);
      if (metrics.firstImageAt === undefined && vp && 'getImageIds' in vp && vp.getCurrentImageId()) {
        const data = (vp as CoreTypes.IStackViewport).getImageData?.();
        if (data) metrics.firstImageAt = performance.now();
      }
      dirty.add(id);
      if (!frame) frame = requestAnimationFrame(flush);
    };
    const onNewImage = (e: Event) => {
      const id = (e as CustomEvent).detail?.viewportId as string | undefined;
      if (id) setErrors((x) => (x[id] ? { ...x, [id]: '' } : x));
    };
    const onLoadError = (e: Event) => {
      const d = (e as CustomEvent).detail as { imageId?: string; error?: unknown };
      const why = d?.error instanceof Error ? d.error.message : typeof d?.error === 'string' ? d.error : 'the image data are damaged or in an unsupported format';
      for (const [id, s] of Object.entries(stacks.current)) {
        if (d?.imageId && s.imageIds.includes(d.imageId)) {
          const n = s.imageIds.indexOf(d.imageId) + 1;
          setErrors((x) => ({ ...x, [id]: `Image ${n} could not be decoded (${why}). The other images remain available.` }));
        }
      }
    };
    const onVolumeLoaded = (e: Event) => {
      metrics.volumeReadyAt ??= performance.now();
      const id = (e as CustomEvent).detail?.volumeId as string | undefined;
      if (id) setVolumeProgress((p) => ({ ...p, [id]: 100 }));
    };
    let progressFrame = 0;
    const progress: Record<string, number> = {};
    const onVolumeModified = (e: Event) => {
      const d = (e as CustomEvent).detail as { volumeId?: string; numberOfFrames?: number; framesProcessed?: number };
      if (!d?.volumeId || !d.numberOfFrames) return;
      progress[d.volumeId] = Math.floor(((d.framesProcessed ?? 0) * 100) / d.numberOfFrames);
      if (!progressFrame) {
        progressFrame = requestAnimationFrame(() => {
          progressFrame = 0;
          setVolumeProgress((p) => ({ ...p, ...progress }));
        });
      }
    };
    const targets: EventTarget[] = Object.values(elements.current).filter((x): x is HTMLDivElement => !!x);
    const perViewport: [string, EventListener][] = [
      [CoreEnums.Events.IMAGE_RENDERED, onRendered],
      [CoreEnums.Events.STACK_NEW_IMAGE, onNewImage],
    ];
    const global: [string, EventListener][] = [
      [CoreEnums.Events.IMAGE_LOAD_ERROR, onLoadError],
      [CoreEnums.Events.IMAGE_VOLUME_LOADING_COMPLETED, onVolumeLoaded],
      [CoreEnums.Events.IMAGE_VOLUME_MODIFIED, onVolumeModified],
    ];
    for (const el of targets) for (const [name, f] of perViewport) el.addEventListener(name, f);
    for (const [name, f] of global) eventTarget.addEventListener(name, f);
    return () => {
      for (const el of targets) for (const [name, f] of perViewport) el.removeEventListener(name, f);
      for (const [name, f] of global) eventTarget.removeEventListener(name, f);
      if (frame) cancelAnimationFrame(frame);
      if (progressFrame) cancelAnimationFrame(progressFrame);
    };
  }, [hanging]);

  // --- measurements: restore, serialise, save ---------------------------------------------

  const studySeries = useMemo(() => new Set(series.map((s) => s.seriesUid)), [series]);

  const currentDocument = useCallback((): AnnotationDocument => {
    const previous = new Map(savedDoc.current.measurements.map((m) => [m.uid, m]));
    const measurements: SavedMeasurement[] = [];
    for (const a of cst.annotation.state.getAllAnnotations() as unknown as CsAnnotation[]) {
      const m = toSaved(a, locate);
      if (!m || !studySeries.has(m.seriesUid)) continue;
      const before = previous.get(m.uid);
      // not yet rendered since it was restored: keep the values computed when it was drawn
      if (before && (!m.summary || m.summary.includes('?'))) {
        m.summary = before.summary;
        m.values = before.values;
      }
      measurements.push(m);
    }
    return { measurements, keyImages: savedDoc.current.keyImages };
  }, [studySeries]);

  const save = useCallback(
    async (next: AnnotationDocument) => {
      savedDoc.current = next;
      setDoc(next);
      setSaveState('saving');
      try {
        const r = await putAnnotations(studyUid, version.current, next as never);
        version.current = r.version;
        setSaveState('saved');
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) {
          // saved from another window meanwhile: this window's state is the newer one
          try {
            const server = await getAnnotations(studyUid);
            version.current = server.version;
            const r = await putAnnotations(studyUid, version.current, next as never);
            version.current = r.version;
            setSaveState('saved');
            return;
          } catch {
            // fall through
          }
        }
        setSaveState('error');
      }
    },
    [studyUid],
  );

  const scheduleSave = useCallback(() => {
    if (restoring.current) return;
    window.clearTimeout(saveTimer.current);
    saveTimer.current = window.setTimeout(() => {
      const next = currentDocument();
      // selecting or hovering an annotation also says "modified": write only real changes
      if (JSON.stringify(next) !== JSON.stringify(savedDoc.current)) void save(next);
    }, 400);
  }, [save, currentDocument]);

  useEffect(() => {
    const events = [cst.Enums.Events.ANNOTATION_COMPLETED, cst.Enums.Events.ANNOTATION_MODIFIED, cst.Enums.Events.ANNOTATION_REMOVED];
    const on = () => scheduleSave();
    for (const ev of events) eventTarget.addEventListener(ev, on);
    return () => {
      for (const ev of events) eventTarget.removeEventListener(ev, on);
      window.clearTimeout(saveTimer.current);
    };
  }, [scheduleSave]);

  const restoreAnnotations = useCallback(async () => {
    const engine = getRenderingEngine(ENGINE_ID);
    if (!engine) return;
    restoring.current = true;
    try {
      for (const m of savedDoc.current.measurements) {
        if (cst.annotation.state.getAnnotation(m.uid)) continue;
        const id = await imageIdOf(m.seriesUid, m.sopInstanceUid, m.frame);
        const a = fromSaved(m, () => id);
        if (!a) continue;
        const host = Object.entries(stacks.current).find(([, s]) => s.seriesUid === m.seriesUid)?.[0];
        const el = host ? elements.current[host] : undefined;
        cst.annotation.state.addAnnotation(a as never, (m.frameOfReferenceUid || el) as never);
      }
      cst.utilities.triggerAnnotationRenderForViewportIds(engine.getViewports().map((v) => v.id));
    } finally {
      restoring.current = false;
    }
  }, []);

  // --- toolbar actions ------------------------------------------------------------------------

  const activeViewport = () => engineViewport(active);

  const chooseTool = (t: string) => {
    setPrimaryTool(t);
    setTool(t);
  };

  const applyPreset = (width: number, center: number) => {
    const vp = activeViewport();
    if (!vp) return;
    vp.setProperties({ voiRange: toVoiRange(width, center) });
    vp.render();
  };

  const rotate90 = () => {
    const vp = activeViewport();
    if (!vp) return;
    const rotation = (vp.getViewPresentation().rotation ?? 0) + 90;
    vp.setViewPresentation({ rotation: rotation % 360 });
    vp.render();
  };

  const flip = (horizontal: boolean) => {
    const vp = activeViewport();
    if (!vp) return;
    const cam = vp.getCamera();
    vp.setCamera(horizontal ? { flipHorizontal: !cam.flipHorizontal } : { flipVertical: !cam.flipVertical });
    vp.render();
  };

  const invert = () => {
    const vp = activeViewport();
    if (!vp) return;
    const inverted = (vp.getProperties() as { invert?: boolean }).invert ?? false;
    vp.setProperties({ invert: !inverted });
    vp.render();
  };

  const reset = () => {
    const vp = activeViewport();
    if (!vp) return;
    vp.resetCamera();
    vp.setViewPresentation({ rotation: 0, flipHorizontal: false, flipVertical: false });
    (vp as { resetProperties?: () => void }).resetProperties?.();
    vp.render();
  };

  const toggleCine = () => {
    const el = elements.current[active];
    if (!el) return;
    if (cine) cst.utilities.cine.stopClip(el);
    else cst.utilities.cine.playClip(el, { framesPerSecond: 15, loop: true });
    setCine(!cine);
  };

  const markKeyImage = () => {
    const vp = activeViewport();
    const id = vp?.getCurrentImageId?.();
    const at = id ? locate(id) : undefined;
    if (!at) return;
    const next = { ...currentDocument(), keyImages: toggleKeyImage(savedDoc.current.keyImages, at) };
    void save(next);
  };

  const jumpTo = async (seriesUid: string, sop: string, frame: number) => {
    const host = Object.entries(stacks.current).find(([id, s]) => s.seriesUid === seriesUid && engineViewport(id) && 'setStack' in (engineViewport(id) as object));
    if (!host) return;
    const index = host[1].indexOf.get(`${sop}/${frame}`);
    const vp = engineViewport(host[0]) as CoreTypes.IStackViewport | undefined;
    if (vp && index !== undefined) {
      setActive(host[0]);
      await vp.setImageIdIndex(index);
    }
  };

  const removeMeasurement = (uid: string) => {
    cst.annotation.state.removeAnnotation(uid);
    const engine = getRenderingEngine(ENGINE_ID);
    if (engine) cst.utilities.triggerAnnotationRenderForViewportIds(engine.getViewports().map((v) => v.id));
    void save(currentDocument());
  };

  const scrollTo = (id: string, sliceOneBased: number) => {
    const el = elements.current[id];
    if (el) void coreUtils.jumpToSlice(el, { imageIndex: sliceOneBased - 1 });
  };

  const showSeries = (s: SeriesInfo) => {
    if (!hanging) return;
    const spec: ViewportSpec = { id: active, kind: 'stack', seriesUid: s.seriesUid, studyUid: s.studyUid, role: 'current' };
    const base = hanging.protocol === 'mpr' || hanging.protocol === '3d' ? chooseHanging(series, undefined, true) : hanging;
    const viewports = base.viewports.some((v) => v.id === active)
      ? base.viewports.map((v) => (v.id === active ? spec : v.kind === 'stack' ? v : { ...v, kind: 'stack' as const }))
      : [{ ...spec, id: 'vp-0' }];
    setHanging({ ...base, protocol: 'custom', viewports, syncPrior: false });
  };

  function applySlab(ids: string[], mode: SlabMode, thickness: number) {
    for (const id of ids) {
      const vp = engineViewport(id) as CoreTypes.IVolumeViewport | undefined;
      if (!vp || !('setBlendMode' in vp)) continue;
      vp.setBlendMode(SLAB_MODES[mode]);
      vp.setSlabThickness(mode === 'none' ? 0.1 : thickness);
      vp.render();
    }
  }

  useEffect(() => {
    if (hanging?.protocol === 'mpr') applySlab(hanging.viewports.map((v) => v.id), slab.mode, slab.thickness);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [slab]);

  useEffect(() => {
    const vp = hanging?.viewports.find((v) => v.kind === 'volume3d');
    const v = vp ? (engineViewport(vp.id) as CoreTypes.IVolumeViewport | undefined) : undefined;
    if (v && cache.getVolume(stacks.current[vp!.id]?.volumeId ?? '')) {
      v.setProperties({ preset: vrPreset });
      v.render();
    }
  }, [vrPreset, hanging]);

  // keyboard: tools, presets, scrolling
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.target as HTMLElement)?.closest?.('input, select, textarea')) return;
      const t = TOOL_BUTTONS.find((b) => b.key === e.key.toLowerCase());
      if (t) return chooseTool(t.tool);
      const p = presetsFor(stacks.current[active]?.modality ?? '').find((x) => x.key === e.key);
      if (p) return applyPreset(p.width, p.center);
      if (e.key === 'i') return invert();
      if (e.key === 'k') return markKeyImage();
      if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
        const el = elements.current[active];
        if (el) coreUtils.scroll(engineViewport(active) as never, { delta: e.key === 'ArrowUp' ? -1 : 1 });
        e.preventDefault();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  // --- render ---------------------------------------------------------------------------------

  if (loadError) {
    return (
      <div className="viewer-error" role="alert">
        <p>{loadError}</p>
        <button onClick={onClose}>Back to the study list</button>
      </div>
    );
  }
  if (!detail || !hanging) return <div className="loading">Opening study…</div>;

  const study = detail.study;
  const activeModality = stacks.current[active]?.modality ?? main?.modality ?? '';
  const presets = presetsFor(activeModality);
  const volumeCapable = main ? isVolume(main) : false;
  const keyed = new Set(doc.keyImages.map((k) => `${k.sopInstanceUid}/${k.frame}`));
  const currentId = engineViewport(active)?.getCurrentImageId?.();
  const currentKey = currentId ? locate(currentId) : undefined;
  const isKey = currentKey ? keyed.has(`${currentKey.sopInstanceUid}/${currentKey.frame}`) : false;

  return (
    <div className={`viewer ${small ? 'small' : ''}`}>
      <div className="viewer-bar">
        <button className="back" onClick={onClose} title="Study list">
          ‹ List
        </button>
        <div className="patient" data-testid="viewer-patient">
          <strong>{personName(study.patient_name)}</strong> <span>{study.patient_id}</span>{' '}
          <span>{dicomDate(study.study_date)}</span> <span className="muted">{study.description}</span>
        </div>
        {priors.length > 0 && !small && (
          <label className="prior-select">
            Prior{' '}
            <select value={chosenPrior ?? ''} onChange={(e) => setChosenPrior(e.target.value || undefined)}>
              <option value="">none</option>
              {priors.map((p) => (
                <option key={p.study_uid} value={p.study_uid}>
                  {dicomDate(p.study_date)} {p.modalities.join('/')} {p.description}
                </option>
              ))}
            </select>
          </label>
        )}
        <span className={`save-state ${saveState}`} data-testid="save-state">
          {saveState === 'saving' ? 'Saving…' : saveState === 'saved' ? 'Saved' : saveState === 'error' ? 'Not saved' : ''}
        </span>
        {small && (
          <button onClick={() => setPanelOpen(!panelOpen)} aria-expanded={panelOpen}>
            {panelOpen ? 'Hide' : 'Series'}
          </button>
        )}
      </div>

      <div className="toolbar" role="toolbar" aria-label="Viewer tools">
        {TOOL_BUTTONS.map((b) => (
          <button
            key={b.tool}
            className={tool === b.tool ? 'on' : ''}
            title={b.title}
            data-tool={b.tool}
            onClick={() => chooseTool(b.tool)}
            disabled={hanging.protocol === 'mpr' || hanging.protocol === '3d'}
          >
            {b.label}
          </button>
        ))}
        <span className="sep" />
        {!serverView && presets.map((p) => (
          <button key={p.id} title={`${p.label} W${p.width} L${p.center} (${p.key})`} data-preset={p.id} onClick={() => applyPreset(p.width, p.center)}>
            {p.label}
          </button>
        ))}
        <span className="sep" />
        <button onClick={rotate90} title="Rotate 90°">⟳90</button>
        <button onClick={() => flip(true)} title="Flip horizontally">⇋</button>
        <button onClick={() => flip(false)} title="Flip vertically">⇵</button>
        <button onClick={invert} title="Invert (I)">Inv</button>
        <button onClick={reset} title="Reset view">Reset</button>
        <button onClick={toggleCine} className={cine ? 'on' : ''} title="Cine">
          {cine ? '■ Cine' : '▶ Cine'}
        </button>
        <button onClick={markKeyImage} className={isKey ? 'on' : ''} title="Mark key image (K)" data-testid="key-image">
          ★ Key
        </button>
        <span className="sep" />
        {!small &&
          LAYOUTS.map((l) => (
            <button
              key={`${l.rows}x${l.cols}`}
              title={`Layout ${l.rows}×${l.cols}`}
              className={hanging.layout.rows === l.rows && hanging.layout.cols === l.cols && hanging.protocol === 'custom' ? 'on' : ''}
              onClick={() => setHanging(relayout(hanging.protocol === 'mpr' || hanging.protocol === '3d' ? chooseHanging(series, undefined, true) : hanging, l, series))}
            >
              {l.rows}×{l.cols}
            </button>
          ))}
        {volumeCapable && main && (
          <>
            <button
              className={hanging.protocol === 'mpr' ? 'on' : ''}
              onClick={() => {
                setVolumeOpenedAt(performance.now());
                setHanging(mprHanging(main));
              }}
              data-testid="mpr"
              title="Multiplanar reformation with crosshairs"
            >
              MPR
            </button>
            <button
              className={hanging.protocol === '3d' ? 'on' : ''}
              onClick={() => {
                setVolumeOpenedAt(performance.now());
                setHanging(volumeHanging(main));
              }}
              data-testid="vr"
              title="3D volume rendering"
            >
              3D
            </button>
            <select
              aria-label="MPR and 3D rendering"
              title="Who draws MPR and 3D: the server, or this browser's WebGL"
              data-testid="render-mode"
              value={renderMode}
              onChange={(e) => {
                const m = e.target.value as RenderMode;
                localStorage.setItem('radris.render', m);
                setVolumeOpenedAt(performance.now());
                setRenderMode(m);
              }}
            >
              <option value="server">server</option>
              <option value="browser">browser (WebGL)</option>
            </select>
            {(hanging.protocol === 'mpr' || hanging.protocol === '3d') && (
              <button onClick={() => setHanging(chooseHanging(series, priorDetail?.series.map(seriesInfo), small))}>Stack</button>
            )}
          </>
        )}
        {hanging.protocol === 'mpr' && !serverView && (
          <span className="slab">
            <select aria-label="Slab mode" value={slab.mode} onChange={(e) => setSlab({ ...slab, mode: e.target.value as SlabMode })} data-testid="slab-mode">
              <option value="none">Thin</option>
              <option value="mip">MIP</option>
              <option value="minip">MinIP</option>
              <option value="avg">Average</option>
            </select>
            <input
              aria-label="Slab thickness (mm)"
              type="range"
              min={1}
              max={50}
              value={slab.thickness}
              onChange={(e) => setSlab({ ...slab, thickness: Number(e.target.value) })}
            />
            <span>{slab.thickness} mm</span>
          </span>
        )}
        {hanging.protocol === '3d' && !serverView && (
          <select aria-label="Volume rendering preset" value={vrPreset} onChange={(e) => setVrPreset(e.target.value)}>
            {VR_PRESETS.map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        )}
      </div>

      <div className="viewer-body">
        {panelOpen && (
          <aside className="side-panel">
            <h3>Series</h3>
            <ul className="series-list">
              {series.map((s) => (
                <li key={s.seriesUid}>
                  <button onClick={() => showSeries(s)} title={`Show in the active viewport`}>
                    <img
                      src={seriesThumbnailUrl(s.studyUid, s.seriesUid)}
                      alt=""
                      loading="lazy"
                      width={64}
                      height={64}
                      onError={(e) => (e.currentTarget.style.visibility = 'hidden')}
                    />
                    <span>
                      {s.modality} #{s.seriesNumber} {s.description}
                      <br />
                      <small>{s.numInstances} images</small>
                    </span>
                  </button>
                </li>
              ))}
            </ul>
            <h3>Measurements</h3>
            <ul className="measurements" data-testid="measurements">
              {doc.measurements.length === 0 && <li className="muted">None yet</li>}
              {doc.measurements.map((m) => (
                <li key={m.uid} data-tool={m.tool}>
                  <button className="link" onClick={() => void jumpTo(m.seriesUid, m.sopInstanceUid, m.frame)}>
                    {m.tool === 'EllipticalROI' ? 'Ellipse' : m.tool === 'RectangleROI' ? 'Rectangle' : m.tool}:{' '}
                    <span className="value">{m.summary}</span>
                  </button>
                  <button className="icon" title="Delete" onClick={() => removeMeasurement(m.uid)}>
                    ×
                  </button>
                </li>
              ))}
            </ul>
            <h3>Key images</h3>
            <ul className="key-images" data-testid="key-images">
              {doc.keyImages.length === 0 && <li className="muted">None marked</li>}
              {doc.keyImages.map((k) => (
                <li key={`${k.sopInstanceUid}/${k.frame}`}>
                  <button className="link" onClick={() => void jumpTo(k.seriesUid, k.sopInstanceUid, k.frame)}>
                    ★ image {(stacks.current[Object.keys(stacks.current).find((id) => stacks.current[id].seriesUid === k.seriesUid) ?? '']?.indexOf.get(`${k.sopInstanceUid}/${k.frame}`) ?? 0) + 1}
                  </button>
                </li>
              ))}
            </ul>
          </aside>
        )}
        {serverView && hanging.viewports[0] && (
          <ServerMpr
            key={`${hanging.viewports[0].seriesUid}/${volumeOpenedAt}`}
            studyUid={hanging.viewports[0].studyUid}
            seriesUid={hanging.viewports[0].seriesUid}
            startedAt={volumeOpenedAt}
            initialPane={hanging.protocol === '3d' ? '3d' : 'axial'}
            small={small}
          />
        )}
        {!serverView && (
        <div className="grid" style={{ gridTemplateRows: `repeat(${hanging.layout.rows}, 1fr)`, gridTemplateColumns: `repeat(${hanging.layout.cols}, 1fr)` }}>
          {hanging.viewports.map((v) => {
            const o = overlays[v.id];
            const s = [...series, ...(priorDetail?.series.map(seriesInfo) ?? [])].find((x) => x.seriesUid === v.seriesUid);
            return (
              <div key={`${hanging.protocol}-${v.id}-${v.seriesUid}`} className={`cell ${active === v.id ? 'active' : ''}`} onPointerDown={() => setActive(v.id)}>
                <div
                  className="viewport"
                  data-viewport-id={v.id}
                  data-kind={v.kind}
                  ref={(el) => {
                    elements.current[v.id] = el;
                  }}
                  onContextMenu={(e) => e.preventDefault()}
                />
                <div className="overlay tl">
                  {v.role === 'prior' ? <span className="prior-tag">PRIOR {dicomDate(priorDetail?.study.study_date ?? '')}</span> : null}
                  <div>{s ? `${s.modality} #${s.seriesNumber} ${s.description}` : ''}</div>
                  <div>{v.kind !== 'stack' ? v.kind : ''}</div>
                  {v.kind === 'volume3d' && softwareGl() && <div className="muted">software WebGL: coarse sampling</div>}
                </div>
                {o && (
                  <div className="overlay bl" data-testid={`overlay-${v.id}`}>
                    <div>
                      Im {o.slice}/{o.slices}
                    </div>
                    {o.ww !== undefined && (
                      <div>
                        W {o.ww} L {o.wl}
                      </div>
                    )}
                    {o.zoom !== undefined && <div>Zoom {o.zoom}×</div>}
                  </div>
                )}
                {o && o.slices > 1 && v.kind !== 'volume3d' && (
                  <input
                    className="slice-slider"
                    type="range"
                    aria-label="Slice"
                    min={1}
                    max={o.slices}
                    value={o.slice}
                    onChange={(e) => scrollTo(v.id, Number(e.target.value))}
                  />
                )}
                {v.kind !== 'stack' &&
                  (() => {
                    const pct = volumeProgress[`cornerstoneStreamingImageVolume:${v.seriesUid}`];
                    return pct !== undefined && pct < 100 ? (
                      <div className="volume-progress" data-testid={`progress-${v.id}`}>
                        Loading volume {pct} %
                      </div>
                    ) : null;
                  })()}
                {errors[v.id] && (
                  <div className="viewport-error" role="alert" data-testid={`error-${v.id}`}>
                    {errors[v.id]}
                  </div>
                )}
              </div>
            );
          })}
        </div>
        )}
      </div>
    </div>
  );
}
