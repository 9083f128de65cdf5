//! The printable report PDF, checked end to end with poppler: `pdftotext` reads the text
//! back and `pdftoppm` rasterizes the pages. Without poppler-utils installed those checks
//! are skipped with a message (the error cases still run).

use std::path::{Path, PathBuf};
use std::process::Command;

use radris_report::pdf::{PdfError, PdfReport, render};

const INSTITUTION: &str = "St. Example University Hospital – Department of Radiology";
const FOOTER: &str = "Confidential medical document. RADRIS report service.";
const SIGNATURE: &str = "Electronically signed by Dr. Jane Roe, MD on 2026-03-14 10:22 UTC; \
                         SHA-256 9f2c1e0d4b7a";

fn poppler() -> bool {
    let ok = ["pdftotext", "pdftoppm"]
        .iter()
        .all(|tool| Command::new(tool).arg("-v").output().is_ok());
    if !ok {
        eprintln!(
            "skipping the poppler checks: pdftotext/pdftoppm not found (apt-get install poppler-utils)"
        );
    }
    ok
}

/// A 240x96 RGBA logo: a dark blue block with a white bar, inside a transparent border.
fn logo_png() -> Vec<u8> {
    let (w, h) = (240u32, 96u32);
    let mut data = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let border = x < 4 || y < 4 || x >= w - 4 || y >= h - 4;
            let bar = (44..52).contains(&y) && (20..220).contains(&x);
            let px = match (border, bar) {
                (true, _) => [0, 0, 0, 0],
                (false, true) => [255, 255, 255, 255],
                (false, false) => [20, 40, 90, 255],
            };
            data.extend_from_slice(&px);
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("png header");
        writer.write_image_data(&data).expect("png data");
    }
    out
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn short_report() -> PdfReport {
    PdfReport {
        institution: INSTITUTION.to_owned(),
        logo_png: Some(logo_png()),
        title: "CT Chest without contrast".to_owned(),
        patient_lines: pairs(&[
            ("Name", "Müller, Jürgen"),
            ("Patient ID", "PID-000123"),
            ("Birth date", "1956-07-01"),
            ("Sex", "M"),
        ]),
        exam_lines: pairs(&[
            ("Accession", "ACC-2026-0042"),
            ("Procedure", "CT Chest w/o contrast"),
            ("Exam date", "2026-03-14"),
            ("Referring", "Dr. Max Mustermann"),
        ]),
        sections: pairs(&[
            (
                "Clinical information",
                "Persistent cough for 6 weeks. Former smoker, 30 pack-years.",
            ),
            ("Comparison", "CT chest of 2025-03-10."),
            (
                "Findings",
                "Solid nodule in the right upper lobe measuring 7 mm, previously 6 mm.\n\
                 No mediastinal or hilar lymphadenopathy. No pleural effusion.\n\n\
                 Nodule margin: \u{2265} 6 mm threshold reached; CJK name 山田 is not in WinAnsi.",
            ),
            (
                "Impression",
                "1. Slowly growing right upper lobe nodule, Lung-RADS 4A.\n2. No other acute findings.",
            ),
        ]),
        measurements: pairs(&[
            ("RUL nodule diameter", "7 mm"),
            ("RUL nodule volume", "180 mm³"),
        ]),
        status: "PRELIMINARY".to_owned(),
        signature: Some(SIGNATURE.to_owned()),
        footer: FOOTER.to_owned(),
    }
}

const LONG_HEADINGS: usize = 16;

