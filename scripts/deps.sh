#!/usr/bin/env bash
# Install what the tests need on a fresh Debian machine (idempotent, quiet when present):
# dcmtk (independent DIMSE clients), PostgreSQL (second index backend), cmake and a C++
# compiler (CharLS, the JPEG-LS codec of radris-dicom, is built from source), Python clients
# and pydicom's pixel plugins (reference decoder for the pixel corpus test); Chromium, Node.js
# and the web app's npm packages (its unit and browser tests); dicom3tools (dciodvfy, the
# structured report validator) and poppler-utils (pdftotext, for the PDF reports).
set -euo pipefail
need_apt=()
command -v /usr/bin/storescu >/dev/null || need_apt+=(dcmtk)
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v curl >/dev/null || need_apt+=(curl)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v c++ >/dev/null || need_apt+=(g++)
command -v openssl >/dev/null || need_apt+=(openssl)   # test certificates (TLS tests)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)       # the web app's browser tests (no browser download)
command -v node >/dev/null || need_apt+=(nodejs npm)  # building and unit-testing the web app
command -v dciodvfy >/dev/null || need_apt+=(dicom3tools)  # validating the structured reports we write
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)  # reading back the PDF reports
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import pydicom, pynetdicom, pytest, numpy, requests, dicomweb_client' 2>/dev/null; then
  echo "deps: pip install pydicom pynetdicom pytest numpy requests dicomweb-client"
  python3 -m pip install -q --disable-pip-version-check pydicom pynetdicom pytest numpy requests dicomweb-client
fi
if ! python3 -c 'import PIL, SimpleITK' 2>/dev/null; then
  echo "deps: pip install pillow SimpleITK (reading rendered pictures; the imaging engine's reference resampler)"
  python3 -m pip install -q --disable-pip-version-check pillow SimpleITK
fi
if ! python3 -c 'import cryptography, joserfc' 2>/dev/null; then
  echo "deps: pip install cryptography joserfc (test identity provider, WebAuthn authenticator)"
  python3 -m pip install -q --disable-pip-version-check cryptography joserfc
fi
if ! python3 -c 'import pylibjpeg, libjpeg, openjpeg, rle, jpeg_ls' 2>/dev/null; then
  echo "deps: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls"
  python3 -m pip install -q --disable-pip-version-check pylibjpeg pylibjpeg-libjpeg \
    pylibjpeg-openjpeg pylibjpeg-rle pyjpegls \
    || echo "deps: pydicom pixel plugins unavailable; the pixel corpus test compares native files only"
fi
# the web app's packages, exactly as locked (npm registry only; nothing else is downloaded)
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  echo "deps: npm ci (web/)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  echo "deps: cargo-nextest not found; falling back to cargo test"
fi
