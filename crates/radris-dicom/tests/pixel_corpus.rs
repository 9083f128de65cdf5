//! The pixel pipeline against pydicom's bundled real-world files.
//!
//! * Every file with pixel data: `raw_frame`, `decoded_frame` and `render` on every frame must
//!   return (Ok or a typed error), never panic.
//! * Every file pydicom can decode: our decoded frames are compared byte for byte with
//!   `pydicom.pixels.pixel_array` (the default, colour-converted form when we report RGB, the
//!   `raw=True` form when we keep the stored photometric interpretation). Lossless syntaxes
//!   must match exactly; lossy ones are reported, with their largest sample difference.
//!
//! Skipped, with a note, when python3 or pydicom is missing. pydicom decodes the compressed
//! files only with its plugins installed (`pip install pylibjpeg pylibjpeg-libjpeg
//! pylibjpeg-openjpeg pylibjpeg-rle pyjpegls`); files it cannot decode are only run for
//! robustness.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use radris_dicom::pixel::{self, ImageFormat, RenderOptions};

const REFERENCE_SCRIPT: &str = r#"
import json, os, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import pydicom
from pydicom.pixels import pixel_array
out = sys.argv[1]
report = {}
for path in sys.argv[2:]:
    name = os.path.basename(path)
    entry = {}
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        report[name] = {m: {"error": f"read: {e}"[:200]} for m in ("rgb", "raw")}
        continue
    if "PixelData" not in ds:
        continue
    for mode in ("rgb", "raw"):
        try:
            arr = pixel_array(ds, raw=(mode == "raw"))
            arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<")))
            with open(os.path.join(out, f"{name}.{mode}.bin"), "wb") as f:
                f.write(arr.tobytes())
            entry[mode] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
        except Exception as e:
            entry[mode] = {"error": f"{type(e).__name__}: {e}"[:200]}
    report[name] = entry
json.dump(report, open(os.path.join(out, "report.json"), "w"))
"#;

/// Syntaxes whose decoding must be pixel-exact.
const LOSSLESS: &[&str] = &[
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
];

fn pydicom_test_files() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import pydicom,os;print(os.path.dirname(pydicom.__file__))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("data/test_files");
    dir.is_dir().then_some(dir)
}

fn open(path: &Path) -> Option<pixel::FileObject> {
    dicom_object::OpenFileOptions::new().open_file(path).ok()
}

/// Unpack 1-bit frames to one byte per pixel, as pydicom returns them.
fn unpack_bits(data: &[u8], n: usize) -> Vec<u8> {
    (0..n).map(|i| (data[i / 8] >> (i % 8)) & 1).collect()
}

/// All frames decoded, with the description after decoding, or our error.
type Decoded = Result<(Vec<u8>, pixel::PixelInfo), String>;

enum Outcome {
    Exact,
    Differs(String),
    OursFailed(String),
    PydicomFailed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exact => write!(f, "exact"),
            Outcome::Differs(d) => write!(f, "DIFFERS: {d}"),
            Outcome::OursFailed(e) => write!(f, "we fail: {e}"),
            Outcome::PydicomFailed(e) => write!(f, "pydicom fails ({e}), ours decoded"),
        }
    }
}

