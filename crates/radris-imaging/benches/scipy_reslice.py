#!/usr/bin/env python3
"""Reference timing for benches/mpr.rs: the same 512^3 int16 volume and the same oblique
512x512 reslice with scipy.ndimage.map_coordinates(order=1). Prints median ms of 20 runs."""
import time

import numpy as np
from scipy import ndimage

N = 512
SPACING = np.array([0.7, 0.7, 0.8])  # x, y, z


def volume():
    i = np.arange(N, dtype=np.float64)
    t = lambda f, ph: np.sin(i * f + ph)
    ax, ay, az = t(0.031, 0.3), t(0.027, 1.1), t(0.043, 2.0)
    bx, by, bz = t(0.11, 0.7), t(0.093, 0.2), t(0.071, 1.5)
    vol = np.empty((N, N, N), dtype=np.int16)  # [z, y, x]
    for k in range(N):
        sl = 400.0 * (ax[None, :] + ay[:, None] + az[k]) + 150.0 * bx[None, :] * by[:, None] * bz[k]
        vol[k] = sl.astype(np.int16)  # truncation toward zero like Rust's `as`
    return vol


def oblique_coords():
    centre = 255.5 * SPACING
    n = np.array([0.3, 0.5, 0.81])
    n /= np.linalg.norm(n)
    up = np.array([0.0, 0.0, 1.0])
    up = up - up.dot(n) * n
    up /= np.linalg.norm(up)
    v = -up
    u = np.cross(v, n)
    px = 0.7
    c = (np.arange(512) - 255.5) * px
    p = centre[None, None, :] + c[None, :, None] * u + c[:, None, None] * v  # [row, col, xyz]
    idx = p / SPACING
    return np.stack([idx[..., 2], idx[..., 1], idx[..., 0]])  # z, y, x


def main():
    vol = volume()
    coords = oblique_coords()
    out = np.empty((512, 512), dtype=np.float32)
    ndimage.map_coordinates(vol, coords, output=out, order=1, mode="constant", cval=np.nan)
    runs = []
    for _ in range(20):
        t = time.perf_counter()
        ndimage.map_coordinates(vol, coords, output=out, order=1, mode="constant", cval=np.nan)
        runs.append((time.perf_counter() - t) * 1e3)
    runs.sort()
    print(f"scipy map_coordinates(order=1) oblique 512x512: median {runs[len(runs)//2]:.2f} ms, "
          f"min {runs[0]:.2f} ms ({np.isnan(out).sum()} of {out.size} outside)")


if __name__ == "__main__":
    main()
