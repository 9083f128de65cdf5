#!/usr/bin/env bash
# Benchmark RADRIS with the shared PACS harness (../shared/bench/measure_pacs.sh), then the
# Orthanc peer (profile tuned) in the same session, and print both side by side.
#   bench/radris_vs_orthanc.sh [--skip-peer]
# Knobs: HARNESS (../shared/bench), BENCH_DIR (/tmp/pacs-bench), and every measure_pacs.sh knob.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-$(cd .. && pwd)/shared/bench}
export BENCH_DIR=${BENCH_DIR:-/tmp/pacs-bench}
mkdir -p "$BENCH_DIR"
# Both servers get their input in the page cache: this machine reclaims cold pages within
# minutes (DAMON), and otherwise each storescu read its files from disk while RADRIS stored
# them and from the cache while Orthanc, minutes later, stored the same files (1-association
# input found half cached: RADRIS 231-281 inst/s at 1.8-2.2 ms CPU per instance, against
# 492 at 1.37 with it cached).
warm_inputs() {
  if [ -d "$BENCH_DIR/data" ]; then
    find "$BENCH_DIR/data" -name '*.dcm' -print0 | xargs -0 -r cat > /dev/null
  fi
}
cargo build --release --bin radris
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/radris
WORK=$(mktemp -d "$BENCH_DIR/radris.XXXXXX")
cat > "$WORK/radris.toml" <<TOML
open_ae = true
[http]
anonymous = true   # the harness's curl and STOW clients send no credentials
[[remote_aes]]
ae_title = "BENCHSCU"
host = "127.0.0.1"
port = 11113
TOML
"$BIN" serve --config "$WORK/radris.toml" --data-dir "$WORK/data" --dicom-listen 127.0.0.1:11112 \
  --http-listen 127.0.0.1:18080 --ae-title RADRIS > "$WORK/server.log" 2>&1 &
PID=$!
# (each step may fail: under set -e a failing command ends the trap, and the 3 GB stayed behind)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -fs http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.1; done
if ! kill -0 "$PID" 2>/dev/null || ! curl -fs http://127.0.0.1:18080/readyz >/dev/null; then
  echo "radris did not start (port 11112 or 18080 taken?):" >&2; cat "$WORK/server.log" >&2; exit 1
fi
warm_inputs
SERVER_PID=$PID STORAGE_DIR=$WORK/data LABEL=radris MOVE_PORT=11113 \
  RESULTS=$BENCH_DIR/results-radris.tsv SKIP="${SKIP:-}" \
  bash "$HARNESS/measure_pacs.sh" 127.0.0.1 11112 RADRIS http://127.0.0.1:18080/dicom-web
kill $PID; wait $PID 2>/dev/null || true
if [ "${1:-}" != "--skip-peer" ]; then
  warm_inputs
  ORTHANC_PROFILE=tuned RESULTS=$BENCH_DIR/results-orthanc-tuned.tsv LABEL=orthanc-tuned \
    bash "$HARNESS/peer_orthanc.sh"
fi
python3 "$HARNESS/summarize.py" "$BENCH_DIR"/results-radris.tsv "$BENCH_DIR"/results-orthanc-tuned.tsv 2>/dev/null || true
