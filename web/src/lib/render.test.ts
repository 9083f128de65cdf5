import { describe, expect, it } from 'vitest';
import {
  boxToPixel,
  capPixels,
  clampToVolume,
  containRect,
  dragRotate,
  dragWindow,
  fitPixel,
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
  stepPlane,
  volumeCentre,
  vrRequest,
  wheelSteps,
  windowOf,
  type Geometry,
  type MprView,
  type Vec3,
  type VolumeInfo,
} from './render';

// the demo chest CT as `GET …/volume` describes it
const CHEST: VolumeInfo = {
  study_uid: '1.2.3',
  series_uid: '1.2.3.4',
  modality: 'CT',
  dims: [512, 512, 300],
  spacing: [0.742188, 0.742188, 1.0],
  origin: [-190, -190, -299],
  axes: [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ],
  phases: [0],
  slices: 300,
  spacing_mm: 1,
  gaps: [],
  uneven: false,
  tilt_deg: 0,
  resampled: false,
  warnings: [],
};

// what the server answered for `mpr?plane=sagittal&size=400` of that series
const SAGITTAL: Geometry = {
  width: 400,
  height: 400,
  first_pixel: [-0.370966, -148.437472, -1.433494],
  orientation: [0, 1, 0, 0, 0, -1],
  pixel_mm: 0.742188,
  window: [-600, 1500],
};

const close = (a: number[], b: number[], eps = 1e-6) => a.forEach((x, i) => expect(x).toBeCloseTo(b[i], -Math.log10(eps)));

describe('planes', () => {
  it('has the documented normals: +z axial, +y coronal, −x sagittal', () => {
    close(normalOf('axial'), [0, 0, 1]);
    close(normalOf('coronal'), [0, 1, 0]);
    close(normalOf('sagittal'), [-1, 0, 0]);
  });

  it('finds the volume centre the server uses by default', () => {
    close(volumeCentre(CHEST), [-0.370966, -0.370966, -149.5], 1e-5);
  });

  it('gives each plane its position through the crosshair point', () => {
    const c = volumeCentre(CHEST);
    const p: Vec3 = [c[0] + 10, c[1] - 20, c[2] + 30];
    expect(positionOf(CHEST, 'axial', p)).toBeCloseTo(30);
    expect(positionOf(CHEST, 'coronal', p)).toBeCloseTo(-20);
    expect(positionOf(CHEST, 'sagittal', p)).toBeCloseTo(-10);
  });

  it('steps a plane by one voxel along its own normal and stays inside the volume', () => {
    const c = volumeCentre(CHEST);
    close(stepPlane(CHEST, c, 'axial', 1), [c[0], c[1], c[2] + 1]);
    close(stepPlane(CHEST, c, 'sagittal', 2), [c[0] - 2 * 0.742188, c[1], c[2]]);
    close(stepPlane(CHEST, c, 'axial', -1000), [c[0], c[1], -299]);
    close(clampToVolume(CHEST, [500, -500, 0]), [-190 + 511 * 0.742188, -190, 0]);
  });
});

describe('sizes', () => {
  it('sizes a pane in device pixels, capped at 1024 a side keeping its shape', () => {
    expect(paneSize(600, 400, 1)).toEqual([600, 400]);
    expect(paneSize(390, 600, 2)).toEqual([666, 1024]);
    expect(paneSize(0, 0, 0)).toEqual([1, 1]);
  });

  it('caps the pixels of a 3D picture', () => {
    expect(capPixels([1024, 1024], 512 * 512)).toEqual([512, 512]);
    expect(capPixels([300, 200], 512 * 512)).toEqual([300, 200]);
  });

  it('chooses the pixel size so the whole volume fits', () => {
    const ext = 511 * 0.742188;
    expect(fitPixel(CHEST, 'axial', [400, 400])).toBeCloseTo(ext / 399, 3);
    expect(fitPixel(CHEST, 'axial', [400, 400]) * 399).toBeGreaterThanOrEqual(ext);
    // sagittal: 379 mm across, 299 mm down, in a wide pane the height decides
    expect(fitPixel(CHEST, 'sagittal', [800, 300])).toBeCloseTo(299 / 299, 3);
  });
});

