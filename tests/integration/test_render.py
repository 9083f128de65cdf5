"""Server-side imaging on archived series: `/api/v1/render/…` (volume description, MPR,
oblique planes, slabs, curved reformats, volume renderings) and `radris render`, checked
against the stored slices read independently with pydicom and numpy; derived series saved
back into the study (derived CT with plane geometry, Secondary Capture for renderings) read
back over WADO-RS, checked by dciodvfy and compared in HU; bad requests, roles and tenants."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from PIL import Image

from conftest import Server, run_radris
from dicomweb_util import split_multipart, stow

ROWS = COLS = 128
SLICES = 60


def png(r) -> np.ndarray:
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"] in ("image/png", "image/jpeg"), r.headers
    return np.asarray(Image.open(io.BytesIO(r.content)))


def problem(r, status: int, needle: str = ""):
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    if needle:
        assert needle in r.json()["detail"], r.json()


def volume_of(files):
    dss = [pydicom.dcmread(f) for f in files]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    vol = np.stack([d.pixel_array.astype(np.float64) * float(d.RescaleSlope)
                    + float(d.RescaleIntercept) for d in dss])  # [z ascending, row (y), col (x)]
    zs = np.array([float(d.ImagePositionPatient[2]) for d in dss])
    x0, y0 = (float(v) for v in dss[0].ImagePositionPatient[:2])
    dx = float(dss[0].PixelSpacing[0])
    return vol, zs, x0, y0, dx


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    gen = tmp_path_factory.mktemp("ct60")
    run_radris("generate", "ct", "--out", gen, "--slices", SLICES, "--rows", ROWS,
               "--cols", COLS, "--seed", "render", check=True)
    files = sorted(gen.glob("*.dcm"))
    srv = Server(tmp_path_factory.mktemp("render"))
    srv.start()
    s = srv.session(scope="read,write,delete,admin")
    r = stow(s, srv.dicomweb, files)
    assert r.status_code == 200, r.text[:300]
    head = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, series = str(head.StudyInstanceUID), str(head.SeriesInstanceUID)
    vol, zs, x0, y0, dx = volume_of(files)
    api = f"{srv.scheme}://127.0.0.1:{srv.http_port}/api/v1"
    yield SimpleNamespace(
        srv=srv, s=s, study=study, series=series, files=files, vol=vol, zs=zs, x0=x0, y0=y0,
        dx=dx, api=api, base=f"{api}/render/studies/{study}/series/{series}",
        sops={str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files})
    srv.stop()


def fetch_instance(env, series_uid: str, sop: str, tmp_path) -> tuple[pydicom.Dataset, str]:
    r = env.s.get(f"{env.srv.dicomweb}/studies/{env.study}/series/{series_uid}/instances/{sop}",
                  headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert r.status_code == 200, r.text[:300]
    parts = split_multipart(r.content, r.headers["Content-Type"])
    assert len(parts) == 1
    path = tmp_path / f"{sop}.dcm"
    path.write_bytes(parts[0][1])
    return pydicom.dcmread(path), str(path)


def dciodvfy_errors(path: str) -> list[str]:
    # scripts/deps.sh installs dicom3tools: this check never skips
    assert shutil.which("dciodvfy"), "dciodvfy (dicom3tools) is needed"
    cp = subprocess.run(["dciodvfy", path], capture_output=True, text=True)
    return [line for line in (cp.stdout + cp.stderr).splitlines() if line.startswith("Error")]


def test_volume_and_every_kind_of_picture(env):
    info = env.s.get(f"{env.base}/volume").json()
    assert info["dims"] == [COLS, ROWS, SLICES], info
    assert info["spacing"][0] == pytest.approx(env.dx) and info["spacing"][2] == pytest.approx(3.0)
    assert info["warnings"] == [] and info["gaps"] == [] and info["phases"] == [0.0], info
    assert info["modality"] == "CT"

    # axial through slice 20 at the source grid: the stored slice, windowed
    k = 20
    z_centre = (env.zs[0] + env.zs[-1]) / 2
    r = env.s.get(f"{env.base}/mpr", params={
        "plane": "axial", "position": env.zs[k] - z_centre, "window": "-600,1500"})
    axial = png(r)
    assert axial.shape == (ROWS, COLS), axial.shape
    geo = json.loads(r.headers["X-Radris-Geometry"])
    assert geo["first_pixel"] == pytest.approx([env.x0, env.y0, env.zs[k]], abs=1e-6), geo
    assert geo["window"] == [-600, 1500]
    lo, hi = -600 - 0.5 - 1499 / 2, -600 - 0.5 + 1499 / 2
    expect = np.clip((env.vol[k] - (-600 - 0.5)) / 1499 + 0.5, 0, 1) * 255
    expect = np.where(env.vol[k] <= lo, 0, np.where(env.vol[k] > hi, 255, np.round(expect)))
    assert np.abs(axial.astype(float) - expect).max() <= 1.0
    assert axial.std() > 10, "the picture is blank"

    # oblique, slab, curved and 3D draw something, and differ from each other as they should
    oblique = png(env.s.get(f"{env.base}/mpr", params={
        "plane": "oblique", "normal": "0.3,0.5,0.81", "up": "0,0,1", "size": "200,180"}))
    assert oblique.shape == (180, 200) and oblique.std() > 5
    thin = png(env.s.get(f"{env.base}/mpr", params={"plane": "coronal", "window": "40,400"}))
    mip = png(env.s.get(f"{env.base}/slab", params={
        "plane": "coronal", "thickness": 40, "slab": "mip", "window": "40,400"}))
    assert mip.shape == thin.shape
    assert (mip.astype(int) >= thin.astype(int) - 1).all(), "a MIP is never darker"
    assert (mip.astype(int) > thin.astype(int) + 5).mean() > 0.01
    curved = png(env.s.get(f"{env.base}/curved", params={
        "points": "-100,0,-30;0,40,-90;100,0,-150", "width": 80, "pixel": 1.0}))
    assert curved.shape[0] == 81 and curved.shape[1] > 200 and curved.std() > 5
    front = png(env.s.get(f"{env.base}/vr", params={"preset": "bone", "size": "160"}))
    side = png(env.s.get(f"{env.base}/vr", params={"preset": "bone", "size": "160",
                                                   "azimuth": 90}))
    assert front.shape == (160, 160, 3)
    assert (front.max(axis=2) > 30).sum() > 500, "the rendering is empty"
    assert np.abs(front.astype(int) - side.astype(int)).mean() > 2
    r = env.s.get(f"{env.base}/vr", params={"preset": "mip", "format": "jpeg",
                                            "projection": "perspective"})
    assert r.headers["Content-Type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"

    # the cache holds the volume
    metrics = env.s.get(f"{env.srv.scheme}://127.0.0.1:{env.srv.http_port}/metrics").text
    line = [x for x in metrics.splitlines() if x.startswith("radris_render_volume_cache_bytes")]
    assert line and float(line[0].split()[-1]) >= COLS * ROWS * SLICES * 2, line


def test_bad_requests_roles_and_tenants(env):
    b = env.base
    problem(env.s.get(f"{b}/hologram"), 400, "unknown mode")
    problem(env.s.get(f"{b}/mpr", params={"plane": "oblique"}), 400, "normal")
    problem(env.s.get(f"{b}/mpr", params={"plane": "oblique", "normal": "0,0,0"}), 400)
    problem(env.s.get(f"{b}/mpr", params={"size": "5000"}), 400, "size")
    problem(env.s.get(f"{b}/mpr", params={"window": "wide"}), 400, "window")
    problem(env.s.get(f"{b}/mpr", params={"center": "1,2"}), 400, "center")
    problem(env.s.get(f"{b}/mpr", params={"phase": 3}), 400, "phase")
    problem(env.s.get(f"{b}/mpr", params={"colour": "red"}), 400)
    problem(env.s.get(f"{b}/vr", params={"elevation": 90}), 400, "elevation")
    problem(env.s.get(f"{b}/vr", params={"preset": "chrome"}), 400, "preset")
    problem(env.s.get(f"{b}/curved", params={"points": "1,2,3"}), 400, "points")
    problem(env.s.get(f"{b}/mpr", params={"format": "gif"}), 400, "format")
    problem(env.s.get(f"{env.api}/render/studies/{env.study}/series/1.2.3.999/mpr"), 404)
    problem(env.s.get(f"{env.api}/render/studies/{env.study}/series/not..a.uid/mpr"), 400)
    problem(env.s.post(f"{b}/derived", json={"mode": "mpr", "count": 0}), 400, "count")
    problem(env.s.post(f"{b}/derived", json={"mode": "mpr", "frames": 3}), 400)
    problem(env.s.post(f"{b}/derived", json={"mode": "curved", "count": 2,
                                            "params": {"points": "0,0,0;10,0,0"}}), 400)
    # unauthenticated, read-only saving, another tenant
    import requests
    assert requests.get(f"{b}/volume").status_code == 401
    reader = env.srv.session(scope="read")
    assert png(reader.get(f"{b}/mpr")).size > 0
    problem(reader.post(f"{b}/derived", json={"mode": "mpr"}), 403)
    other = env.srv.session(tenant="other", scope="read,write,delete,admin")
    problem(other.get(f"{b}/volume"), 404)
    problem(other.get(f"{b}/mpr"), 404)
    problem(other.post(f"{b}/derived", json={"mode": "mpr"}), 404)


def test_derived_ct_series_is_saved_with_geometry_and_references(env, tmp_path):
    c = 70  # the sagittal planes go through columns 71, 70, 69 (their normal points to −x)
    x_c = env.x0 + c * env.dx
    y_c = env.y0 + (COLS - 1) / 2 * env.dx
    z_c = (env.zs[0] + env.zs[-1]) / 2
    r = env.s.post(f"{env.base}/derived", json={
        "mode": "mpr", "description": "Sagittal reformats",
        "params": {"plane": "sagittal", "center": f"{x_c},{y_c},{z_c}", "pixel": env.dx},
        "count": 3, "step_mm": env.dx})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["source_series_uid"] == env.series and len(out["instances"]) == 3
    new = out["series_uid"]

    series = env.s.get(f"{env.srv.dicomweb}/studies/{env.study}/series").json()
    uids = {s["0020000E"]["Value"][0] for s in series}
    assert {env.series, new} <= uids

    for n, sop in enumerate(out["instances"]):
        ds, path = fetch_instance(env, new, sop, tmp_path)
        assert dciodvfy_errors(path) == [], path
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription == "Sagittal reformats" and int(ds.InstanceNumber) == n + 1
        assert ds.PatientID == pydicom.dcmread(env.files[0], stop_before_pixels=True).PatientID
        assert {i.ReferencedSOPInstanceUID for i in ds.SourceImageSequence} == env.sops
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == env.series
        assert ds.DerivationCodeSequence[0].CodeValue == "113072"
        # the plane: column c+1, c, c-1 of every slice, rows going down in z
        col = c + 1 - n
        assert float(ds.ImagePositionPatient[0]) == pytest.approx(env.x0 + col * env.dx, abs=1e-3)
        assert [float(v) for v in ds.ImageOrientationPatient] == pytest.approx([0, 1, 0, 0, 0, -1])
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        z_top = float(ds.ImagePositionPatient[2])
        zr = z_top - np.arange(hu.shape[0]) * env.dx
        inside = (zr >= env.zs[0]) & (zr <= env.zs[-1])
        assert inside.sum() >= SLICES - 2
        expect = np.stack([np.interp(zr, env.zs, env.vol[:, j, col]) for j in range(COLS)], axis=1)
        diff = np.abs(hu[inside] - expect[inside])
        assert diff.max() <= 1.0, f"picture {n}: HU differ by up to {diff.max()}"
        assert (hu[~inside] == -3024).all(), "outside the volume is padding"

    # the saving is audited
    audit = env.s.get(f"{env.api}/audit", params={"action": "render.derived.store"}).json()
    rows = audit["items"] if isinstance(audit, dict) else audit
    assert any(new in json.dumps(a) for a in rows), audit


def test_derived_renderings_are_secondary_captures(env, tmp_path):
    r = env.s.post(f"{env.base}/derived", json={
        "mode": "vr", "params": {"preset": "bone", "size": "96"}, "count": 4})
    assert r.status_code == 201, r.text
    out = r.json()
    assert len(out["instances"]) == 4
    pictures = []
    for sop in out["instances"]:
        ds, path = fetch_instance(env, out["series_uid"], sop, tmp_path)
        assert dciodvfy_errors(path) == [], path
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.PhotometricInterpretation == "RGB" and ds.Rows == 96
        assert ds.DerivationCodeSequence[0].CodeValue == "113074"
        pictures.append(ds.pixel_array.astype(int))
    # a turn of 90 degrees between pictures: they differ
    assert np.abs(pictures[0] - pictures[1]).mean() > 2


def test_missing_slice_is_reported(env, tmp_path):
    gen = tmp_path / "gap"
    run_radris("generate", "ct", "--out", gen, "--slices", 30, "--rows", 64, "--cols", 64,
               "--seed", "render-gap", check=True)
    files = sorted(gen.glob("*.dcm"), key=lambda f: float(
        pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    del files[14]
    assert stow(env.s, env.srv.dicomweb, files).status_code == 200
    head = pydicom.dcmread(files[0], stop_before_pixels=True)
    base = (f"{env.api}/render/studies/{head.StudyInstanceUID}"
            f"/series/{head.SeriesInstanceUID}")
    info = env.s.get(f"{base}/volume").json()
    assert info["slices"] == 29 and len(info["gaps"]) == 1 and info["gaps"][0]["missing"] == 1
    r = env.s.get(f"{base}/mpr", params={"plane": "sagittal"})
    assert "missing" in r.headers.get("X-Radris-Warnings", ""), r.headers


def test_cli_render(env, tmp_path):
    out = tmp_path / "vr.png"
    cp = run_radris("render", "--data-dir", env.srv.data_dir, "--config", env.srv.config_path,
                    "--series", env.series, "--mode", "vr", "--preset", "bone",
                    "--size", "120,100", "--azimuth", "-30", "--out", out, env=env.srv.env)
    assert cp.returncode == 0, cp.stderr
    img = np.asarray(Image.open(out))
    assert img.shape == (100, 120, 3) and (img.max(axis=2) > 30).sum() > 300
    jpg = tmp_path / "sag.jpg"
    cp = run_radris("render", "--data-dir", env.srv.data_dir, "--config", env.srv.config_path,
                    "--series", env.series, "--mode", "slab", "--plane", "sagittal",
                    "--thickness", "20", "--slab", "average", "--window", "bone",
                    "--out", jpg, env=env.srv.env)
    assert cp.returncode == 0, cp.stderr
    assert jpg.read_bytes()[:2] == b"\xff\xd8"
    cp = run_radris("render", "--data-dir", env.srv.data_dir, "--config", env.srv.config_path,
                    "--series", env.series, "--plane", "diagonal", "--out", tmp_path / "x.png",
                    env=env.srv.env)
    assert cp.returncode != 0 and "unknown plane" in cp.stderr, cp.stderr
    cp = run_radris("render", "--data-dir", env.srv.data_dir, "--config", env.srv.config_path,
                    "--series", "1.2.3.4", "--out", tmp_path / "x.png", env=env.srv.env)
    assert cp.returncode != 0 and "no series" in cp.stderr, cp.stderr


def stow_generated(env, tmp_path, kind: str) -> list:
    gen = tmp_path / kind
    run_radris("generate", "phantom", "--kind", kind, "--out", gen, "--seed", "render",
               check=True)
    files = sorted(gen.glob("*.dcm"))
    assert stow(env.s, env.srv.dicomweb, files).status_code == 200
    return [pydicom.dcmread(f) for f in files]


def centre_of(info) -> np.ndarray:
    c = np.array(info["origin"], dtype=float)
    for a in range(3):
        c += np.array(info["axes"][a]) * (info["dims"][a] - 1) * info["spacing"][a] / 2
    return c


def test_fusion_registers_a_shifted_series(env, tmp_path):
    dss = stow_generated(env, tmp_path, "registration")
    ct = next(d for d in dss if d.Modality == "CT")
    mr = next(d for d in dss if d.Modality == "MR")
    base = f"{env.api}/render/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
    info = env.s.get(f"{base}/volume").json()
    fused = {"overlay": mr.SeriesInstanceUID, "plane": "coronal", "opacity": 0.6}

    # registered by mutual information: the generator shifted the MR-like series' content
    # by (3.7, -2.4, 5.1) mm; the transform maps CT points to MR points
    r = env.s.get(f"{base}/fusion", params={**fused, "register": "true"})
    registered = png(r)
    assert registered.ndim == 3 and registered.shape[2] == 3
    reg = json.loads(r.headers["X-Radris-Registration"])
    assert reg["mutual_information"] > 0
    centre = centre_of(info)
    moved = np.array(reg["rotation"]) @ centre + np.array(reg["translation"]) - centre
    assert np.abs(moved - [3.7, -2.4, 5.1]).max() < 1.0, moved

    # the same frame of reference and no registration: identity, and a different picture
    r = env.s.get(f"{base}/fusion", params={**fused, "register": "false"})
    assert json.loads(r.headers["X-Radris-Registration"])["translation"] == [0, 0, 0]
    assert np.abs(png(r).astype(int) - registered.astype(int)).mean() > 0.5
    # opacity 0 is the CT alone, in grey
    grey = png(env.s.get(f"{base}/fusion", params={**fused, "opacity": 0, "register": "true"}))
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert (registered[..., 0] != registered[..., 2]).mean() > 0.01, "no colour overlay"

    problem(env.s.get(f"{base}/fusion"), 400, "overlay")
    problem(env.s.get(f"{base}/fusion", params={**fused, "opacity": 2}), 400, "opacity")
    problem(env.s.get(f"{base}/fusion", params={**fused, "colormap": "sepia"}), 400)
    problem(env.s.get(f"{base}/fusion", params={**fused, "overlay": "1.2.3.4"}), 404)

    # a fused key view saved into the study: a Secondary Capture citing the CT
    r = env.s.post(f"{base}/derived", json={"mode": "fusion", "params": {
        **fused, "register": True}, "description": "PET-CT fusion"})
    assert r.status_code == 201, r.text
    out = r.json()
    ds, path = fetch_instance(SimpleNamespace(**{**vars(env), "study": ct.StudyInstanceUID}),
                              out["series_uid"], out["instances"][0], tmp_path)
    assert dciodvfy_errors(path) == []
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.PhotometricInterpretation == "RGB"
    assert mr.SeriesInstanceUID in ds.DerivationDescription


def test_time_intensity_curve_of_a_4d_series(env, tmp_path):
    dss = stow_generated(env, tmp_path, "dynamic")
    d0 = dss[0]
    base = f"{env.api}/render/studies/{d0.StudyInstanceUID}/series/{d0.SeriesInstanceUID}"
    info = env.s.get(f"{base}/volume").json()
    phases = sorted({int(d.TemporalPositionIdentifier) for d in dss})
    assert len(info["phases"]) == len(phases) > 1
    trig = sorted({float(d.TriggerTime) for d in dss})
    assert info["phases"] == pytest.approx([(t - trig[0]) / 1000 for t in trig], abs=1e-6)

    # every voxel's patient position and value per phase, read independently
    by_phase = {p: sorted((d for d in dss if int(d.TemporalPositionIdentifier) == p),
                          key=lambda d: float(d.ImagePositionPatient[2])) for p in phases}
    vols = np.stack([np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
                               for d in by_phase[p]]) for p in phases])  # [t, z, y, x]
    first = by_phase[phases[0]]
    row = np.array([float(v) for v in first[0].ImageOrientationPatient[:3]])
    col = np.array([float(v) for v in first[0].ImageOrientationPatient[3:]])
    dy, dx = (float(v) for v in first[0].PixelSpacing)
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in first])
    k, j, i = np.meshgrid(range(vols.shape[1]), range(vols.shape[2]), range(vols.shape[3]),
                          indexing="ij")
    pos = ipp[k] + i[..., None] * dx * row + j[..., None] * dy * col
    # the most enhancing voxel, and a 4 mm sphere around it
    gain = vols.max(axis=0) - vols[0]
    at = np.unravel_index(np.argmax(gain), gain.shape)
    centre = pos[at]
    inside = np.linalg.norm(pos - centre, axis=-1) <= 4.0
    expect = [v[inside].mean() for v in vols]

    r = env.s.get(f"{base}/tic", params={"center": ",".join(map(str, centre)), "radius": 4})
    assert r.status_code == 200, r.text
    curve = r.json()
    assert curve["voxels"] == int(inside.sum())
    assert [p["mean"] for p in curve["points"]] == pytest.approx(expect, abs=1e-3)
    assert curve["peak"] == pytest.approx(max(expect), abs=1e-3)
    assert curve["peak_enhancement"] > 50

    # cine: another phase is another picture; a phase that does not exist is refused
    a = png(env.s.get(f"{base}/mpr", params={"phase": 0}))
    b = png(env.s.get(f"{base}/mpr", params={"phase": int(np.argmax(expect))}))
    assert np.abs(a.astype(int) - b.astype(int)).max() > 10
    problem(env.s.get(f"{base}/mpr", params={"phase": len(phases)}), 400, "phase")
    problem(env.s.get(f"{base}/tic"), 400, "center")
    problem(env.s.get(f"{base}/tic", params={"center": "9999,0,0"}), 400, "outside")
