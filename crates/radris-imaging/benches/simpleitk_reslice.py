#!/usr/bin/env python3
"""Reference timing for benches/mpr.rs with SimpleITK: the 512^3 int16 volume of
scipy_reslice.py (same formula), the same oblique 512x512 plane (0.7 mm pixels, normal
(0.3, 0.5, 0.81), up +z, centred on the volume), resampled with sitk.Resample and linear
interpolation into float32. Prints median/min ms of 20 runs, with SimpleITK's default
thread count and with one thread. Needs `pip install SimpleITK scipy numpy`."""
import time

import numpy as np
import SimpleITK as sitk

from scipy_reslice import SPACING, volume


def plane_geometry():
    centre = 255.5 * SPACING
    n = np.array([0.3, 0.5, 0.81])
    n /= np.linalg.norm(n)
    up = np.array([0.0, 0.0, 1.0])
    up = up - up.dot(n) * n
    up /= np.linalg.norm(up)
    v = -up
    u = np.cross(v, n)
    px = 0.7
    corner = centre - 255.5 * px * u - 255.5 * px * v
    direction = np.stack([u, v, np.cross(u, v)], axis=1).flatten().tolist()
    return corner.tolist(), [px, px, 1.0], direction


def time_resample(img, origin, spacing, direction, runs=20):
    def once():
        return sitk.Resample(
            img, [512, 512, 1], sitk.Transform(), sitk.sitkLinear, origin, spacing, direction,
            float("nan"), sitk.sitkFloat32,
        )

    out = once()
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        out = once()
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    return ms, out


def main():
    vol = volume()
    img = sitk.GetImageFromArray(vol)  # int16, [z, y, x] -> size (x, y, z)
    img.SetSpacing(SPACING.tolist())
    origin, spacing, direction = plane_geometry()
    for threads in (sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), 1):
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
        ms, out = time_resample(img, origin, spacing, direction)
        a = sitk.GetArrayFromImage(out)
        print(f"SimpleITK {sitk.Version.VersionString()} Resample(linear) oblique 512x512, "
              f"{threads} thread(s): median {ms[len(ms)//2]:.2f} ms, min {ms[0]:.2f} ms "
              f"({int(np.isnan(a).sum())} of {a.size} outside)")


if __name__ == "__main__":
    main()