describe('requests', () => {
  const view: MprView = { point: volumeCentre(CHEST), slab: { mode: 'none', thickness: 10 } };

  it('asks for a thin plane through the point, centred on the volume', () => {
    const { mode, params } = planeRequest(CHEST, 'coronal', { ...view, point: [5, 12.345, -100] }, [500, 400]);
    expect(mode).toBe('mpr');
    expect(params.get('plane')).toBe('coronal');
    expect(params.get('center')).toBe('-0.37,-0.37,-149.5');
    expect(params.get('position')).toBe('12.72');
    expect(params.get('size')).toBe('500,400');
    expect(params.has('window')).toBe(false);
    expect(renderUrl('1.2', '3.4', mode, params)).toMatch(/^\/api\/v1\/render\/studies\/1\.2\/series\/3\.4\/mpr\?plane=coronal&/);
  });

  it('uses the slab endpoint for MIP, MinIP and average', () => {
    const { mode, params } = planeRequest(CHEST, 'axial', { ...view, slab: { mode: 'mip', thickness: 20 }, window: { preset: 'lung' } }, [400, 400]);
    expect(mode).toBe('slab');
    expect(params.get('slab')).toBe('mip');
    expect(params.get('thickness')).toBe('20');
    expect(params.get('window')).toBe('lung');
    expect(planeRequest(CHEST, 'axial', { ...view, window: { center: 40.004, width: 400 } }, [10, 10]).params.get('window')).toBe('40,400');
  });

  it('asks for a small JPEG while the 3D picture is dragged', () => {
    const p = vrRequest({ preset: 'bone', azimuth: 30, elevation: -10 }, [160, 120], true);
    expect(p.toString()).toBe('preset=bone&azimuth=30&elevation=-10&size=160%2C120&format=jpeg&quality=80');
    expect(vrRequest({ preset: 'lung', azimuth: 0, elevation: 0 }, [512, 512], false).has('format')).toBe(false);
  });

  it('names the volume route', () => {
    expect(renderUrl('1.2', '3.4', 'volume')).toBe('/api/v1/render/studies/1.2/series/3.4/volume');
  });
});

describe('interaction', () => {
  it('windows by dragging: right widens, down raises the centre', () => {
    expect(dragWindow({ center: 40, width: 400 }, 30, 0)).toEqual({ center: 40, width: 440 });
    expect(dragWindow({ center: 40, width: 400 }, 0, 30).center).toBeGreaterThan(40);
    expect(dragWindow({ center: 40, width: 10 }, -100, 0).width).toBe(1);
  });

  it('steps once per wheel notch, down moving against the normal', () => {
    expect(wheelSteps(120)).toBe(-1);
    expect(wheelSteps(-120)).toBe(1);
    expect(wheelSteps(3)).toBe(-1);
    expect(wheelSteps(400)).toBe(-4);
    expect(wheelSteps(3, 1)).toBe(-1);
    expect(wheelSteps(0)).toBe(0);
  });

  it('turns the camera by dragging, elevation kept inside ±89°', () => {
    expect(dragRotate({ preset: 'bone', azimuth: 0, elevation: 0 }, -40, 20)).toEqual({ preset: 'bone', azimuth: 20, elevation: 10 });
    expect(dragRotate({ preset: 'bone', azimuth: 170, elevation: 80 }, -40, 100)).toEqual({ preset: 'bone', azimuth: -170, elevation: 89 });
  });

  it('starts a window drag from the picture’s window unless numbers were chosen', () => {
    expect(windowOf(SAGITTAL, undefined)).toEqual({ center: -600, width: 1500 });
    expect(windowOf(SAGITTAL, { preset: 'bone' })).toEqual({ center: -600, width: 1500 });
    expect(windowOf(SAGITTAL, { center: 1, width: 2 })).toEqual({ center: 1, width: 2 });
  });
});

describe('pictures and the patient', () => {
  it('parses the geometry header and rejects junk', () => {
    expect(parseGeometry(JSON.stringify(SAGITTAL))).toEqual(SAGITTAL);
    expect(parseGeometry('{"width":10,"height":10}')).toEqual({ width: 10, height: 10 });
    expect(parseGeometry('nope')).toBeUndefined();
    expect(parseGeometry(null)).toBeUndefined();
    expect(parseGeometry('{"width":"10"}')).toBeUndefined();
  });

  it('maps a pixel to the patient and back', () => {
    const p = pixelToPatient(SAGITTAL, 100, 50) as Vec3;
    close(p, [-0.370966, -148.437472 + 100 * 0.742188, -1.433494 - 50 * 0.742188]);
    close(patientToPixel(SAGITTAL, p) as number[], [100, 50]);
    expect(pixelToPatient({ width: 4, height: 4 }, 0, 0)).toBeUndefined();
  });

  it('maps a click in a letterboxed pane to the right pixel', () => {
    expect(containRect(800, 400, 400, 400)).toEqual({ x: 200, y: 0, w: 400, h: 400 });
    // the centre of the box is the picture's centre: (W−1)/2
    close(boxToPixel(800, 400, SAGITTAL, 400, 200), [199.5, 199.5]);
    close(pixelToBox(800, 400, SAGITTAL, 199.5, 199.5), [400, 200]);
    close(boxToPixel(200, 200, SAGITTAL, 0.25, 0.25), [0, 0]);
  });

  it('draws the other planes as lines across the picture', () => {
    const point = pixelToPatient(SAGITTAL, 100, 50) as Vec3;
    // the coronal plane (normal +y) is a vertical line at c = 100 on a sagittal picture
    const coronal = intersectionLine(SAGITTAL, point, normalOf('coronal'));
    close(coronal?.flat() as number[], [100.5, 0, 100.5, 400]);
    // the axial plane (normal +z) is horizontal at r = 50
    const axial = intersectionLine(SAGITTAL, point, normalOf('axial'));
    close(axial?.flat() as number[], [0, 50.5, 400, 50.5]);
    // the sagittal plane is parallel to itself: no line
    expect(intersectionLine(SAGITTAL, point, normalOf('sagittal'))).toBeUndefined();
    // outside the picture: no line
    expect(intersectionLine(SAGITTAL, [0, 500, 0], normalOf('coronal'))).toBeUndefined();
  });
});