fn long_report() -> PdfReport {
    let sentence = "The examined structures show an unremarkable appearance without focal lesion, \
                    with preserved architecture and normal enhancement in all phases.";
    let sections = (1..=LONG_HEADINGS)
        .map(|i| {
            // Vary the lengths so that headings land at many positions on the pages.
            let paragraphs = (0..(i % 5 + 1))
                .map(|p| {
                    let words = std::iter::repeat_n(sentence, (i * 7 + p * 3) % 6 + 1)
                        .collect::<Vec<_>>()
                        .join(" ");
                    format!("Paragraph {p} of section {i}. {words}")
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            (format!("Section heading number {i}"), paragraphs)
        })
        .collect();
    let measurements = (1..=60)
        .map(|i| {
            (
                format!("Lesion {i} long axis"),
                format!("{}.{} mm", 5 + i % 17, i % 10),
            )
        })
        .collect();
    PdfReport {
        title: "MRI Whole body staging".to_owned(),
        sections,
        measurements,
        status: "FINAL".to_owned(),
        ..short_report()
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run poppler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    // poppler reports malformed PDF structures on stderr.
    assert!(stderr.trim().is_empty(), "{cmd:?} complained: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pdftotext(pdf: &Path, page: Option<usize>) -> String {
    let mut cmd = Command::new("pdftotext");
    if let Some(page) = page {
        cmd.args(["-f", &page.to_string(), "-l", &page.to_string()]);
    }
    run(cmd.arg(pdf).arg("-"))
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Raster {
    width: usize,
    height: usize,
    /// Luma, 8 bits, row-major.
    luma: Vec<u8>,
}

impl Raster {
    /// Fraction of dark pixels in a rectangle given in millimetres from the top-left corner.
    fn dark_fraction(&self, x_mm: (f32, f32), y_mm: (f32, f32)) -> f32 {
        let px = |mm: f32, total: usize, page_mm: f32| {
            ((mm / page_mm * total as f32) as usize).min(total)
        };
        let (x0, x1) = (px(x_mm.0, self.width, 210.0), px(x_mm.1, self.width, 210.0));
        let (y0, y1) = (
            px(y_mm.0, self.height, 297.0),
            px(y_mm.1, self.height, 297.0),
        );
        let mut dark = 0usize;
        for y in y0..y1 {
            for x in x0..x1 {
                if self.luma[y * self.width + x] < 128 {
                    dark += 1;
                }
            }
        }
        dark as f32 / ((x1 - x0) * (y1 - y0)).max(1) as f32
    }
}

fn decode_raster(path: &Path) -> Raster {
    let file = std::fs::File::open(path).expect("open page png");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("page png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("page png data");
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected page color type {other:?}"),
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let mut luma = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &buf[y * info.line_size..y * info.line_size + width * channels];
        for px in row.chunks_exact(channels) {
            let l = if channels >= 3 {
                (u32::from(px[0]) * 299 + u32::from(px[1]) * 587 + u32::from(px[2]) * 114) / 1000
            } else {
                u32::from(px[0])
            };
            luma.push(l as u8);
        }
    }
    Raster {
        width,
        height,
        luma,
    }
}

/// Rasterizes at 50 dpi; the pages in order.
fn pdftoppm(pdf: &Path, dir: &Path, prefix: &str) -> Vec<Raster> {
    let out_prefix = dir.join(prefix);
    run(Command::new("pdftoppm")
        .args(["-png", "-r", "50"])
        .arg(pdf)
        .arg(&out_prefix));
    let mut pages: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            let number = name
                .strip_prefix(&format!("{prefix}-"))?
                .strip_suffix(".png")?
                .parse()
                .ok()?;
            Some((number, path))
        })
        .collect();
    pages.sort();
    assert!(
        pages.iter().enumerate().all(|(i, (n, _))| *n == i + 1),
        "page files {pages:?}"
    );
    pages.iter().map(|(_, path)| decode_raster(path)).collect()
}

fn check_pages(pages: &[Raster]) {
    for (i, page) in pages.iter().enumerate() {
        let ratio = page.height as f32 / page.width as f32;
        assert!(
            (ratio - 2f32.sqrt()).abs() < 0.01,
            "page {} is {}x{}",
            i + 1,
            page.width,
            page.height
        );
        assert!(
            page.width.abs_diff(413) <= 1,
            "page {} width {} at 50 dpi",
            i + 1,
            page.width
        );
    }
    // The logo (70 x 28 mm at the top right of page 1) is drawn, and only on page 1.
    let logo_area = ((125.0, 185.0), (23.0, 45.0));
    let on_first = pages[0].dark_fraction(logo_area.0, logo_area.1);
    assert!(on_first > 0.5, "logo area of page 1 is {on_first:.2} dark");
    if let Some(second) = pages.get(1) {
        // Page 2 has body text there, far less dense than the logo block.
        let on_second = second.dark_fraction(logo_area.0, logo_area.1);
        assert!(
            on_second < on_first / 3.0,
            "logo area of page 2 is {on_second:.2} dark"
        );
    }
}

fn write(dir: &Path, name: &str, report: &PdfReport) -> PathBuf {
    let bytes = render(report).expect("render");
    assert!(bytes.starts_with(b"%PDF-1.7"));
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write pdf");
    path
}

#[test]
fn short_report_reads_back() {
    let report = short_report();
    let bytes = render(&report).expect("render");
    assert_eq!(
        bytes,
        render(&report).expect("render again"),
        "output is deterministic"
    );
    if !poppler() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = write(dir.path(), "short.pdf", &report);

    let pages = pdftoppm(&pdf, dir.path(), "short");
    assert_eq!(pages.len(), 1);
    check_pages(&pages);

    let text = normalize(&pdftotext(&pdf, None));
    for expected in [
        INSTITUTION,
        "CT Chest without contrast",
        "Müller, Jürgen",
        "PID-000123",
        "Patient",
        "Examination",
        "ACC-2026-0042",
        "Dr. Max Mustermann",
        "Clinical information",
        "Persistent cough for 6 weeks.",
        "Findings",
        "Solid nodule in the right upper lobe measuring 7 mm, previously 6 mm.",
        "Nodule margin: >= 6 mm threshold reached; CJK name ?? is not in WinAnsi.",
        "Impression",
        "1. Slowly growing right upper lobe nodule, Lung-RADS 4A.",
        "Measurements",
        "RUL nodule diameter",
        "180 mm³",
        "Report status: PRELIMINARY",
        SIGNATURE,
        FOOTER,
        "Page 1 of 1",
    ] {
        assert!(
            text.contains(&normalize(expected)),
            "missing {expected:?} in:\n{text}"
        );
    }
    // The status stamp sits in the header, before the title.
    let stamp = text.find("PRELIMINARY").expect("stamp");
    assert!(stamp < text.find("CT Chest").expect("title"), "{text}");
}

#[test]
fn long_report_spans_pages() {
    let report = long_report();
    if !poppler() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = write(dir.path(), "long.pdf", &report);

    let pages = pdftoppm(&pdf, dir.path(), "long");
    let n = pages.len();
    assert!(n >= 4, "only {n} pages");
    check_pages(&pages);

    let all = normalize(&pdftotext(&pdf, None));
    for expected in [
        INSTITUTION,
        "Müller, Jürgen",
        "Lesion 60 long axis",
        SIGNATURE,
        "Report status: FINAL",
    ] {
        assert!(all.contains(&normalize(expected)), "missing {expected:?}");
    }
    assert!(!all.contains("PRELIMINARY"), "a final report has no stamp");

    let headings: Vec<String> = (1..=LONG_HEADINGS)
        .map(|i| format!("Section heading number {i}"))
        .collect();
    let mut table_headers = 0;
    for page in 1..=n {
        let text = pdftotext(&pdf, Some(page));
        let flat = normalize(&text);
        assert!(
            flat.contains(&format!("Page {page} of {n}")),
            "page {page}: {flat}"
        );
        assert!(flat.contains(FOOTER), "page {page} footer");
        assert!(flat.contains(INSTITUTION), "page {page} header");
        if page > 1 {
            assert!(
                flat.contains("Name: Müller, Jürgen"),
                "page {page} running header"
            );
        }
        // No heading is the last body line of a page.
        let body: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains(FOOTER) && !l.starts_with("Page "))
            .collect();
        let last = body.last().copied().unwrap_or_default();
        assert!(
            !headings.iter().any(|h| h == last),
            "page {page} ends with the heading {last:?}"
        );
        assert_ne!(
            last, "Measurements",
            "page {page} ends with the table heading"
        );
        if text.lines().any(|l| l.trim() == "Measurement") {
            table_headers += 1;
        }
    }
    assert!(
        table_headers >= 2,
        "the measurement table header is repeated after a page break"
    );
    for (i, heading) in headings.iter().enumerate() {
        assert!(all.contains(heading.as_str()), "missing {heading}");
        assert!(all.contains(&format!("Paragraph 0 of section {}.", i + 1)));
    }
}

#[test]
fn bad_logo_is_an_error() {
    let mut report = short_report();
    report.logo_png = Some(b"\x89PNG\r\n\x1a\nnot really".to_vec());
    assert!(matches!(render(&report), Err(PdfError::InvalidLogo(_))));

    let good = logo_png();
    report.logo_png = Some(good[..good.len() / 2].to_vec());
    let err = render(&report).expect_err("truncated logo");
    assert!(err.to_string().contains("logo"), "{err}");

    report.logo_png = Some(Vec::new());
    assert!(render(&report).is_err());

    report.logo_png = None;
    assert!(render(&report).is_ok());
}

#[test]
fn empty_report_renders() {
    let report = PdfReport::default();
    let bytes = render(&report).expect("render");
    if !poppler() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = dir.path().join("empty.pdf");
    std::fs::write(&pdf, bytes).expect("write");
    let text = normalize(&pdftotext(&pdf, None));
    assert!(
        text.contains("Page 1 of 1") && text.contains("Not signed."),
        "{text}"
    );
}
