#!/usr/bin/env python3
"""Server-side imaging timings over HTTP with a release build of RADRIS:

* building the volume of an archived series (`GET …/volume`, first call: every instance
  decrypted, decoded and sorted; the files are in the OS page cache from the import) and
  the same call once the volume is cached;
* an oblique 512×512 MPR, a 20 mm MIP slab and a 512×512 bone rendering, end to end
  (request, render, PNG, response), from the cached volume.

    python3 bench/render_volume.py [--slices 500] [--bin target/release/radris]

Prints median / min milliseconds. Performance figures live here, not in tests.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn, runs: int) -> tuple[float, float]:
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms), min(ms)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "radris"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radris-render-bench-"))
    try:
        gen, data = work / "gen", work / "data"
        subprocess.run([args.bin, "generate", "ct", "--out", gen, "--slices", str(args.slices),
                        "--rows", "512", "--cols", "512", "--seed", "render-bench"], check=True,
                       capture_output=True)
        cfg = work / "radris.toml"
        cfg.write_text("[http]\nanonymous = true\n")
        subprocess.run([args.bin, "import", "--data-dir", data, "--config", cfg, gen],
                       check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen(
            [args.bin, "serve", "--data-dir", data, "--config", cfg,
             "--http-listen", f"127.0.0.1:{port}", "--dicom-listen", f"127.0.0.1:{free_port()}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            s = requests.Session()
            series = s.get(f"{base}/dicom-web/series").json()[0]
            study = series["0020000D"]["Value"][0]
            uid = series["0020000E"]["Value"][0]
            url = f"{base}/api/v1/render/studies/{study}/series/{uid}"
            # read every blob once so the build below measures a page-cached series
            subprocess.run(["cat"] + [str(p) for p in data.rglob("*.dcm")],
                           stdout=subprocess.DEVNULL, check=False)
            t = time.perf_counter()
            info = s.get(f"{url}/volume")
            build_ms = (time.perf_counter() - t) * 1e3
            info.raise_for_status()
            print(f"series: {info.json()['dims']} i16, {args.slices} instances")
            print(f"{'case':<44} {'median ms':>10} {'min ms':>8}")
            print(f"{'volume build (first GET …/volume)':<44} {build_ms:>10.1f} {build_ms:>8.1f}")
            for name, path, params, runs in [
                ("cached GET …/volume", "volume", {}, 20),
                ("oblique MPR 512×512 PNG", "mpr",
                 {"plane": "oblique", "normal": "0.3,0.5,0.81", "size": "512"}, 20),
                ("20 mm MIP slab 512×512 PNG", "slab",
                 {"plane": "coronal", "thickness": 20, "size": "512"}, 20),
                ("bone rendering 512×512 PNG", "vr", {"preset": "bone", "size": "512"}, 10),
                ("MIP rendering 512×512 PNG", "vr", {"preset": "mip", "size": "512"}, 10),
            ]:
                def call():
                    r = s.get(f"{url}/{path}", params=params)
                    r.raise_for_status()
                med, lo = timed(call, runs)
                print(f"{name:<44} {med:>10.1f} {lo:>8.1f}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
