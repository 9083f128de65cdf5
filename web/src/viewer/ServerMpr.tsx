// The thin-client MPR and 3D: the server draws the planes, slabs and the volume rendering
// (`/api/v1/render/…`, docs/render-api.md) and this component shows them, with crosshairs,
// window/level, wheel stepping, slabs and a 3D pane turned by dragging. Used where WebGL is
// slow (software rendering, phones): the server answers a plane in tens of milliseconds once
// its volume is built, instead of seconds of software WebGL.
//
// Each pane keeps at most one request in flight: a discrete change (a click, a control)
// aborts the one in flight, a continuous one (dragging, the wheel) waits for it and then asks
// for the latest view only, so fast interaction never queues pictures nobody will see.

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ApiError, request, requestResponse } from '../lib/api';
import {
  PLANE_KINDS,
  VR_PRESETS,
  WINDOW_PRESETS,
  boxToPixel,
  capPixels,
  clampToVolume,
  dot,
  dragRotate,
  dragWindow,
  intersectionLine,
  normalOf,
  paneSize,
  parseGeometry,
  patientToPixel,
  pixelToBox,
  pixelToPatient,
  planeRequest,
  positionOf,
  renderUrl,
  scale,
  add,
  sub,
  stepPlane,
  volumeCentre,
  vrRequest,
  wheelSteps,
  windowOf,
  windowParam,
  type Geometry,
  type MprView,
  type PlaneKind,
  type SlabMode,
  type Vec3,
  type VolumeInfo,
  type VrPreset,
  type VrView,
} from '../lib/render';
import { publishServerMpr, recordServerTiming } from './automation';

export type PaneId = PlaneKind | '3d';
const PANES: PaneId[] = ['axial', 'sagittal', 'coronal', '3d'];
const LABEL: Record<PaneId, string> = { axial: 'Axial', sagittal: 'Sagittal', coronal: 'Coronal', '3d': '3D' };
/** the same colours as the WebGL MPR's crosshairs */
const COLOUR: Record<PlaneKind, string> = { axial: 'rgb(220, 60, 60)', sagittal: 'rgb(240, 200, 40)', coronal: 'rgb(60, 200, 80)' };
/** a volume rendering costs per pixel: at most this many at rest, and far fewer while turning */
const VR_PIXELS = 512 * 512;
const VR_DRAG_PIXELS = 160 * 160;
const SLAB_LABEL: Record<SlabMode, string> = { none: 'Thin', mip: 'MIP', minip: 'MinIP', average: 'Average' };

type Tool = 'crosshair' | 'scroll' | 'wl';

interface Shown {
  geometry?: Geometry;
  url?: string;
  draws: number;
  error?: string;
}

type Answer = { bitmap: ImageBitmap; geometry?: Geometry; warnings?: string } | { error: string };

/** One pane's requests: at most one in flight (see the file comment). */
class PaneLoader {
  private inflight?: { url: string; ctrl: AbortController };
  private pending?: string;
  private shown?: string;

  constructor(private readonly done: (url: string, answer: Answer) => void) {}

  want(url: string, coalesce: boolean): void {
    if (this.inflight) {
      if (this.inflight.url === url) {
        this.pending = undefined;
        return;
      }
      if (coalesce) {
        this.pending = url;
        return;
      }
      this.inflight.ctrl.abort();
      this.inflight = undefined;
    }
    this.pending = undefined;
    if (url !== this.shown) this.start(url);
  }

  /** Drop what is in flight or waiting (unmounting): nothing more is drawn. */
  cancel(): void {
    this.pending = undefined;
    this.inflight?.ctrl.abort();
    this.inflight = undefined;
  }

  private start(url: string): void {
    const ctrl = new AbortController();
    this.inflight = { url, ctrl };
    const settle = (answer: Answer) => {
      if (ctrl.signal.aborted) {
        if ('bitmap' in answer) answer.bitmap.close();
        return;
      }
      this.shown = url;
      this.done(url, answer);
    };
    requestResponse(url, { signal: ctrl.signal, headers: { Accept: 'image/png, image/jpeg, application/problem+json' } })
      .then(async (res) => {
        const geometry = parseGeometry(res.headers.get('X-Radris-Geometry'));
        const warnings = res.headers.get('X-Radris-Warnings') ?? undefined;
        const bitmap = await createImageBitmap(await res.blob());
        settle({ bitmap, geometry, warnings });
      })
      .catch((e: unknown) => {
        if (ctrl.signal.aborted) return;
        settle({ error: e instanceof ApiError ? e.message : e instanceof Error ? e.message : String(e) });
      })
      .finally(() => {
        if (this.inflight?.ctrl !== ctrl) return;
        this.inflight = undefined;
        const next = this.pending;
        this.pending = undefined;
        if (next && next !== this.shown) this.start(next);
      });
  }
}

