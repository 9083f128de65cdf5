#!/usr/bin/env python3
"""Reference resampling for tests/simpleitk.rs.

Usage: simpleitk_resample.py DIR

DIR/header.json describes a volume (dims x,y,z; spacing; origin; axes = unit vectors of the
grid axes in patient space; dtype; slope; intercept), DIR/volume.raw holds its voxels
(little-endian, x fastest), and "planes" lists output planes in the conventions of
radris_imaging::mpr::Plane (origin = centre of the image, u along a row, v down a column,
pixel_mm). Each plane is resampled with SimpleITK (sitk.Resample, linear interpolation, an
output image whose origin/spacing/direction describe the plane) and written to
DIR/<name>.raw as little-endian float32, row-major, NaN outside. A plane with
"samples" > 1 is a thick slab: that many planes evenly spaced over "thickness" mm along
the normal u x v, combined with "mode" ("max" or "mean", NaN samples ignored).
"""
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def main() -> None:
    d = Path(sys.argv[1])
    h = json.loads((d / "header.json").read_text())
    nx, ny, nz = h["dims"]
    dtype = {"float32": "<f4", "int16": "<i2", "uint16": "<u2"}[h["dtype"]]
    stored = np.fromfile(d / "volume.raw", dtype=dtype)
    if stored.size != nx * ny * nz:
        raise SystemExit(f"volume.raw holds {stored.size} voxels, expected {nx * ny * nz}")
    values = stored.astype(np.float64) * h["slope"] + h["intercept"]
    img = sitk.GetImageFromArray(values.reshape(nz, ny, nx).astype(np.float32))
    img.SetSpacing([float(s) for s in h["spacing"]])
    img.SetOrigin([float(o) for o in h["origin"]])
    axes = np.array(h["axes"], dtype=np.float64)  # rows: grid axes
    img.SetDirection(axes.T.flatten().tolist())  # ITK: columns are the grid axes

    for p in h["planes"]:
        u = np.array(p["u"], dtype=np.float64)
        v = np.array(p["v"], dtype=np.float64)
        n = np.cross(u, v)
        w, hgt, px = p["width"], p["height"], p["pixel_mm"]
        samples = int(p.get("samples", 1))
        thickness = float(p.get("thickness", 0.0))
        corner = (
            np.array(p["origin"], dtype=np.float64)
            - (w - 1) / 2.0 * px * u
            - (hgt - 1) / 2.0 * px * v
        )
        if samples > 1:
            corner = corner - thickness / 2.0 * n
            step_n = thickness / (samples - 1)
        else:
            step_n = 1.0
        out = sitk.Resample(
            img,
            [int(w), int(hgt), samples],
            sitk.Transform(),
            sitk.sitkLinear,
            corner.tolist(),
            [float(px), float(px), float(step_n)],
            np.stack([u, v, n], axis=1).flatten().tolist(),
            float("nan"),
            sitk.sitkFloat32,
        )
        a = sitk.GetArrayFromImage(out).astype(np.float32)  # [slab sample, row, col]
        if samples == 1:
            res = a[0]
        else:
            with np.errstate(all="ignore"):
                if p["mode"] == "max":
                    res = np.nanmax(np.where(np.isnan(a), -np.inf, a), axis=0)
                    res[np.isneginf(res)] = np.nan
                else:
                    res = np.nanmean(a, axis=0)
        res.astype("<f4").tofile(d / f"{p['name']}.raw")


if __name__ == "__main__":
    main()
