// A small read-only automation surface on `window.radris` for browser tests and support
// sessions: where a patient-space point is on screen, and what a viewport shows. It exposes no
// data the page does not already display.

import { cache, getRenderingEngine, type Types } from '@cornerstonejs/core';
import { ENGINE_ID, cst } from './cs';

export interface ViewportState {
  imageId?: string;
  imageIndex: number;
  focalPoint: Types.Point3;
  voi?: { lower: number; upper: number };
  zoom: number;
  invert: boolean;
  rotation: number;
  flipHorizontal: boolean;
  /** volume viewports: slab thickness (mm) and blend mode (0 composite, 1 MIP, 2 MinIP, 3 average) */
  slabThickness?: number;
  blendMode?: number;
}

export function toPage(viewportId: string, world: Types.Point3): [number, number] | undefined {
  const vp = getRenderingEngine(ENGINE_ID)?.getViewport(viewportId);
  if (!vp) return undefined;
  const [x, y] = vp.worldToCanvas(world);
  const r = vp.canvas.getBoundingClientRect();
  return [r.left + x, r.top + y];
}

export function viewportState(viewportId: string): ViewportState | undefined {
  const vp = getRenderingEngine(ENGINE_ID)?.getViewport(viewportId) as Types.IStackViewport | Types.IVolumeViewport | undefined;
  if (!vp || !vp.getDefaultActor()) return undefined;
  const props = vp.getProperties() as { voiRange?: { lower: number; upper: number }; invert?: boolean };
  return {
    imageId: vp.getCurrentImageId?.(),
    imageIndex: vp.getCurrentImageIdIndex(),
    focalPoint: vp.getCamera().focalPoint as Types.Point3,
    voi: props.voiRange ? { ...props.voiRange } : undefined,
    zoom: (vp as { getZoom?: () => number }).getZoom?.() ?? 1,
    invert: !!props.invert,
    rotation: vp.getViewPresentation().rotation ?? 0,
    flipHorizontal: !!vp.getCamera().flipHorizontal,
    slabThickness: (vp as { getSlabThickness?: () => number }).getSlabThickness?.(),
    blendMode: (vp as { getBlendMode?: () => number }).getBlendMode?.(),
  };
}

/** The active synchronizers and the viewports they link. */
export function synchronizers(): { id: string; viewports: string[] }[] {
  return cst.SynchronizerManager.getAllSynchronizers().map((s) => ({
    id: s.id,
    viewports: s.getSourceViewports().map((v) => v.viewportId),
  }));
}

/** The decoded-image cache: bytes in use and the cap. */
export function cacheInfo(): { bytes: number; max: number } {
  return { bytes: cache.getCacheSize(), max: cache.getMaxCacheSize() };
}

// --- the thin-client (server-rendered) MPR and 3D ---------------------------------------------

/** What the server-rendered MPR shows, for tests: the view and the last picture of each pane. */
export interface ServerMprState {
  point: [number, number, number];
  positions: Record<string, number>;
  window?: string;
  slab: { mode: string; thickness: number };
  vr: { preset: string; azimuth: number; elevation: number };
  /** per pane: the URL of the picture drawn last, how many pictures it has drawn, its error */
  panes: Record<string, { url?: string; draws: number; error?: string; width?: number; height?: number }>;
  warnings: string[];
}

let thinState: ServerMprState | undefined;
let thinToPage: ((pane: string, point: [number, number, number]) => [number, number] | undefined) | undefined;

/** Called by ServerMpr on every change; undefined when it unmounts. */
export function publishServerMpr(
  state: ServerMprState | undefined,
  toPage?: (pane: string, point: [number, number, number]) => [number, number] | undefined,
): void {
  thinState = state;
  thinToPage = state ? toPage : undefined;
}

export function serverMprState(): ServerMprState | undefined {
  return thinState ? JSON.parse(JSON.stringify(thinState)) : undefined;
}

/** Where a patient point is on screen in a server-rendered plane (page CSS pixels). */
export function serverMprToPage(pane: string, point: [number, number, number]): [number, number] | undefined {
  return thinToPage?.(pane, point);
}

/**
 * Thin-client timings on `window.radris`: `serverMprReadyMs` (the MPR click to all three
 * planes drawn), `server3dReadyMs` (to the 3D picture drawn), `serverVolumeMs` (to the volume
 * description, i.e. the volume built or found in the server's cache).
 */
export function recordServerTiming(name: 'serverMprReadyMs' | 'server3dReadyMs' | 'serverVolumeMs', ms: number): void {
  if (window.radris) window.radris[name] = Math.round(ms);
}