interface Drag {
  pointerId: number;
  pane: PaneId;
  kind: 'crosshair' | 'scroll' | 'wl' | 'rotate';
  x0: number;
  y0: number;
  /** window or camera at the start of the drag */
  window0?: { center: number; width: number };
  vr0?: VrView;
  /** scroll drags: steps already taken */
  stepped: number;
}

export function ServerMpr({
  studyUid,
  seriesUid,
  startedAt,
  initialPane = 'axial',
  small,
}: {
  studyUid: string;
  seriesUid: string;
  /** performance.now() of the click that opened this view, for the timings */
  startedAt: number;
  initialPane?: PaneId;
  small: boolean;
}) {
  const [info, setInfo] = useState<VolumeInfo>();
  const [infoError, setInfoError] = useState<string>();
  const [view, setView] = useState<MprView>({ point: [0, 0, 0], slab: { mode: 'none', thickness: 10 } });
  const [vr, setVr] = useState<VrView>({ preset: 'bone', azimuth: 0, elevation: 0 });
  const [turning, setTurning] = useState(false);
  const [tool, setTool] = useState<Tool>('crosshair');
  const [selected, setSelected] = useState<PaneId>(initialPane);
  const [sizes, setSizes] = useState<Partial<Record<PaneId, [number, number]>>>({});
  const [shown, setShown] = useState<Record<PaneId, Shown>>({ axial: { draws: 0 }, sagittal: { draws: 0 }, coronal: { draws: 0 }, '3d': { draws: 0 } });
  const [headerWarnings, setHeaderWarnings] = useState<string[]>([]);
  const boxes = useRef<Partial<Record<PaneId, HTMLDivElement | null>>>({});
  const canvases = useRef<Partial<Record<PaneId, HTMLCanvasElement | null>>>({});
  const drag = useRef<Drag | undefined>(undefined);
  /** the change being made is continuous (drag, wheel): coalesce rather than abort */
  const continuous = useRef(false);
  /** the plane the keys step: the one last clicked or wheeled */
  const lastPlane = useRef<PlaneKind>(initialPane === '3d' ? 'axial' : initialPane);
  const firstDrawn = useRef(new Set<PaneId>());
  const settled = useRef(new Set<PaneId>());
  const [planesSettled, setPlanesSettled] = useState(false);
  const shownRef = useRef(shown);
  shownRef.current = shown;
  const viewRef = useRef(view);
  viewRef.current = view;

  // --- the volume, then the pictures --------------------------------------------------------

  useEffect(() => {
    let live = true;
    if (window.radris) Object.assign(window.radris, { serverMprReadyMs: undefined, server3dReadyMs: undefined, serverVolumeMs: undefined });
    request<VolumeInfo>(renderUrl(studyUid, seriesUid, 'volume'))
      .then((v) => {
        if (!live) return;
        recordServerTiming('serverVolumeMs', performance.now() - startedAt);
        setInfo(v);
        setView((x) => ({ ...x, point: volumeCentre(v) }));
      })
      .catch((e: unknown) => live && setInfoError(e instanceof ApiError ? e.message : String(e)));
    return () => {
      live = false;
    };
  }, [studyUid, seriesUid, startedAt]);

  const onAnswer = useCallback(
    (pane: PaneId, url: string, answer: Answer) => {
      if ('error' in answer) {
        setShown((s) => ({ ...s, [pane]: { ...s[pane], url, error: answer.error } }));
      } else {
        const canvas = canvases.current[pane];
        if (canvas) {
          if (canvas.width !== answer.bitmap.width) canvas.width = answer.bitmap.width;
          if (canvas.height !== answer.bitmap.height) canvas.height = answer.bitmap.height;
          canvas.getContext('2d')?.drawImage(answer.bitmap, 0, 0);
        }
        answer.bitmap.close();
        if (answer.warnings) {
          const w = answer.warnings.split('; ').filter(Boolean);
          setHeaderWarnings((old) => (w.every((x) => old.includes(x)) ? old : [...new Set([...old, ...w])]));
        }
        setShown((s) => ({ ...s, [pane]: { geometry: answer.geometry, url, draws: s[pane].draws + 1 } }));
        if (!firstDrawn.current.has(pane)) {
          firstDrawn.current.add(pane);
          if (pane === '3d') recordServerTiming('server3dReadyMs', performance.now() - startedAt);
          else if (PLANE_KINDS.every((k) => firstDrawn.current.has(k))) recordServerTiming('serverMprReadyMs', performance.now() - startedAt);
        }
      }
      if (pane !== '3d' && !settled.current.has(pane)) {
        settled.current.add(pane);
        if (PLANE_KINDS.every((k) => settled.current.has(k))) setPlanesSettled(true);
      }
    },
    [startedAt],
  );

  const loaders = useMemo(() => {
    const l = {} as Record<PaneId, PaneLoader>;
    for (const p of PANES) l[p] = new PaneLoader((url, a) => onAnswer(p, url, a));
    return l;
  }, [onAnswer]);
  useEffect(() => () => Object.values(loaders).forEach((l) => l.cancel()), [loaders]);

  // pane sizes in device pixels
  useEffect(() => {
    const ro = new ResizeObserver(() => {
      const dpr = window.devicePixelRatio || 1;
      setSizes((old) => {
        let changed = false;
        const next = { ...old };
        for (const p of PANES) {
          const el = boxes.current[p];
          if (!el || el.clientWidth === 0 || el.clientHeight === 0) continue;
          const s = paneSize(el.clientWidth, el.clientHeight, dpr);
          if (!old[p] || old[p][0] !== s[0] || old[p][1] !== s[1]) {
            next[p] = s;
            changed = true;
          }
        }
        return changed ? next : old;
      });
    });
    for (const p of PANES) {
      const el = boxes.current[p];
      if (el) ro.observe(el);
    }
    return () => ro.disconnect();
  }, []);

  // the planes follow the view
  useEffect(() => {
    if (!info) return;
    for (const k of PLANE_KINDS) {
      const size = sizes[k];
      if (!size) continue;
      const { mode, params } = planeRequest(info, k, view, size);
      loaders[k].want(renderUrl(studyUid, seriesUid, mode, params), continuous.current);
    }
  }, [info, view, sizes, loaders, studyUid, seriesUid]);

  // the 3D picture once the planes are up (they come first: they are what is read)
  useEffect(() => {
    const size = sizes['3d'];
    if (!info || !planesSettled || !size) return;
    const params = vrRequest(vr, capPixels(size, turning ? VR_DRAG_PIXELS : VR_PIXELS), turning);
    loaders['3d'].want(renderUrl(studyUid, seriesUid, 'vr', params), turning);
  }, [info, vr, sizes, turning, planesSettled, loaders, studyUid, seriesUid]);

  // --- automation ---------------------------------------------------------------------------

  const toPage = useCallback((pane: string, p: [number, number, number]): [number, number] | undefined => {
    const el = boxes.current[pane as PaneId];
    const g = shownRef.current[pane as PaneId]?.geometry;
    if (!el || !g) return undefined;
    const px = patientToPixel(g, p);
    if (!px) return undefined;
    const r = el.getBoundingClientRect();
    const [x, y] = pixelToBox(el.clientWidth, el.clientHeight, g, px[0], px[1]);
    return [r.left + el.clientLeft + x, r.top + el.clientTop + y];
  }, []);

  useEffect(() => {
    const positions: Record<string, number> = {};
    if (info) for (const k of PLANE_KINDS) positions[k] = Math.round(positionOf(info, k, view.point) * 100) / 100;
    const panes: Record<string, { url?: string; draws: number; error?: string; width?: number; height?: number }> = {};
    for (const p of PANES) panes[p] = { url: shown[p].url, draws: shown[p].draws, error: shown[p].error, width: shown[p].geometry?.width, height: shown[p].geometry?.height };
    publishServerMpr(
      { point: view.point, positions, window: windowParam(view.window), slab: { ...view.slab }, vr: { ...vr }, panes, warnings: [...(info?.warnings ?? []), ...headerWarnings] },
      toPage,
    );
  }, [info, view, vr, shown, headerWarnings, toPage]);
  useEffect(() => () => publishServerMpr(undefined), []);

  // --- interaction --------------------------------------------------------------------------

  const change = (next: MprView | ((v: MprView) => MprView), isContinuous: boolean) => {
    continuous.current = isContinuous;
    setView(next);
  };

  /** The patient point under (x, y) of a plane pane (CSS px in the pane), keeping the pane's own plane. */
  const pointAt = (pane: PlaneKind, x: number, y: number): Vec3 | undefined => {
    const el = boxes.current[pane];
    const g = shownRef.current[pane].geometry;
    if (!el || !g || !info) return undefined;
    const [c, r] = boxToPixel(el.clientWidth, el.clientHeight, g, x, y);
    const p = pixelToPatient(g, c, r);
    if (!p) return undefined;
    const n = normalOf(pane);
    const current = viewRef.current.point;
    // the picture may be a step behind the view: keep the plane where the view has it
    return clampToVolume(info, add(p, scale(n, dot(sub(current, p), n))));
  };

  const local = (e: { clientX: number; clientY: number }, pane: PaneId) => {
    const el = boxes.current[pane] as HTMLDivElement;
    const r = el.getBoundingClientRect();
    return [e.clientX - r.left - el.clientLeft, e.clientY - r.top - el.clientTop] as const;
  };

  /** the pointers down on the panes: a drag ends when the last is lifted */
  const pointers = useRef(new Set<number>());

  const onPointerDown = (pane: PaneId) => (e: React.PointerEvent<HTMLDivElement>) => {
    if (!info) return;
    e.preventDefault();
    if (e.isPrimary) {
      // a new gesture: forget a drag whose end never arrived
      pointers.current.clear();
      drag.current = undefined;
    }
    e.currentTarget.setPointerCapture(e.pointerId);
    pointers.current.add(e.pointerId);
    if (pane !== '3d') lastPlane.current = pane;
    const d = drag.current;
    if (d && d.pane === pane) {
      // another finger: two fingers step the plane (in 3D they keep turning it)
      if (pane !== '3d') drag.current = { ...d, kind: 'scroll', x0: e.clientX, y0: e.clientY, pointerId: e.pointerId, stepped: 0 };
      return;
    }
    const [x, y] = local(e, pane);
    const base = { pointerId: e.pointerId, pane, x0: e.clientX, y0: e.clientY, stepped: 0 };
    if (pane === '3d') {
      drag.current = { ...base, kind: 'rotate', vr0: vr };
      setTurning(true);
      return;
    }
    const kind = e.button === 2 || tool === 'wl' ? 'wl' : e.button === 1 || tool === 'scroll' ? 'scroll' : 'crosshair';
    drag.current = { ...base, kind, window0: windowOf(shownRef.current[pane].geometry, view.window) };
    if (kind === 'crosshair') {
      const p = pointAt(pane, x, y);
      if (p) change((v) => ({ ...v, point: p }), false);
    }
  };

  const onPointerMove = (pane: PaneId) => (e: React.PointerEvent<HTMLDivElement>) => {
    const d = drag.current;
    if (!d || d.pane !== pane || !info || d.pointerId !== e.pointerId) return;
    const dx = e.clientX - d.x0;
    const dy = e.clientY - d.y0;
    if (d.kind === 'rotate' && d.vr0) {
      setVr(dragRotate(d.vr0, dx, dy));
    } else if (d.kind === 'wl' && d.window0) {
      const w = dragWindow(d.window0, dx, dy);
      change((v) => ({ ...v, window: w }), true);
    } else if (d.kind === 'scroll' && pane !== '3d') {
      // a step per 4 CSS px; dragging down goes down (against the normal), as the wheel does
      const steps = Math.trunc(dy / 4);
      if (steps !== d.stepped) {
        const by = -(steps - d.stepped);
        d.stepped = steps;
        change((v) => ({ ...v, point: stepPlane(info, v.point, pane, by) }), true);
      }
    } else if (d.kind === 'crosshair' && pane !== '3d') {
      const [x, y] = local(e, pane);
      const p = pointAt(pane, x, y);
      if (p) change((v) => ({ ...v, point: p }), true);
    }
  };

  const onPointerUp = (pane: PaneId) => (e: React.PointerEvent<HTMLDivElement>) => {
    if (e.currentTarget.hasPointerCapture(e.pointerId)) e.currentTarget.releasePointerCapture(e.pointerId);
    pointers.current.delete(e.pointerId);
    const d = drag.current;
    if (!d || d.pane !== pane || pointers.current.size > 0) return;
    drag.current = undefined;
    // the last picture asked for while dragging is still fetched; later changes abort
    continuous.current = false;
    if (pane === '3d') setTurning(false);
  };

  // the wheel steps a pane's own plane (a native listener: React's is passive)
  useEffect(() => {
    if (!info) return;
    const off: (() => void)[] = [];
    for (const k of PLANE_KINDS) {
      const el = boxes.current[k];
      if (!el) continue;
      const onWheel = (e: WheelEvent) => {
        e.preventDefault();
        const steps = wheelSteps(e.deltaY, e.deltaMode);
        if (!steps) return;
        lastPlane.current = k;
        continuous.current = true;
        setView((v) => ({ ...v, point: stepPlane(info, v.point, k, steps) }));
      };
      el.addEventListener('wheel', onWheel, { passive: false });
      off.push(() => el.removeEventListener('wheel', onWheel));
    }
    return () => off.forEach((f) => f());
  }, [info]);

  // arrow keys (PageUp/PageDown: ten at a time) step the plane last touched
  useEffect(() => {
    if (!info) return;
    const onKey = (e: KeyboardEvent) => {
      if ((e.target as HTMLElement)?.closest?.('input, select, textarea')) return;
      const steps = { ArrowUp: 1, ArrowDown: -1, PageUp: 10, PageDown: -10 }[e.key];
      if (!steps) return;
      e.preventDefault();
      const k = lastPlane.current;
      change((v) => ({ ...v, point: stepPlane(info, v.point, k, steps) }), true);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [info]);

  const reset = () => {
    if (info) change({ point: volumeCentre(info), slab: view.slab }, false);
    setVr((x) => ({ ...x, azimuth: 0, elevation: 0 }));
  };

  // --- render -------------------------------------------------------------------------------

  const warnings = [...new Set([...(info?.warnings ?? []), ...headerWarnings])];
  const ct = info?.modality === 'CT';

  const pane = (p: PaneId) => {
    const s = shown[p];
    const g = s.geometry;
    const hidden = small && p !== selected;
    return (
      <div key={p} className={`srv-cell ${hidden ? 'hidden' : ''}`} aria-hidden={hidden}>
        <div
          className="srv-pane"
          data-viewport-id={`srv-${p}`}
          data-pane={p}
          ref={(el) => {
            boxes.current[p] = el;
          }}
          onPointerDown={onPointerDown(p)}
          onPointerMove={onPointerMove(p)}
          onPointerUp={onPointerUp(p)}
          onPointerCancel={onPointerUp(p)}
          onContextMenu={(e) => e.preventDefault()}
        >
          <canvas
            ref={(el) => {
              canvases.current[p] = el;
            }}
            aria-label={`${LABEL[p]} (server rendered)`}
          />
          {p !== '3d' && g && (
            <svg className="srv-crosshair" viewBox={`0 0 ${g.width} ${g.height}`} preserveAspectRatio="xMidYMid meet" data-testid={`srv-crosshair-${p}`}>
              {PLANE_KINDS.filter((k) => k !== p).map((k) => {
                const line = intersectionLine(g, view.point, normalOf(k));
                if (!line) return null;
                const w = Math.max(1, g.width / 400);
                return <line key={k} data-plane={k} x1={line[0][0]} y1={line[0][1]} x2={line[1][0]} y2={line[1][1]} stroke={COLOUR[k]} strokeWidth={w} vectorEffect="non-scaling-stroke" />;
              })}
            </svg>
          )}
        </div>
        <div className="overlay tl">
          <div style={p !== '3d' ? { color: COLOUR[p] } : undefined}>{LABEL[p]}</div>
          {p !== '3d' && info && (
            <div className="muted">
              {positionOf(info, p, view.point).toFixed(1)} mm
              {view.slab.mode !== 'none' ? ` · ${SLAB_LABEL[view.slab.mode]} ${view.slab.thickness} mm` : ''}
            </div>
          )}
          {p === '3d' && (
            <div className="muted">
              {vr.preset} · {Math.round(vr.azimuth)}° / {Math.round(vr.elevation)}°
            </div>
          )}
        </div>
        {p !== '3d' && g?.window && (
          <div className="overlay bl" data-testid={`srv-wl-${p}`}>
            W {Math.round(g.window[1])} L {Math.round(g.window[0])}
          </div>
        )}
        {!info && !infoError && !s.error && <div className="srv-note">Building the volume on the server…</div>}
        {info && !s.url && !s.error && <div className="srv-note">{p === '3d' && !planesSettled ? 'Waiting for the planes…' : 'Rendering…'}</div>}
        {(s.error || infoError) && (
          <div className="viewport-error" role="alert" data-testid={`srv-error-${p}`}>
            {p === '3d' ? 'The server could not render the volume' : `The server could not draw the ${LABEL[p].toLowerCase()} plane`}: {infoError ?? s.error}
          </div>
        )}
      </div>
    );
  };

  return (
    <div className={`server-mpr ${small ? 'small' : ''}`} data-testid="server-mpr">
      <div className="srv-bar" role="toolbar" aria-label="Server-rendered MPR tools">
        {small && (
          <span className="srv-tabs" role="tablist">
            {PANES.map((p) => (
              <button key={p} role="tab" aria-selected={selected === p} className={selected === p ? 'on' : ''} data-srv-pane={p} onClick={() => setSelected(p)}>
                {LABEL[p]}
              </button>
            ))}
          </span>
        )}
        {(['crosshair', 'scroll', 'wl'] as const).map((t) => (
          <button key={t} className={tool === t ? 'on' : ''} data-srv-tool={t} onClick={() => setTool(t)} title={t === 'crosshair' ? 'Move the crosshair: click or drag' : t === 'scroll' ? 'Step the plane: drag up or down (also the wheel, or two fingers)' : 'Window/level: drag (also right drag)'}>
            {t === 'crosshair' ? '✛' : t === 'scroll' ? 'Scroll' : 'W/L'}
          </button>
        ))}
        {ct &&
          WINDOW_PRESETS.map((w) => (
            <button key={w} data-srv-preset={w} className={view.window && 'preset' in view.window && view.window.preset === w ? 'on' : ''} onClick={() => change((v) => ({ ...v, window: { preset: w } }), false)}>
              {w[0].toUpperCase() + w.slice(1)}
            </button>
          ))}
        <span className="slab">
          <select
            aria-label="Server slab mode"
            data-testid="srv-slab-mode"
            value={view.slab.mode}
            onChange={(e) => change((v) => ({ ...v, slab: { ...v.slab, mode: e.target.value as SlabMode } }), false)}
          >
            {(Object.keys(SLAB_LABEL) as SlabMode[]).map((m) => (
              <option key={m} value={m}>
                {SLAB_LABEL[m]}
              </option>
            ))}
          </select>
          <input
            aria-label="Server slab thickness (mm)"
            data-testid="srv-slab-thickness"
            type="range"
            min={1}
            max={50}
            value={view.slab.thickness}
            onChange={(e) => change((v) => ({ ...v, slab: { ...v.slab, thickness: Number(e.target.value) } }), true)}
          />
          <span>{view.slab.thickness} mm</span>
        </span>
        <select aria-label="Server 3D preset" data-testid="srv-vr-preset" value={vr.preset} onChange={(e) => setVr((x) => ({ ...x, preset: e.target.value as VrPreset }))}>
          {VR_PRESETS.map((p) => (
            <option key={p}>{p}</option>
          ))}
        </select>
        <button onClick={reset} title="Crosshair to the centre, 3D from the front">
          Reset
        </button>
      </div>
      {warnings.length > 0 && (
        <div className="srv-warnings notice" role="status" data-testid="srv-warnings">
          {warnings.join('; ')}
        </div>
      )}
      <div className="srv-grid">{PANES.map(pane)}</div>
    </div>
  );
}