#[test]
fn corpus_decodes_without_panic_and_matches_pydicom() {
    let Some(dir) = pydicom_test_files() else {
        eprintln!("NOTE: python3 with pydicom not found; pixel corpus test skipped");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();

    // pydicom's side first: it also tells which files have pixel data (dicom-rs takes seconds
    // to refuse some of the malformed files without any)
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("reference.py");
    std::fs::write(&script, REFERENCE_SCRIPT).unwrap();
    let status = Command::new("python3")
        .arg(&script)
        .arg(tmp.path())
        .args(&files)
        .status()
        .unwrap();
    assert!(status.success(), "reference script failed");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("report.json")).unwrap()).unwrap();

    // our side: every frame of every file with pixel data, no panics
    let mut ours: BTreeMap<String, (String, Decoded)> = BTreeMap::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if report.get(&name).is_none() {
            continue;
        }
        let Some(obj) = open(path) else {
            eprintln!("{name:<45} dicom-rs cannot open it");
            continue;
        };
        if obj.get(dicom_dictionary_std::tags::PIXEL_DATA).is_none() {
            continue;
        }
        let ts = obj.meta().transfer_syntax().to_owned();
        let frames = pixel::pixel_info(&obj)
            .map(|i| i.number_of_frames)
            .unwrap_or(1);
        let mut all = Vec::new();
        let mut info = None;
        let mut failure = None;
        for f in 1..=frames {
            let _ = pixel::raw_frame(&obj, f);
            match pixel::decoded_frame(&obj, f) {
                Ok((d, i)) => {
                    all.extend_from_slice(&d);
                    info = Some(i);
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        for f in [1, frames] {
            let _ = pixel::render(
                &obj,
                &RenderOptions {
                    frame: f,
                    viewport: Some((64, 64)),
                    format: ImageFormat::Png,
                    ..Default::default()
                },
            );
        }
        // out-of-range frames are errors
        assert!(pixel::raw_frame(&obj, frames + 1).is_err(), "{name}");
        assert!(pixel::decoded_frame(&obj, 0).is_err(), "{name}");
        let _ = pixel::to_explicit_vr_le(&obj);
        let result = match (failure, info) {
            (Some(e), _) => Err(e),
            (None, Some(i)) => Ok((all, i)),
            (None, None) => Err("no frames".into()),
        };
        ours.insert(name, (ts, result));
    }
    assert!(
        ours.len() >= 40,
        "only {} files with pixel data",
        ours.len()
    );

    let mut outcomes: BTreeMap<String, (String, Outcome)> = BTreeMap::new();
    for (name, (ts, result)) in &ours {
        let outcome = match result {
            Err(e) => Outcome::OursFailed(e.clone()),
            Ok((data, info)) => {
                // compare with the form matching the photometric interpretation we report
                let original_pi = open(&dir.join(name))
                    .and_then(|o| pixel::pixel_info(&o).ok())
                    .map(|i| i.photometric)
                    .unwrap_or_default();
                let mode = if info.photometric != original_pi {
                    "rgb"
                } else {
                    "raw"
                };
                let entry = &report[name][mode];
                if let Some(e) = entry.get("error") {
                    Outcome::PydicomFailed(e.as_str().unwrap_or_default().to_owned())
                } else {
                    let reference =
                        std::fs::read(tmp.path().join(format!("{name}.{mode}.bin"))).unwrap();
                    let ours = if info.bits_allocated == 1 {
                        let n = info.rows as usize * info.columns as usize;
                        let frame_len = n.div_ceil(8);
                        data.chunks(frame_len)
                            .flat_map(|f| unpack_bits(f, n))
                            .collect()
                    } else if info.photometric == "YBR_FULL_422" && info.bits_allocated == 8 {
                        // we hand out native 4:2:2 as stored; pydicom upsamples to YBR_FULL
                        data.chunks_exact(4)
                            .flat_map(|q| [q[0], q[2], q[3], q[1], q[2], q[3]])
                            .collect()
                    } else {
                        data.clone()
                    };
                    compare(&ours, &reference, info)
                }
            }
        };
        outcomes.insert(name.clone(), (ts.clone(), outcome));
    }

    let mut failures = Vec::new();
    eprintln!("\n{:<45} {:<24} result", "file", "transfer syntax");
    for (name, (ts, outcome)) in &outcomes {
        eprintln!("{name:<45} {ts:<24} {outcome}");
        if let Outcome::Differs(_) = outcome
            && LOSSLESS.contains(&ts.as_str())
            && !KNOWN_DIFFERENCES.contains(&name.as_str())
        {
            failures.push(name.clone());
        }
    }
    assert!(
        failures.is_empty(),
        "lossless files differing from pydicom: {failures:?}"
    );
}

/// Lossless files whose difference from pydicom is understood (see the report in the test
/// output and the module docs).
const KNOWN_DIFFERENCES: &[&str] = &[];

fn compare(ours: &[u8], reference: &[u8], info: &pixel::PixelInfo) -> Outcome {
    if ours == reference {
        return Outcome::Exact;
    }
    if ours.len() != reference.len() {
        return Outcome::Differs(format!(
            "length {} vs pydicom {}",
            ours.len(),
            reference.len()
        ));
    }
    let width = (info.bits_allocated as usize).div_ceil(8).max(1);
    let value = |c: &[u8]| -> i64 {
        let mut v = 0u64;
        for (i, b) in c.iter().enumerate() {
            v |= (*b as u64) << (8 * i);
        }
        if info.pixel_representation == 1 {
            let bits = 8 * c.len() as u32;
            ((v << (64 - bits)) as i64) >> (64 - bits)
        } else {
            v as i64
        }
    };
    let mut max = 0i64;
    let mut differing = 0usize;
    for (a, b) in ours.chunks(width).zip(reference.chunks(width)) {
        let d = (value(a) - value(b)).abs();
        if d > 0 {
            differing += 1;
            max = max.max(d);
        }
    }
    Outcome::Differs(format!(
        "{differing} of {} samples differ, max |diff| {max}",
        ours.len() / width
    ))
}

const ENCODE_SCRIPT: &str = r#"
import copy, os, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import pydicom
from pydicom.uid import (RLELossless, JPEGLSLossless, JPEG2000Lossless,
                         ExplicitVRLittleEndian)
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.pixels import get_encoder
out = sys.argv[1]
dss = [pydicom.dcmread(p) for p in sys.argv[2:]]
base = dss[0]
stack = np.stack([d.pixel_array for d in dss])
made = []

def save(ds, uid, name):
    ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(os.path.join(out, name), enforce_file_format=True)
    made.append(name)

def variants(arr, bits_stored, signed, name):
    ds = copy.deepcopy(base)
    ds.NumberOfFrames = arr.shape[0]
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = arr.astype("<i2" if signed else "<u2").tobytes()
    save(ds, ExplicitVRLittleEndian, f"{name}_native.dcm")
    for uid, tag in ((RLELossless, "rle"), (JPEGLSLossless, "jls"), (JPEG2000Lossless, "j2k")):
        try:
            c = copy.deepcopy(ds)
            c.compress(uid, generate_instance_uid=False)
            save(c, uid, f"{name}_{tag}.dcm")
        except Exception as e:
            print(f"NOTE: pydicom cannot encode {tag}: {e}", file=sys.stderr)
    for uid, tag in ((JPEG2000Lossless, "j2k"), (JPEGLSLossless, "jls")):
        try:
            frames = list(get_encoder(uid).iter_encode(ds))
        except Exception as e:
            print(f"NOTE: pydicom cannot encode {tag}: {e}", file=sys.stderr)
            continue
        # three fragments per frame, with and without a Basic Offset Table
        for bot in (True, False):
            c = copy.deepcopy(ds)
            c.PixelData = encapsulate(frames, fragments_per_frame=3, has_bot=bot)
            c["PixelData"].VR = "OB"
            save(c, uid, f"{name}_{tag}_frag3_{'bot' if bot else 'nobot'}.dcm")
        # one fragment per frame with an Extended Offset Table
        c = copy.deepcopy(ds)
        data, eot, lengths = encapsulate_extended(frames)
        c.PixelData = data
        c["PixelData"].VR = "OB"
        c.ExtendedOffsetTable = eot
        c["ExtendedOffsetTable"].VR = "OV"
        c.ExtendedOffsetTableLengths = lengths
        c["ExtendedOffsetTableLengths"].VR = "OV"
        save(c, uid, f"{name}_{tag}_eot.dcm")

def rgb_variants():
    import jpeg_ls
    r = np.clip(stack.astype(np.int32) // 8 + 128, 0, 255)
    rgb = np.ascontiguousarray(np.stack([r, 255 - r, (r * 3) % 256], axis=-1).astype(np.uint8))
    ds = copy.deepcopy(base)
    ds.NumberOfFrames = rgb.shape[0]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rgb.tobytes()
    save(ds, ExplicitVRLittleEndian, "rgb8_native.dcm")
    # JPEG-LS with the components in separate scans (0), by line (1), by sample (2)
    for ilv in (0, 1, 2):
        c = copy.deepcopy(ds)
        # pyjpegls takes planar input (samples, rows, columns) for separate scans
        src = [np.ascontiguousarray(f.transpose(2, 0, 1)) if ilv == 0 else f for f in rgb]
        c.PixelData = encapsulate([bytes(jpeg_ls.encode(f, interleave_mode=ilv)) for f in src])
        c["PixelData"].VR = "OB"
        save(c, JPEGLSLossless, f"rgb8_jls_ilv{ilv}.dcm")
    for uid, tag in ((RLELossless, "rle"), (JPEG2000Lossless, "j2k")):
        c = copy.deepcopy(ds)
        c.compress(uid, generate_instance_uid=False)
        save(c, uid, f"rgb8_{tag}.dcm")

try:
    rgb_variants()
except Exception as e:
    print(f"NOTE: RGB variants not made: {e}", file=sys.stderr)
variants(stack.astype(np.int16), 16, True, "ct16s")
variants(np.clip(stack.astype(np.int32) + 1024, 0, 4095).astype(np.uint16), 12, False, "mr12u")
variants(np.clip(stack.astype(np.int32), -2048, 2047).astype(np.int16), 12, True, "ct12s")
print("\n".join(made))
"#;

/// Lossless encodings made by pydicom's encoders (RLE, JPEG-LS, JPEG 2000; signed 16-bit,
/// unsigned 12-bit and signed 12-bit; three frames; one fragment per frame, three fragments
/// per frame with and without a Basic Offset Table, Extended Offset Table) must decode to
/// exactly the native frames they were made from.
#[test]
fn lossless_encodings_made_by_pydicom_decode_exactly() {
    let Some(_) = pydicom_test_files() else {
        eprintln!("NOTE: python3 with pydicom not found; encoding round trip skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    radris_dicom::synth::ct_study(3, 64, 48, "pixel-corpus")
        .generate(|g| {
            let path = tmp.path().join(format!("slice{}.dcm", inputs.len()));
            std::fs::write(&path, &g.part10).unwrap();
            inputs.push(path);
            Ok::<(), radris_dicom::DicomError>(())
        })
        .unwrap();
    let script = tmp.path().join("encode.py");
    std::fs::write(&script, ENCODE_SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(tmp.path())
        .args(&inputs)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "encoding script failed");
    let made: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let mut checked = 0;
    let mut failures = Vec::new();
    for name in made.iter().filter(|n| !n.ends_with("_native.dcm")) {
        let prefix = &name[..name.find('_').unwrap()];
        let native = open(&tmp.path().join(format!("{prefix}_native.dcm"))).unwrap();
        let obj = open(&tmp.path().join(name)).unwrap();
        let info = pixel::pixel_info(&obj).unwrap();
        assert_eq!(info.number_of_frames, 3, "{name}");
        for f in 1..=3 {
            let (expected, native_info) = pixel::decoded_frame(&native, f).unwrap();
            match pixel::decoded_frame(&obj, f) {
                Ok((got, got_info)) => {
                    assert_eq!(got_info.photometric, native_info.photometric, "{name}");
                    assert_eq!(
                        got_info.bits_allocated, native_info.bits_allocated,
                        "{name}"
                    );
                    if got != expected {
                        failures.push(format!(
                            "{name} frame {f}: {}",
                            compare(&got, &expected, &got_info)
                        ));
                    }
                }
                Err(e) => failures.push(format!("{name} frame {f}: {e}")),
            }
            // the stored frame is a codestream of its own
            let (raw, media) = pixel::raw_frame(&obj, f).unwrap();
            assert!(!raw.is_empty() && media != "application/octet-stream" || name.contains("rle"));
        }
        // the transcoded object holds the native frames
        let part10 = pixel::to_explicit_vr_le(&obj).unwrap();
        let back = dicom_object::OpenFileOptions::new()
            .from_reader(&part10[128..])
            .unwrap();
        assert_eq!(back.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
        for f in 1..=3 {
            assert_eq!(
                pixel::decoded_frame(&back, f).unwrap().0,
                pixel::decoded_frame(&native, f).unwrap().0,
                "{name} transcoded frame {f}"
            );
        }
        // truncated codestreams fail fast (CharLS once took seconds on these)
        let (frame, _) = pixel::raw_frame(&obj, 1).unwrap();
        for cut in [frame.len() / 7, frame.len() / 2, frame.len() - 3] {
            let mut broken = obj.clone();
            broken.put(dicom_core::DataElement::new(
                dicom_dictionary_std::tags::PIXEL_DATA,
                dicom_core::VR::OB,
                dicom_core::value::Value::PixelSequence(
                    dicom_core::value::PixelFragmentSequence::new(
                        vec![],
                        vec![frame[..cut].to_vec(); 3],
                    ),
                ),
            ));
            let t = std::time::Instant::now();
            let _ = pixel::decoded_frame(&broken, 1);
            assert!(
                t.elapsed().as_secs_f64() < 1.0,
                "{name} cut at {cut}: {:?}",
                t.elapsed()
            );
        }
        eprintln!("{name:<32} exact, 3 frames");
        checked += 1;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        checked >= 3,
        "pydicom produced only {checked} encoded files"
    );
}
