// Cornerstone3D, set up once per page: the rendering engine, the DICOMweb image loader with its
// decode workers, the cache budget, and the tools with their mouse and touch bindings.

import {
  init as coreInit,
  RenderingEngine,
  cache,
  volumeLoader,
  cornerstoneStreamingImageVolumeLoader,
  imageLoadPoolManager,
  imageRetrievalPoolManager,
  Enums as CoreEnums,
} from '@cornerstonejs/core';
import { init as dicomImageLoaderInit, wadors } from '@cornerstonejs/dicom-image-loader';
import * as cst from '@cornerstonejs/tools';
import { cacheBytes } from '../lib/cachePolicy';
import type { DicomJson } from '../lib/api';

export const ENGINE_ID = 'radris';
export const STACK_GROUP = 'radris-stack';
export const MPR_GROUP = 'radris-mpr';
export const VR_GROUP = 'radris-3d';

let ready: Promise<RenderingEngine> | undefined;

export const isMobile = (): boolean =>
  typeof window !== 'undefined' && (window.matchMedia?.('(pointer: coarse)').matches || window.innerWidth < 700);

let software: boolean | undefined;
/**
 * Whether WebGL runs in software (SwiftShader, llvmpipe: no GPU, or a blocked driver). Volume
 * rendering then samples 4× more coarsely, or a single frame takes seconds.
 */
export function softwareGl(): boolean {
  if (software === undefined) {
    const gl = document.createElement('canvas').getContext('webgl2');
    const ext = gl?.getExtension('WEBGL_debug_renderer_info');
    const renderer = gl ? String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER)) : '';
    software = !gl || /swiftshader|llvmpipe|software/i.test(renderer);
  }
  return software;
}

/** Start Cornerstone once; every viewer shares the engine. */
export function cornerstone(): Promise<RenderingEngine> {
  if (!ready) ready = start();
  return ready;
}

async function start(): Promise<RenderingEngine> {
  coreInit();
  dicomImageLoaderInit({ maxWebWorkers: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)) });
  volumeLoader.registerUnknownVolumeLoader(cornerstoneStreamingImageVolumeLoader as never);
  volumeLoader.registerVolumeLoader('cornerstoneStreamingImageVolume', cornerstoneStreamingImageVolumeLoader as never);
  const memory = (navigator as Navigator & { deviceMemory?: number }).deviceMemory;
  const configured = Number(localStorage.getItem('radris.cacheMiB') ?? NaN);
  cache.setMaxCacheSize(cacheBytes(memory, isMobile(), Number.isNaN(configured) ? undefined : configured));
  // loopback and LAN servers answer many requests at once; phones get fewer
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Interaction, isMobile() ? 6 : 12);
  imageLoadPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Interaction, isMobile() ? 6 : 12);
  // background prefetch leaves room for what the user is looking at
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Prefetch, isMobile() ? 4 : 8);
  cst.init();
  registerTools();
  return new RenderingEngine(ENGINE_ID);
}

export const MEASURE_TOOLS = {
  Length: cst.LengthTool.toolName,
  Angle: cst.AngleTool.toolName,
  EllipticalROI: cst.EllipticalROITool.toolName,
  RectangleROI: cst.RectangleROITool.toolName,
  Bidirectional: cst.BidirectionalTool.toolName,
  Probe: cst.ProbeTool.toolName,
  ArrowAnnotate: cst.ArrowAnnotateTool.toolName,
} as const;

export const NAV_TOOLS = {
  WindowLevel: cst.WindowLevelTool.toolName,
  Pan: cst.PanTool.toolName,
  Zoom: cst.ZoomTool.toolName,
  Rotate: cst.PlanarRotateTool.toolName,
  Scroll: cst.StackScrollTool.toolName,
} as const;

/** Text for arrow annotations: asked in a prompt (the tool calls back with the text). */
function arrowText(done: (text: string) => void): void {
  const t = window.prompt('Annotation text');
  done(t ?? '');
}

