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