function registerTools(): void {
  for (const T of [
    cst.WindowLevelTool,
    cst.PanTool,
    cst.ZoomTool,
    cst.PlanarRotateTool,
    cst.StackScrollTool,
    cst.LengthTool,
    cst.AngleTool,
    cst.EllipticalROITool,
    cst.RectangleROITool,
    cst.BidirectionalTool,
    cst.ProbeTool,
    cst.ArrowAnnotateTool,
    cst.CrosshairsTool,
    cst.ReferenceLinesTool,
    cst.TrackballRotateTool,
  ]) {
    cst.addTool(T);
  }
  const { MouseBindings } = cst.Enums;

  const stack = cst.ToolGroupManager.createToolGroup(STACK_GROUP);
  if (stack) {
    for (const name of [...Object.values(NAV_TOOLS), ...Object.values(MEASURE_TOOLS)]) {
      if (name === MEASURE_TOOLS.ArrowAnnotate) {
        stack.addTool(name, { getTextCallback: arrowText, changeTextCallback: (_d: unknown, _e: unknown, done: (t: string) => void) => arrowText(done) });
      } else {
        stack.addTool(name);
      }
    }
    stack.addTool(cst.ReferenceLinesTool.toolName);
    bindDefaults(stack, MouseBindings);
  }

  const mpr = cst.ToolGroupManager.createToolGroup(MPR_GROUP);
  if (mpr) {
    mpr.addTool(cst.CrosshairsTool.toolName, {
      // crosshair colours per plane, so the reference lines tell which plane they are
      getReferenceLineColor: (viewportId: string) =>
        ({ 'mpr-0': 'rgb(220, 60, 60)', 'mpr-1': 'rgb(240, 200, 40)', 'mpr-2': 'rgb(60, 200, 80)' })[viewportId] ?? 'rgb(120,160,255)',
      getReferenceLineControllable: () => true,
      getReferenceLineDraggableRotatable: () => true,
      getReferenceLineSlabThicknessControlsOn: () => true,
      mobile: { enabled: isMobile(), opacity: 0.8, handleRadius: 9 },
    });
    for (const name of [NAV_TOOLS.WindowLevel, NAV_TOOLS.Pan, NAV_TOOLS.Zoom, NAV_TOOLS.Scroll]) mpr.addTool(name);
    mpr.setToolActive(cst.CrosshairsTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    mpr.setToolActive(NAV_TOOLS.Pan, { bindings: [{ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 3 }] });
    mpr.setToolActive(NAV_TOOLS.Zoom, { bindings: [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 }] });
    mpr.setToolActive(NAV_TOOLS.Scroll, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  }

  const vr = cst.ToolGroupManager.createToolGroup(VR_GROUP);
  if (vr) {
    vr.addTool(cst.TrackballRotateTool.toolName);
    vr.addTool(NAV_TOOLS.Zoom);
    vr.addTool(NAV_TOOLS.Pan);
    vr.setToolActive(cst.TrackballRotateTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    vr.setToolActive(NAV_TOOLS.Zoom, { bindings: [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 }] });
    vr.setToolActive(NAV_TOOLS.Pan, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
  }
}

type Bindings = typeof cst.Enums.MouseBindings;

function bindDefaults(group: cst.Types.IToolGroup, MouseBindings: Bindings): void {
  // left drag (one finger): window/level until another tool is chosen; right drag or pinch:
  // zoom; middle drag or three fingers: pan; wheel: scroll
  group.setToolActive(NAV_TOOLS.WindowLevel, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  group.setToolActive(NAV_TOOLS.Zoom, { bindings: [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 }] });
  group.setToolActive(NAV_TOOLS.Pan, { bindings: [{ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 3 }] });
  group.setToolActive(NAV_TOOLS.Scroll, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  for (const name of Object.values(MEASURE_TOOLS)) group.setToolPassive(name);
}

/** Make `tool` the left-button / one-finger tool of the stack viewports. */
export function setPrimaryTool(tool: string): void {
  const group = cst.ToolGroupManager.getToolGroup(STACK_GROUP);
  if (!group) return;
  const { MouseBindings } = cst.Enums;
  const current = group.getActivePrimaryMouseButtonTool();
  if (current && current !== tool) {
    if ((Object.values(MEASURE_TOOLS) as string[]).includes(current)) group.setToolPassive(current);
    else if (current === NAV_TOOLS.Scroll) {
      group.setToolActive(NAV_TOOLS.Scroll, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    } else group.setToolDisabled(current);
    // the zoom and pan tools keep their other bindings
    if (current === NAV_TOOLS.Zoom) {
      group.setToolActive(NAV_TOOLS.Zoom, { bindings: [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 }] });
    }
    if (current === NAV_TOOLS.Pan) {
      group.setToolActive(NAV_TOOLS.Pan, { bindings: [{ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 3 }] });
    }
  }
  const extra =
    tool === NAV_TOOLS.Zoom
      ? [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 }]
      : tool === NAV_TOOLS.Pan
        ? [{ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 3 }]
        : tool === NAV_TOOLS.Scroll
          ? [{ mouseButton: MouseBindings.Wheel }]
          : [];
  group.setToolActive(tool, { bindings: [{ mouseButton: MouseBindings.Primary }, ...extra] });
}

/** Register a series' DICOM JSON with the image loader (what it needs to decode each frame). */
export function registerMetadata(imageIds: string[], instances: DicomJson[], framesPerInstance: number[]): void {
  let k = 0;
  instances.forEach((ds, i) => {
    for (let f = 0; f < framesPerInstance[i]; f += 1) {
      wadors.metaDataManager.add(imageIds[k], ds as never);
      k += 1;
    }
  });
}

export { cst };
