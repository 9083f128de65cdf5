//! The printable PDF of a radiology report.
//!
//! [`render`] lays a [`PdfReport`] out on A4 pages (20 mm margins, black text) and writes a
//! self-contained PDF 1.7 file with [`pdf_writer`]:
//!
//! * a header with the institution name and, on the first page, the logo (a PNG, embedded
//!   as a Flate-compressed image XObject with an alpha soft mask when it has transparency,
//!   at most 40 mm high and 70 mm wide, aspect ratio kept); the following pages repeat the
//!   institution, the title and the patient in a slim running header;
//! * a stamp with the report status (e.g. `PRELIMINARY`, `AMENDED`) in the header of every
//!   page unless the report is `FINAL`;
//! * the title, the patient and examination blocks in two columns, the sections (bold
//!   headings, word-wrapped paragraphs, hanging indents for list items), the measurements
//!   table (its header row repeated after a page break) and the signature block;
//! * "Page n of m" and the footer text at the bottom of every page.
//!
//! Page breaks are automatic: a heading is kept with the first lines of its section, a
//! table heading with its first rows and the signature block stays in one piece when it fits
//! on a page.
//!
//! # Fonts and characters
//!
//! The text is set in the PDF standard fonts Helvetica and Helvetica-Bold, which every PDF
//! reader provides, so no font file is embedded or needed at run time. The text is
//! measured with the fonts' advance widths (tables below, from the published font metrics),
//! and encoded in `WinAnsiEncoding` (Windows code page 1252): ASCII, Latin-1 (accented
//! Western European letters, `°`, `±`, `µ`, `²`, `×`, …) and the typographic characters of
//! 0x80–0x9F (`€`, `–`, `—`, curly quotes, `…`, `•`, `™`, …). See [`win_ansi_encode`] for
//! the few characters that are transliterated (`≤` → `<=`, `≥` → `>=`, `−` → `-`, …);
//! **every other character — Greek, Cyrillic, CJK, emoji, combining accents of
//! decomposed text — is printed as `?`**. Tabs and line breaks outside of section text,
//! signature and footer become spaces.
//!
//! The output is deterministic (no creation date, no random file identifier), so the same
//! report gives the same bytes.
//!
//! The fixed captions ("Patient", "Examination", "Measurements", "Report status", "Page n
//! of m", …) are in English.

use std::io::Cursor;

use pdf_writer::types::FontFlags;
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// The content of a printable report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdfReport {
    /// The institution name, at the top of every page.
    pub institution: String,
    /// The institution logo as PNG file bytes, shown on the first page.
    pub logo_png: Option<Vec<u8>>,
    /// The report title, e.g. "CT Chest without contrast".
    pub title: String,
    /// Patient identification as (label, value): name, ID, birth date, sex. The first two
    /// are repeated in the header of the following pages.
    pub patient_lines: Vec<(String, String)>,
    /// Examination data as (label, value): accession, procedure, exam date, referring
    /// physician.
    pub exam_lines: Vec<(String, String)>,
    /// The report sections as (heading, text); the text may contain line breaks, an empty
    /// line separates paragraphs.
    pub sections: Vec<(String, String)>,
    /// Measurements as (name, value with unit).
    pub measurements: Vec<(String, String)>,
    /// The report status: "PRELIMINARY", "FINAL", "AMENDED", … Every status other than
    /// "FINAL" (case-insensitive) is stamped in the header of each page.
    pub status: String,
    /// The signature statement, e.g. "Electronically signed by … on …; SHA-256 …";
    /// `None` prints "Not signed.".
    pub signature: Option<String>,
    /// The footer text of every page (may contain line breaks; at most 4 lines are shown).
    pub footer: String,
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdfError {
    /// The logo bytes are not a decodable PNG image.
    #[error("the logo is not a valid PNG image: {0}")]
    InvalidLogo(#[source] png::DecodingError),
    /// The logo is empty or has more pixels than accepted.
    #[error(
        "the logo PNG is {width}x{height} pixels; it must be non-empty and at most 16 megapixels"
    )]
    LogoDimensions {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The logo decoded to a pixel layout this renderer does not handle.
    #[error("the logo PNG has an unsupported pixel format ({0})")]
    LogoFormat(String),
}

/// Renders the report as a PDF file (A4 pages).
///
/// Errors only for a logo that cannot be decoded; any text is accepted (see the module
/// documentation for the characters that print as `?`).
pub fn render(r: &PdfReport) -> Result<Vec<u8>, PdfError> {
    let logo = r.logo_png.as_deref().map(decode_logo).transpose()?;
    let stamp = stamp_text(&r.status);
    let (first_header, first_top) = first_page_header(r, logo.as_ref(), stamp.as_deref());
    let (running_header, other_top) = running_header(r, stamp.as_deref());
    let footer = Footer::new(&r.footer);

    let mut flow = Flow::new(first_top, other_top, footer.body_bottom());
    layout_title(&mut flow, &r.title);
    layout_identification(&mut flow, &r.patient_lines, &r.exam_lines);
    for (heading, text) in &r.sections {
        layout_section(&mut flow, heading, text);
    }
    layout_measurements(&mut flow, &r.measurements);
    layout_signature(&mut flow, &r.status, r.signature.as_deref());

    let total = flow.pages.len();
    let pages: Vec<Vec<Op>> = flow
        .pages
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut ops = if i == 0 {
                first_header.clone()
            } else {
                running_header.clone()
            };
            ops.extend(body);
            ops.extend(footer.ops(i + 1, total));
            ops
        })
        .collect();
    Ok(write_pdf(&r.title, &pages, logo.as_ref()))
}

// ---------------------------------------------------------------------------------------
// Characters and font metrics
// ---------------------------------------------------------------------------------------

/// Encodes text in the PDF `WinAnsiEncoding` used with the standard fonts.
///
/// ASCII, Latin-1 and the Windows-1252 characters of 0x80–0x9F map to their byte; tabs,
/// line breaks and the Unicode space characters become a space, soft hyphens and
/// zero-width characters are dropped; a few common symbols are transliterated (`≤` → `<=`,
/// `≥` → `>=`, `≠` → `!=`, `→` → `->`, `←` → `<-`, `−` and the Unicode hyphens → `-`,
/// Greek `μ` → micro sign `µ`); every other character becomes `?`.
pub fn win_ansi_encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(b' '),
            '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => out.push(b' '),
            '\u{00AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => {}
            '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2212}' => out.push(b'-'),
            '\u{03BC}' => out.push(0xB5),
            '\u{2264}' => out.extend_from_slice(b"<="),
            '\u{2265}' => out.extend_from_slice(b">="),
            '\u{2260}' => out.extend_from_slice(b"!="),
            '\u{2192}' => out.extend_from_slice(b"->"),
            '\u{2190}' => out.extend_from_slice(b"<-"),
            _ => out.push(win_ansi_byte(c).unwrap_or(b'?')),
        }
    }
    out
}

/// The `WinAnsiEncoding` byte of a printable character, if it has one.
fn win_ansi_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    match code {
        0x20..=0x7E | 0xA0..=0xFF => u8::try_from(code).ok(),
        _ => {
            let byte = match c {
                '€' => 0x80,
                '‚' => 0x82,
                'ƒ' => 0x83,
                '„' => 0x84,
                '…' => 0x85,
                '†' => 0x86,
                '‡' => 0x87,
                'ˆ' => 0x88,
                '‰' => 0x89,
                'Š' => 0x8A,
                '‹' => 0x8B,
                'Œ' => 0x8C,
                'Ž' => 0x8E,
                '\u{2018}' => 0x91,
                '\u{2019}' => 0x92,
                '\u{201C}' => 0x93,
                '\u{201D}' => 0x94,
                '•' => 0x95,
                '–' => 0x96,
                '—' => 0x97,
                '˜' => 0x98,
                '™' => 0x99,
                'š' => 0x9A,
                '›' => 0x9B,
                'œ' => 0x9C,
                'ž' => 0x9E,
                'Ÿ' => 0x9F,
                _ => return None,
            };
            Some(byte)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
        }
    }

    fn widths(self) -> &'static [u16; 224] {
        match self {
            Font::Regular => &HELVETICA_WIDTHS,
            Font::Bold => &HELVETICA_BOLD_WIDTHS,
        }
    }

    /// Advance width of one WinAnsi byte in 1/1000 em (control bytes have none).
    fn advance(self, byte: u8) -> u16 {
        byte.checked_sub(32)
            .map_or(0, |i| self.widths()[usize::from(i)])
    }

    /// Width of WinAnsi text at `size` points.
    fn width(self, text: &[u8], size: f32) -> f32 {
        let units: u32 = text.iter().map(|&b| u32::from(self.advance(b))).sum();
        units as f32 * size / 1000.0
    }
}

/// Helvetica advance widths (1/1000 em) of the WinAnsi codes 32–255, from the font's
/// published metrics. The five codes WinAnsi leaves undefined (0x81, 0x8D, 0x8F, 0x90,
/// 0x9D) and 0x7F show a bullet in readers and are never produced by [`win_ansi_encode`].
#[rustfmt::skip]
const HELVETICA_WIDTHS: [u16; 224] = [
    // 0x20  space ! " # $ % & ' ( ) * + , - . /
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    // 0x30  0–9 : ; < = > ?
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    // 0x40  @ A–O
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    // 0x50  P–Z [ \ ] ^ _
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    // 0x60  ` a–o
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    // 0x70  p–z { | } ~ (0x7F)
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, 350,
    // 0x80  € – ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ – Ž –
    556, 350, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
    // 0x90  – ‘ ’ “ ” • – — ˜ ™ š › œ – ž Ÿ
    350, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 350, 500, 667,
    // 0xA0  nbsp ¡ ¢ £ ¤ ¥ ¦ § ¨ © ª « ¬ shy ® ¯
    278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    // 0xB0  ° ± ² ³ ´ µ ¶ · ¸ ¹ º » ¼ ½ ¾ ¿
    400, 584, 333, 333, 333, 556, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    // 0xC0  À Á Â Ã Ä Å Æ Ç È É Ê Ë Ì Í Î Ï
    667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    // 0xD0  Ð Ñ Ò Ó Ô Õ Ö × Ø Ù Ú Û Ü Ý Þ ß
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    // 0xE0  à á â ã ä å æ ç è é ê ë ì í î ï
    556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,
    // 0xF0  ð ñ ò ó ô õ ö ÷ ø ù ú û ü ý þ ÿ
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
];

/// Helvetica-Bold advance widths (1/1000 em) of the WinAnsi codes 32–255.
#[rustfmt::skip]
const HELVETICA_BOLD_WIDTHS: [u16; 224] = [
    // 0x20  space ! " # $ % & ' ( ) * + , - . /
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    // 0x30  0–9 : ; < = > ?
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    // 0x40  @ A–O
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    // 0x50  P–Z [ \ ] ^ _
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    // 0x60  ` a–o
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    // 0x70  p–z { | } ~ (0x7F)
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, 350,
    // 0x80  € – ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ – Ž –
    556, 350, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
    // 0x90  – ‘ ’ “ ” • – — ˜ ™ š › œ – ž Ÿ
    350, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 350, 500, 667,
    // 0xA0  nbsp ¡ ¢ £ ¤ ¥ ¦ § ¨ © ª « ¬ shy ® ¯
    278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    // 0xB0  ° ± ² ³ ´ µ ¶ · ¸ ¹ º » ¼ ½ ¾ ¿
    400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    // 0xC0  À Á Â Ã Ä Å Æ Ç È É Ê Ë Ì Í Î Ï
    722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    // 0xD0  Ð Ñ Ò Ó Ô Õ Ö × Ø Ù Ú Û Ü Ý Þ ß
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    // 0xE0  à á â ã ä å æ ç è é ê ë ì í î ï
    556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,
    // 0xF0  ð ñ ò ó ô õ ö ÷ ø ù ú û ü ý þ ÿ
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
];

// ---------------------------------------------------------------------------------------
// Text layout
// ---------------------------------------------------------------------------------------

/// Breaks one paragraph of WinAnsi text into lines no wider than `first` (the first line)
/// and `rest` (the following lines) points. Lines break at spaces (runs of spaces count as
/// one); a word wider than a line is broken between characters. Empty text gives no lines.
fn wrap(text: &[u8], font: Font, size: f32, first: f32, rest: f32) -> Vec<Vec<u8>> {
    const SLACK: f32 = 0.001;
    let space = font.width(b" ", size);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut line_w = 0.0_f32;
    for word in text.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        let word_w = font.width(word, size);
        let limit = if lines.is_empty() { first } else { rest };
        if !line.is_empty() {
            if line_w + space + word_w <= limit + SLACK {
                line.push(b' ');
                line.extend_from_slice(word);
                line_w += space + word_w;
                continue;
            }
            lines.push(std::mem::take(&mut line));
            line_w = 0.0;
        }
        let limit = if lines.is_empty() { first } else { rest };
        if word_w <= limit + SLACK {
            line.extend_from_slice(word);
            line_w = word_w;
            continue;
        }
        // A word longer than a line: break it between characters.
        for &b in word {
            let limit = if lines.is_empty() { first } else { rest };
            let w = font.width(&[b], size);
            if !line.is_empty() && line_w + w > limit + SLACK {
                lines.push(std::mem::take(&mut line));
                line_w = 0.0;
            }
            line.push(b);
            line_w += w;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Shortens WinAnsi text with an ellipsis so that it fits `max` points.
fn truncate(text: &[u8], font: Font, size: f32, max: f32) -> Vec<u8> {
    if font.width(text, size) <= max {
        return text.to_vec();
    }
    let ellipsis = font.width(&[0x85], size);
    let mut out = Vec::new();
    let mut w = 0.0;
    for &b in text {
        let bw = font.width(&[b], size);
        if w + bw + ellipsis > max {
            break;
        }
        out.push(b);
        w += bw;
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    out.push(0x85);
    out
}

/// Wraps `text` to `width`, keeping at most `max_lines` lines (the last one shortened
/// with an ellipsis when text is cut).
fn wrap_limited(text: &[u8], style: Style, width: f32, max_lines: usize) -> Vec<Vec<u8>> {
    let mut lines = wrap(text, style.font, style.size, width, width);
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            let mut cut = last.clone();
            cut.extend_from_slice(b" \x85");
            *last = truncate(&cut, style.font, style.size, width);
        }
    }
    lines
}

/// One laid-out line of a multi-line text: its horizontal offset and its text.
#[derive(Debug, Clone, PartialEq)]
enum TextLine {
    Line { indent: f32, text: Vec<u8> },
    Gap(f32),
}

/// Lays out multi-line text (line breaks kept, empty lines as paragraph gaps, list items
/// with a hanging indent) to `width` points.
fn layout_text(text: &str, style: Style, width: f32) -> Vec<TextLine> {
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let encoded = win_ansi_encode(raw);
        let leading_spaces = encoded.iter().take_while(|&&b| b == b' ').count();
        let body = &encoded[leading_spaces..];
        if body.iter().all(|&b| b == b' ') {
            // Collapse consecutive empty lines into one paragraph gap.
            if !matches!(out.last(), None | Some(TextLine::Gap(_))) {
                out.push(TextLine::Gap(style.leading * 0.5));
            }
            continue;
        }
        let space = style.font.width(b" ", style.size);
        let indent = (leading_spaces as f32 * space).min(width / 4.0);
        let marker = list_marker_len(body);
        let hang = (style.font.width(&body[..marker], style.size)).min(width / 3.0);
        let lines = wrap(
            body,
            style.font,
            style.size,
            width - indent,
            width - indent - hang,
        );
        for (i, text) in lines.into_iter().enumerate() {
            let indent = if i == 0 { indent } else { indent + hang };
            out.push(TextLine::Line { indent, text });
        }
    }
    while matches!(out.last(), Some(TextLine::Gap(_))) {
        out.pop();
    }
    out
}

/// Length of a list marker with its following space(s) at the start of a line: "- ",
/// "* ", "• ", "1. ", "12) ", "a. "; 0 when the line is not a list item.
fn list_marker_len(line: &[u8]) -> usize {
    let marker = match line.first() {
        Some(b'-' | b'*' | 0x95) => 1,
        _ => {
            let alnum = line
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
            let ok = ((1..=3).contains(&digits) && digits == alnum) || alnum == 1;
            if ok && matches!(line.get(alnum), Some(b'.' | b')')) {
                alnum + 1
            } else {
                return 0;
            }
        }
    };
    let spaces = line[marker..].iter().take_while(|&&b| b == b' ').count();
    if spaces == 0 { 0 } else { marker + spaces }
}

// ---------------------------------------------------------------------------------------
// Page geometry, styles, drawing operations
// ---------------------------------------------------------------------------------------

const MM: f32 = 72.0 / 25.4;
const PAGE_W: f32 = 210.0 * MM;
const PAGE_H: f32 = 297.0 * MM;
const MARGIN: f32 = 20.0 * MM;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;
const LOGO_MAX_H: f32 = 40.0 * MM;
const LOGO_MAX_W: f32 = 70.0 * MM;
const MAX_LOGO_PIXELS: u64 = 1 << 24;
/// Space reserved at the right of the footer for "Page n of m".
const PAGE_LABEL_W: f32 = 90.0;
const FOOTER_MAX_LINES: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Style {
    font: Font,
    size: f32,
    leading: f32,
}

impl Style {
    const fn new(font: Font, size: f32, leading: f32) -> Self {
        Style {
            font,
            size,
            leading,
        }
    }

    /// Baseline of a line whose box starts at `top`.
    fn baseline(self, top: f32) -> f32 {
        top - (self.leading - self.size) / 2.0 - 0.79 * self.size
    }

    fn width(self, text: &[u8]) -> f32 {
        self.font.width(text, self.size)
    }
}

const BODY: Style = Style::new(Font::Regular, 10.5, 14.0);
const HEADING: Style = Style::new(Font::Bold, 12.0, 16.0);
const TITLE: Style = Style::new(Font::Bold, 16.0, 20.0);
const INSTITUTION: Style = Style::new(Font::Bold, 14.0, 17.0);
const COLUMN_HEADING: Style = Style::new(Font::Bold, 11.0, 15.0);
const LABEL: Style = Style::new(Font::Bold, 10.0, 13.0);
const VALUE: Style = Style::new(Font::Regular, 10.0, 13.0);
const SMALL: Style = Style::new(Font::Regular, 8.5, 11.0);
const SMALL_BOLD: Style = Style::new(Font::Bold, 9.0, 11.0);
const STAMP: Style = Style::new(Font::Bold, 11.0, 11.0);

/// A drawing operation, in PDF points from the bottom-left page corner.
#[derive(Debug, Clone)]
enum Op {
    Text {
        x: f32,
        y: f32,
        font: Font,
        size: f32,
        text: Vec<u8>,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        gray: f32,
    },
    Frame {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        width: f32,
    },
    Logo {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

fn text_op(x: f32, top: f32, style: Style, text: Vec<u8>) -> Op {
    Op::Text {
        x,
        y: style.baseline(top),
        font: style.font,
        size: style.size,
        text,
    }
}

fn rule(y: f32, width: f32, gray: f32) -> Op {
    Op::Line {
        x1: MARGIN,
        y1: y,
        x2: PAGE_W - MARGIN,
        y2: y,
        width,
        gray,
    }
}

/// The body flow: places content top-down and starts new pages.
struct Flow {
    pages: Vec<Vec<Op>>,
    /// Top of the free space on the current page.
    cursor: f32,
    first_top: f32,
    other_top: f32,
    bottom: f32,
}

impl Flow {
    fn new(first_top: f32, other_top: f32, bottom: f32) -> Self {
        Flow {
            pages: vec![Vec::new()],
            cursor: first_top,
            first_top,
            other_top,
            bottom,
        }
    }

    fn page_top(&self) -> f32 {
        if self.pages.len() == 1 {
            self.first_top
        } else {
            self.other_top
        }
    }

    fn at_page_top(&self) -> bool {
        self.cursor >= self.page_top() - 0.01
    }

    /// Height of the body area of a continuation page.
    fn page_capacity(&self) -> f32 {
        self.other_top - self.bottom
    }

    fn fits(&self, height: f32) -> bool {
        self.cursor - height >= self.bottom - 0.01
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.cursor = self.other_top;
    }

    /// Starts a new page unless `height` fits on this one (or this page is still empty).
    fn reserve(&mut self, height: f32) {
        if !self.fits(height) && !self.at_page_top() {
            self.new_page();
        }
    }

    /// Vertical space, dropped at the top of a page.
    fn gap(&mut self, height: f32) {
        if !self.at_page_top() {
            self.cursor -= height;
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    /// One line of text at `x`, with a page break before it when needed.
    fn line(&mut self, x: f32, style: Style, text: Vec<u8>) {
        self.reserve(style.leading);
        if !text.is_empty() {
            self.push(text_op(x, self.cursor, style, text));
        }
        self.cursor -= style.leading;
    }

    /// Text lines side by side (table cells), line by line.
    fn cells(&mut self, cells: &[(f32, Style, &[Vec<u8>])]) {
        let rows = cells.iter().map(|c| c.2.len()).max().unwrap_or(0).max(1);
        let leading = cells.iter().map(|c| c.1.leading).fold(0.0, f32::max);
        for i in 0..rows {
            self.reserve(leading);
            for (x, style, lines) in cells {
                if let Some(text) = lines.get(i).filter(|t| !t.is_empty()) {
                    self.push(text_op(*x, self.cursor, *style, text.clone()));
                }
            }
            self.cursor -= leading;
        }
    }

    fn rule(&mut self, width: f32, gray: f32) {
        self.push(rule(self.cursor, width, gray));
    }
}

// ---------------------------------------------------------------------------------------
// Header and footer
// ---------------------------------------------------------------------------------------

fn stamp_text(status: &str) -> Option<Vec<u8>> {
    let status = status.trim();
    if status.is_empty() || status.eq_ignore_ascii_case("FINAL") {
        None
    } else {
        Some(win_ansi_encode(&status.to_uppercase()))
    }
}

fn stamp_size(text: &[u8]) -> (f32, f32) {
    (STAMP.width(text) + 14.0, STAMP.size + 9.0)
}

/// The status stamp with its top-left corner at (x, top).
fn stamp_ops(x: f32, top: f32, text: &[u8]) -> Vec<Op> {
    let (w, h) = stamp_size(text);
    vec![
        Op::Frame {
            x,
            y: top - h,
            w,
            h,
            width: 1.5,
        },
        Op::Text {
            x: x + 7.0,
            y: top - h + 4.5 + 0.21 * STAMP.size,
            font: STAMP.font,
            size: STAMP.size,
            text: text.to_vec(),
        },
    ]
}

/// The first page header: institution (and stamp) at the left, logo at the right, a rule.
/// Returns the operations and the top of the body area.
fn first_page_header(r: &PdfReport, logo: Option<&Logo>, stamp: Option<&[u8]>) -> (Vec<Op>, f32) {
    let top = PAGE_H - MARGIN;
    let mut ops = Vec::new();
    let mut text_w = CONTENT_W;
    let mut logo_bottom = top;
    if let Some(logo) = logo {
        let (w, h) = logo.size_pt();
        ops.push(Op::Logo {
            x: PAGE_W - MARGIN - w,
            y: top - h,
            w,
            h,
        });
        text_w -= w + 12.0;
        logo_bottom = top - h;
    }
    let mut y = top;
    for line in wrap_limited(&win_ansi_encode(&r.institution), INSTITUTION, text_w, 3) {
        ops.push(text_op(MARGIN, y, INSTITUTION, line));
        y -= INSTITUTION.leading;
    }
    if let Some(stamp) = stamp {
        let stamp = truncate(stamp, STAMP.font, STAMP.size, text_w - 14.0);
        y -= 6.0;
        ops.extend(stamp_ops(MARGIN, y, &stamp));
        y -= stamp_size(&stamp).1;
    }
    let rule_y = y.min(logo_bottom) - 8.0;
    ops.push(rule(rule_y, 0.8, 0.0));
    (ops, rule_y - 12.0)
}

/// The header of the following pages: institution, then title and patient, the stamp at
/// the right, a rule. Returns the operations and the top of the body area.
fn running_header(r: &PdfReport, stamp: Option<&[u8]>) -> (Vec<Op>, f32) {
    let top = PAGE_H - MARGIN;
    let mut ops = Vec::new();
    let mut text_w = CONTENT_W;
    let mut stamp_h: f32 = 0.0;
    if let Some(stamp) = stamp {
        let stamp = truncate(stamp, STAMP.font, STAMP.size, CONTENT_W / 2.0);
        let (w, h) = stamp_size(&stamp);
        ops.extend(stamp_ops(PAGE_W - MARGIN - w, top, &stamp));
        text_w -= w + 10.0;
        stamp_h = h;
    }
    let institution = truncate(
        &win_ansi_encode(&r.institution),
        SMALL_BOLD.font,
        SMALL_BOLD.size,
        text_w,
    );
    ops.push(text_op(MARGIN, top, SMALL_BOLD, institution));
    let mut second: Vec<String> = Vec::new();
    if !r.title.trim().is_empty() {
        second.push(r.title.clone());
    }
    second.extend(r.patient_lines.iter().take(2).map(|(label, value)| {
        if label.trim().is_empty() {
            value.clone()
        } else {
            format!("{label}: {value}")
        }
    }));
    let second = truncate(
        &win_ansi_encode(&second.join("  |  ")),
        SMALL.font,
        SMALL.size,
        text_w,
    );
    ops.push(text_op(MARGIN, top - SMALL_BOLD.leading, SMALL, second));
    let rule_y = (top - SMALL_BOLD.leading - SMALL.leading).min(top - stamp_h) - 6.0;
    ops.push(rule(rule_y, 0.8, 0.0));
    (ops, rule_y - 12.0)
}

/// The footer: a rule, the footer text at the left and "Page n of m" at the right.
struct Footer {
    lines: Vec<Vec<u8>>,
}

impl Footer {
    fn new(text: &str) -> Self {
        let width = CONTENT_W - PAGE_LABEL_W;
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            lines.extend(wrap(
                &win_ansi_encode(paragraph),
                SMALL.font,
                SMALL.size,
                width,
                width,
            ));
        }
        if lines.len() > FOOTER_MAX_LINES {
            lines.truncate(FOOTER_MAX_LINES);
            if let Some(last) = lines.last_mut() {
                let mut cut = last.clone();
                cut.extend_from_slice(b" \x85");
                *last = truncate(&cut, SMALL.font, SMALL.size, width);
            }
        }
        Footer { lines }
    }

    /// Top of the footer text block.
    fn top(&self) -> f32 {
        MARGIN + self.lines.len().max(1) as f32 * SMALL.leading
    }

    /// Lowest point of the body area.
    fn body_bottom(&self) -> f32 {
        self.top() + 16.0
    }

    fn ops(&self, page: usize, total: usize) -> Vec<Op> {
        let top = self.top();
        let mut ops = vec![rule(top + 5.0, 0.5, 0.0)];
        let label = format!("Page {page} of {total}").into_bytes();
        let x = PAGE_W - MARGIN - SMALL.width(&label);
        ops.push(text_op(x, top, SMALL, label));
        let mut y = top;
        for line in &self.lines {
            ops.push(text_op(MARGIN, y, SMALL, line.clone()));
            y -= SMALL.leading;
        }
        ops
    }
}

// ---------------------------------------------------------------------------------------
// Body blocks
// ---------------------------------------------------------------------------------------

fn layout_title(flow: &mut Flow, title: &str) {
    let lines = wrap(
        &win_ansi_encode(title),
        TITLE.font,
        TITLE.size,
        CONTENT_W,
        CONTENT_W,
    );
    if lines.is_empty() {
        return;
    }
    for line in lines {
        flow.line(MARGIN, TITLE, line);
    }
    flow.gap(8.0);
}

/// Rows of two wrapped cells (label and value, or name and value).
type TwoCellRows = Vec<(Vec<Vec<u8>>, Vec<Vec<u8>>)>;

/// Wraps label/value pairs into a column `width` points wide; returns the rows and the
/// width of the label part.
fn kv_rows(pairs: &[(String, String)], width: f32) -> (TwoCellRows, f32) {
    let labels: Vec<Vec<u8>> = pairs
        .iter()
        .map(|(l, _)| win_ansi_encode(l.trim()))
        .collect();
    let widest = labels.iter().map(|l| LABEL.width(l)).fold(0.0, f32::max);
    let label_w = (widest + 8.0).min(width * 0.45);
    let rows = labels
        .iter()
        .zip(pairs)
        .map(|(label, (_, value))| {
            let label = wrap(label, LABEL.font, LABEL.size, label_w - 6.0, label_w - 6.0);
            let value = wrap(
                &win_ansi_encode(value),
                VALUE.font,
                VALUE.size,
                width - label_w,
                width - label_w,
            );
            (label, value)
        })
        .collect();
    (rows, label_w)
}

/// The patient (left) and examination (right) blocks.
fn layout_identification(flow: &mut Flow, patient: &[(String, String)], exam: &[(String, String)]) {
    if patient.is_empty() && exam.is_empty() {
        return;
    }
    const GUTTER: f32 = 18.0;
    let col_w = (CONTENT_W - GUTTER) / 2.0;
    let left_x = MARGIN;
    let right_x = MARGIN + col_w + GUTTER;
    let (left, left_label_w) = kv_rows(patient, col_w);
    let (right, right_label_w) = kv_rows(exam, col_w);
    let rows = left.len().max(right.len());
    let empty = (Vec::new(), Vec::new());
    let row_lines = |i: usize| {
        let (a, b) = left.get(i).unwrap_or(&empty);
        let (c, d) = right.get(i).unwrap_or(&empty);
        a.len().max(b.len()).max(c.len()).max(d.len()).max(1)
    };

    let first_row = if rows > 0 {
        row_lines(0) as f32 * LABEL.leading
    } else {
        0.0
    };
    flow.reserve(COLUMN_HEADING.leading + 2.0 + first_row);
    let top = flow.cursor;
    if !patient.is_empty() {
        flow.push(text_op(left_x, top, COLUMN_HEADING, b"Patient".to_vec()));
    }
    if !exam.is_empty() {
        flow.push(text_op(
            right_x,
            top,
            COLUMN_HEADING,
            b"Examination".to_vec(),
        ));
    }
    flow.cursor -= COLUMN_HEADING.leading + 2.0;

    for i in 0..rows {
        let height = row_lines(i) as f32 * LABEL.leading;
        if !flow.fits(height) && height <= flow.page_capacity() {
            flow.new_page();
        }
        let (pl, pv) = left.get(i).unwrap_or(&empty);
        let (el, ev) = right.get(i).unwrap_or(&empty);
        flow.cells(&[
            (left_x, LABEL, pl),
            (left_x + left_label_w, VALUE, pv),
            (right_x, LABEL, el),
            (right_x + right_label_w, VALUE, ev),
        ]);
    }
    flow.cursor -= 6.0;
    flow.rule(0.5, 0.55);
    flow.cursor -= 4.0;
}

/// Height of the first `n` text lines of laid-out text (with the gaps between them).
fn first_lines_height(lines: &[TextLine], style: Style, n: usize) -> f32 {
    let mut height = 0.0;
    let mut seen = 0;
    for line in lines {
        if seen == n {
            break;
        }
        match line {
            TextLine::Line { .. } => {
                height += style.leading;
                seen += 1;
            }
            TextLine::Gap(g) => height += g,
        }
    }
    height
}

fn place_text(flow: &mut Flow, lines: Vec<TextLine>, style: Style) {
    for line in lines {
        match line {
            TextLine::Line { indent, text } => flow.line(MARGIN + indent, style, text),
            TextLine::Gap(g) => flow.gap(g),
        }
    }
}

fn layout_section(flow: &mut Flow, heading: &str, text: &str) {
    let heading = wrap(
        &win_ansi_encode(heading),
        HEADING.font,
        HEADING.size,
        CONTENT_W,
        CONTENT_W,
    );
    let body = layout_text(text, BODY, CONTENT_W);
    if heading.is_empty() && body.is_empty() {
        return;
    }
    flow.gap(10.0);
    // Keep the heading with the first two lines of its text.
    let heading_h = heading.len() as f32 * HEADING.leading + 3.0;
    flow.reserve(heading_h + first_lines_height(&body, BODY, 2));
    for line in heading {
        flow.line(MARGIN, HEADING, line);
    }
    flow.cursor -= 3.0;
    place_text(flow, body, BODY);
}

fn layout_measurements(flow: &mut Flow, measurements: &[(String, String)]) {
    if measurements.is_empty() {
        return;
    }
    const PAD: f32 = 4.0;
    const ROW_PAD: f32 = 3.0;
    let values: Vec<Vec<u8>> = measurements
        .iter()
        .map(|(_, v)| win_ansi_encode(v))
        .collect();
    let widest = values
        .iter()
        .map(|v| VALUE.width(v))
        .fold(LABEL.width(b"Value"), f32::max);
    let value_w = (widest + 2.0 * PAD).clamp(70.0, CONTENT_W * 0.45);
    let name_w = CONTENT_W - value_w;
    let value_x = MARGIN + name_w;
    let rows: TwoCellRows = measurements
        .iter()
        .zip(&values)
        .map(|((name, _), value)| {
            let inner = name_w - 2.0 * PAD;
            let name = wrap(&win_ansi_encode(name), VALUE.font, VALUE.size, inner, inner);
            let inner = value_w - 2.0 * PAD;
            let value = wrap(value, VALUE.font, VALUE.size, inner, inner);
            (name, value)
        })
        .collect();
    let row_h = |(n, v): &(Vec<Vec<u8>>, Vec<Vec<u8>>)| {
        n.len().max(v.len()).max(1) as f32 * VALUE.leading + 2.0 * ROW_PAD
    };
    let header_h = LABEL.leading + 2.0 * ROW_PAD;
    let header = |flow: &mut Flow| {
        flow.cursor -= ROW_PAD;
        flow.cells(&[
            (MARGIN + PAD, LABEL, &[b"Measurement".to_vec()]),
            (value_x + PAD, LABEL, &[b"Value".to_vec()]),
        ]);
        flow.cursor -= ROW_PAD;
        flow.rule(0.8, 0.0);
    };

    flow.gap(10.0);
    let first_row = rows.first().map_or(0.0, row_h);
    flow.reserve(HEADING.leading + 3.0 + header_h + first_row);
    flow.line(MARGIN, HEADING, b"Measurements".to_vec());
    flow.cursor -= 3.0;
    header(flow);
    for row in &rows {
        let height = row_h(row);
        if !flow.fits(height) && height <= flow.page_capacity() - header_h {
            flow.new_page();
            header(flow);
        }
        flow.cursor -= ROW_PAD;
        flow.cells(&[
            (MARGIN + PAD, VALUE, &row.0),
            (value_x + PAD, VALUE, &row.1),
        ]);
        flow.cursor -= ROW_PAD;
        flow.rule(0.4, 0.55);
    }
}

fn layout_signature(flow: &mut Flow, status: &str, signature: Option<&str>) {
    let status = win_ansi_encode(status.trim());
    let label = b"Report status: ".to_vec();
    let text = signature
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("Not signed.");
    let lines = layout_text(text, BODY, CONTENT_W);
    let status_h = if status.is_empty() { 0.0 } else { BODY.leading };
    let height = 8.0 + status_h + first_lines_height(&lines, BODY, usize::MAX);

    flow.gap(16.0);
    flow.reserve(height.min(flow.page_capacity()));
    flow.rule(0.8, 0.0);
    flow.cursor -= 8.0;
    if !status.is_empty() {
        flow.reserve(BODY.leading);
        let bold = Style {
            font: Font::Bold,
            ..BODY
        };
        let label_w = bold.width(&label);
        flow.push(text_op(MARGIN, flow.cursor, bold, label));
        flow.push(text_op(MARGIN + label_w, flow.cursor, BODY, status));
        flow.cursor -= BODY.leading;
    }
    place_text(flow, lines, BODY);
}

// ---------------------------------------------------------------------------------------
// Logo
// ---------------------------------------------------------------------------------------

/// A decoded logo, its samples Flate-compressed for the PDF.
#[derive(Debug)]
struct Logo {
    width: u32,
    height: u32,
    gray: bool,
    /// zlib-compressed 8-bit samples (gray or RGB).
    samples: Vec<u8>,
    /// zlib-compressed 8-bit alpha, if any pixel is not opaque.
    alpha: Option<Vec<u8>>,
}

impl Logo {
    /// Size on the page: 1 pixel = 1 point at most, shrunk to fit 40 mm × 70 mm.
    fn size_pt(&self) -> (f32, f32) {
        let (w, h) = (self.width as f32, self.height as f32);
        let scale = (LOGO_MAX_H / h).min(LOGO_MAX_W / w).min(1.0);
        (w * scale, h * scale)
    }
}

fn decode_logo(bytes: &[u8]) -> Result<Logo, PdfError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(PdfError::InvalidLogo)?;
    let (width, height) = reader.info().size();
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_LOGO_PIXELS {
        return Err(PdfError::LogoDimensions { width, height });
    }
    let size = reader
        .output_buffer_size()
        .ok_or(PdfError::LogoDimensions { width, height })?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(PdfError::InvalidLogo)?;
    if info.bit_depth != png::BitDepth::Eight {
        return Err(PdfError::LogoFormat(format!(
            "{:?} bits per sample",
            info.bit_depth
        )));
    }
    let (channels, color_channels) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        other => return Err(PdfError::LogoFormat(format!("{other:?}"))),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let row_len = w * channels;
    let mut samples = Vec::with_capacity(w * h * color_channels);
    let mut alpha = Vec::with_capacity(if channels > color_channels { w * h } else { 0 });
    for y in 0..h {
        let start = y * info.line_size;
        let row = buf
            .get(start..start + row_len)
            .ok_or_else(|| PdfError::LogoFormat("short pixel buffer".to_owned()))?;
        for px in row.chunks_exact(channels) {
            samples.extend_from_slice(&px[..color_channels]);
            if channels > color_channels {
                alpha.push(px[color_channels]);
            }
        }
    }
    let alpha = (!alpha.is_empty() && alpha.iter().any(|&a| a != 255)).then(|| deflate(&alpha));
    Ok(Logo {
        width: info.width,
        height: info.height,
        gray: color_channels == 1,
        samples: deflate(&samples),
        alpha,
    })
}

fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

// ---------------------------------------------------------------------------------------
// PDF writing
// ---------------------------------------------------------------------------------------

/// Font dictionary values of the two standard fonts (from their published metrics).
struct FontInfo {
    font: Font,
    base: &'static [u8],
    bbox: [f32; 4],
    stem_v: f32,
}

const FONTS: [FontInfo; 2] = [
    FontInfo {
        font: Font::Regular,
        base: b"Helvetica",
        bbox: [-166.0, -225.0, 1000.0, 931.0],
        stem_v: 88.0,
    },
    FontInfo {
        font: Font::Bold,
        base: b"Helvetica-Bold",
        bbox: [-170.0, -228.0, 1003.0, 962.0],
        stem_v: 140.0,
    },
];

fn write_pdf(title: &str, pages: &[Vec<Op>], logo: Option<&Logo>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let mut next_id = 1;
    let mut alloc = || {
        let id = Ref::new(next_id);
        next_id += 1;
        id
    };
    let catalog_id = alloc();
    let tree_id = alloc();
    let info_id = alloc();
    let font_ids: Vec<(Ref, Ref)> = FONTS.iter().map(|_| (alloc(), alloc())).collect();
    let logo_id = alloc();
    let mask_id = alloc();
    let page_ids: Vec<(Ref, Ref)> = pages.iter().map(|_| (alloc(), alloc())).collect();

    pdf.catalog(catalog_id).pages(tree_id);
    pdf.pages(tree_id)
        .kids(page_ids.iter().map(|p| p.0))
        .count(pages.len() as i32);
    let mut info = pdf.document_info(info_id);
    if !title.trim().is_empty() {
        info.title(TextStr(title));
    }
    info.creator(TextStr("RADRIS"));
    info.producer(TextStr("RADRIS radris-report (pdf-writer)"));
    info.finish();

    for (font, (font_id, descriptor_id)) in FONTS.iter().zip(&font_ids) {
        let widths = font.font.widths();
        pdf.type1_font(*font_id)
            .base_font(Name(font.base))
            .encoding_predefined(Name(b"WinAnsiEncoding"))
            .first_char(32)
            .last_char(255)
            .widths(widths.iter().map(|&w| f32::from(w)))
            .font_descriptor(*descriptor_id);
        let [x1, y1, x2, y2] = font.bbox;
        pdf.font_descriptor(*descriptor_id)
            .name(Name(font.base))
            .flags(FontFlags::NON_SYMBOLIC)
            .bbox(Rect::new(x1, y1, x2, y2))
            .italic_angle(0.0)
            .ascent(718.0)
            .descent(-207.0)
            .cap_height(718.0)
            .stem_v(font.stem_v);
    }

    if let Some(logo) = logo {
        let mut image = pdf.image_xobject(logo_id, &logo.samples);
        image.filter(Filter::FlateDecode);
        image.width(logo.width as i32);
        image.height(logo.height as i32);
        if logo.gray {
            image.color_space().device_gray();
        } else {
            image.color_space().device_rgb();
        }
        image.bits_per_component(8);
        image.interpolate(true);
        if logo.alpha.is_some() {
            image.s_mask(mask_id);
        }
        image.finish();
        if let Some(alpha) = &logo.alpha {
            let mut mask = pdf.image_xobject(mask_id, alpha);
            mask.filter(Filter::FlateDecode);
            mask.width(logo.width as i32);
            mask.height(logo.height as i32);
            mask.color_space().device_gray();
            mask.bits_per_component(8);
            mask.interpolate(true);
        }
    }

    for (ops, (page_id, content_id)) in pages.iter().zip(&page_ids) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree_id);
        page.contents(*content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        for (font, (font_id, _)) in FONTS.iter().zip(&font_ids) {
            fonts.pair(font.font.resource(), *font_id);
        }
        fonts.finish();
        if logo.is_some() && ops.iter().any(|op| matches!(op, Op::Logo { .. })) {
            resources.x_objects().pair(Name(b"Im1"), logo_id);
        }
        resources.finish();
        page.finish();

        let content = deflate(&content_stream(ops));
        pdf.stream(*content_id, &content)
            .filter(Filter::FlateDecode);
    }
    pdf.finish()
}

fn content_stream(ops: &[Op]) -> Vec<u8> {
    let mut c = Content::new();
    c.set_fill_gray(0.0);
    for op in ops {
        match op {
            Op::Text {
                x,
                y,
                font,
                size,
                text,
            } => {
                if text.is_empty() {
                    continue;
                }
                c.begin_text();
                c.set_font(font.resource(), *size);
                c.next_line(*x, *y);
                c.show(Str(text));
                c.end_text();
            }
            Op::Line {
                x1,
                y1,
                x2,
                y2,
                width,
                gray,
            } => {
                c.set_stroke_gray(*gray);
                c.set_line_width(*width);
                c.move_to(*x1, *y1);
                c.line_to(*x2, *y2);
                c.stroke();
            }
            Op::Frame { x, y, w, h, width } => {
                c.set_stroke_gray(0.0);
                c.set_line_width(*width);
                c.rect(*x, *y, *w, *h);
                c.stroke();
            }
            Op::Logo { x, y, w, h } => {
                c.save_state();
                c.transform([*w, 0.0, 0.0, *h, *x, *y]);
                c.x_object(Name(b"Im1"));
                c.restore_state();
            }
        }
    }
    c.finish().into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widest(lines: &[Vec<u8>], font: Font, size: f32) -> f32 {
        lines
            .iter()
            .map(|l| font.width(l, size))
            .fold(0.0, f32::max)
    }

    #[test]
    fn win_ansi_ascii_and_latin1_map_to_themselves() {
        assert_eq!(
            win_ansi_encode("Hello, World! 0-9 ~"),
            b"Hello, World! 0-9 ~"
        );
        assert_eq!(
            win_ansi_encode("Müller ß é ° ± µ ² ×"),
            b"M\xFCller \xDF \xE9 \xB0 \xB1 \xB5 \xB2 \xD7"
        );
        assert_eq!(win_ansi_encode("\u{00A0}"), [0xA0]);
    }

    #[test]
    fn win_ansi_windows_1252_range() {
        assert_eq!(
            win_ansi_encode("€‚ƒ„…†‡ˆ‰Š‹Œ"),
            (0x80..=0x8C).filter(|&b| b != 0x81).collect::<Vec<u8>>()
        );
        assert_eq!(
            win_ansi_encode("‘’“”•–—˜™š›œ"),
            (0x91..=0x9C).collect::<Vec<u8>>()
        );
        assert_eq!(win_ansi_encode("ŽžŸ"), [0x8E, 0x9E, 0x9F]);
    }

    #[test]
    fn win_ansi_unmapped_become_question_marks() {
        assert_eq!(win_ansi_encode("山田 Ωλ 😀"), b"?? ?? ?");
        // A decomposed accent: the base letter stays, the combining mark is not in WinAnsi.
        assert_eq!(win_ansi_encode("e\u{0301}"), b"e?");
        // C0/C1 controls (other than tab and line breaks) and DEL.
        assert_eq!(win_ansi_encode("a\u{0007}b\u{007F}c\u{0085}"), b"a?b?c?");
    }

    #[test]
    fn win_ansi_spaces_and_transliterations() {
        assert_eq!(win_ansi_encode("a\tb\nc\r\n"), b"a b c  ");
        assert_eq!(
            win_ansi_encode("≥ 6 mm, ≤ 4 mm, ≠, −1, 5‑10, →, ←"),
            b">= 6 mm, <= 4 mm, !=, -1, 5-10, ->, <-"
        );
        assert_eq!(win_ansi_encode("soft\u{00AD}hyphen\u{200B}"), b"softhyphen");
        assert_eq!(win_ansi_encode("10 μm\u{2009}x"), b"10 \xB5m x");
    }

    #[test]
    fn widths_follow_the_metrics() {
        // "Hello" in Helvetica: H 722 + e 556 + l 222 + l 222 + o 556 = 2278.
        assert!((Font::Regular.width(b"Hello", 10.0) - 22.78).abs() < 1e-3);
        // In Helvetica-Bold: 722 + 556 + 278 + 278 + 611 = 2445.
        assert!((Font::Bold.width(b"Hello", 10.0) - 24.45).abs() < 1e-3);
        assert_eq!(Font::Regular.advance(b'W'), 944);
        assert_eq!(Font::Bold.advance(0xFC), 611);
        assert_eq!(Font::Regular.advance(0x0A), 0);
        // Digits are tabular in both fonts.
        for d in b'0'..=b'9' {
            assert_eq!(Font::Regular.advance(d), 556);
            assert_eq!(Font::Bold.advance(d), 556);
        }
    }

    #[test]
    fn wrap_respects_the_width() {
        let text = win_ansi_encode(
            "The lungs are clear without focal consolidation, effusion or pneumothorax. \
             The cardiomediastinal silhouette is within normal limits for size and contour.",
        );
        let lines = wrap(&text, Font::Regular, 10.5, 200.0, 200.0);
        assert!(lines.len() >= 4);
        assert!(widest(&lines, Font::Regular, 10.5) <= 200.0);
        // Rejoined, nothing is lost.
        assert_eq!(lines.join(&b' '), text);
        // Each line was filled: the next word would not have fit.
        for pair in lines.windows(2) {
            let next_word = pair[1].split(|&b| b == b' ').next().unwrap_or_default();
            let candidate = [pair[0].as_slice(), b" ", next_word].concat();
            assert!(Font::Regular.width(&candidate, 10.5) > 200.0);
        }
    }

    #[test]
    fn wrap_collapses_spaces_and_handles_empty_text() {
        assert!(wrap(b"", Font::Regular, 10.0, 100.0, 100.0).is_empty());
        assert!(wrap(b"   ", Font::Regular, 10.0, 100.0, 100.0).is_empty());
        assert_eq!(
            wrap(b"  a   b  ", Font::Regular, 10.0, 100.0, 100.0),
            vec![b"a b".to_vec()]
        );
    }

    #[test]
    fn wrap_breaks_words_longer_than_a_line() {
        let hash = b"3f7a9c0d2b4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
        let lines = wrap(hash, Font::Regular, 10.0, 100.0, 100.0);
        assert!(lines.len() > 1);
        assert!(widest(&lines, Font::Regular, 10.0) <= 100.0);
        assert_eq!(lines.concat(), hash.to_vec());
        // Even a width narrower than one character makes progress, one character a line.
        let lines = wrap(b"abc", Font::Regular, 10.0, 1.0, 1.0);
        assert_eq!(lines, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn wrap_uses_a_different_width_after_the_first_line() {
        let text = b"aaa bbb ccc ddd eee fff";
        let w = Font::Regular.width(b"aaa bbb", 10.0);
        let lines = wrap(text, Font::Regular, 10.0, w, 1000.0);
        assert_eq!(
            lines,
            vec![b"aaa bbb".to_vec(), b"ccc ddd eee fff".to_vec()]
        );
    }

    #[test]
    fn list_items_get_a_hanging_indent() {
        assert_eq!(list_marker_len(b"- item"), 2);
        assert_eq!(list_marker_len(b"12. item"), 4);
        assert_eq!(list_marker_len(b"a) item"), 3);
        assert_eq!(list_marker_len(b"\x95 item"), 2);
        assert_eq!(list_marker_len(b"-5 degrees"), 0);
        assert_eq!(list_marker_len(b"Liver. Normal"), 0);
        assert_eq!(list_marker_len(b"1.5 cm nodule"), 0);

        let text = "1. A long finding that certainly needs more than one line in a narrow column.";
        let lines = layout_text(text, BODY, 150.0);
        let indents: Vec<f32> = lines
            .iter()
            .filter_map(|l| match l {
                TextLine::Line { indent, .. } => Some(*indent),
                TextLine::Gap(_) => None,
            })
            .collect();
        assert!(indents.len() > 2);
        assert_eq!(indents[0], 0.0);
        let hang = BODY.width(b"1. ");
        assert!(indents[1..].iter().all(|&i| (i - hang).abs() < 1e-3));
    }

    #[test]
    fn layout_text_keeps_line_breaks_and_paragraph_gaps() {
        let lines = layout_text(
            "First line\nSecond line\n\n\nNew paragraph\n\n",
            BODY,
            400.0,
        );
        assert_eq!(
            lines,
            vec![
                TextLine::Line {
                    indent: 0.0,
                    text: b"First line".to_vec()
                },
                TextLine::Line {
                    indent: 0.0,
                    text: b"Second line".to_vec()
                },
                TextLine::Gap(BODY.leading * 0.5),
                TextLine::Line {
                    indent: 0.0,
                    text: b"New paragraph".to_vec()
                },
            ]
        );
    }

    #[test]
    fn truncate_adds_an_ellipsis() {
        let text = b"A rather long institution name for a small space";
        let cut = truncate(text, Font::Bold, 9.0, 80.0);
        assert!(Font::Bold.width(&cut, 9.0) <= 80.0);
        assert_eq!(cut.last(), Some(&0x85));
        assert_eq!(truncate(b"short", Font::Bold, 9.0, 80.0), b"short");
    }

    fn texts(ops: &[Op]) -> Vec<Vec<u8>> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Text { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_heading_is_kept_with_its_first_lines() {
        let text = "one\ntwo\nthree";
        // Room for the section gap, the heading and one line, not two: all moves on.
        let mut flow = Flow::new(500.0, 700.0, 100.0);
        flow.cursor = 100.0 + 10.0 + HEADING.leading + 3.0 + BODY.leading + 1.0;
        flow.push(text_op(
            MARGIN,
            flow.cursor + 20.0,
            BODY,
            b"before".to_vec(),
        ));
        layout_section(&mut flow, "Findings", text);
        assert_eq!(flow.pages.len(), 2);
        assert_eq!(texts(&flow.pages[0]), vec![b"before".to_vec()]);
        assert_eq!(
            texts(&flow.pages[1]),
            vec![
                b"Findings".to_vec(),
                b"one".to_vec(),
                b"two".to_vec(),
                b"three".to_vec()
            ]
        );
        // At a new page's top the gap before the heading is dropped.
        let Op::Text { y, .. } = &flow.pages[1][0] else {
            panic!("text expected")
        };
        assert!((y - HEADING.baseline(700.0)).abs() < 1e-3);

        // With room for two lines the heading stays; the third line goes to the next page.
        let mut flow = Flow::new(500.0, 700.0, 100.0);
        flow.cursor = 100.0 + 10.0 + HEADING.leading + 3.0 + 2.0 * BODY.leading + 1.0;
        flow.push(text_op(
            MARGIN,
            flow.cursor + 20.0,
            BODY,
            b"before".to_vec(),
        ));
        layout_section(&mut flow, "Findings", text);
        assert_eq!(flow.pages.len(), 2);
        assert_eq!(
            texts(&flow.pages[0]),
            vec![
                b"before".to_vec(),
                b"Findings".to_vec(),
                b"one".to_vec(),
                b"two".to_vec()
            ]
        );
        assert_eq!(texts(&flow.pages[1]), vec![b"three".to_vec()]);
    }

    #[test]
    fn oversized_content_still_renders() {
        let huge = "word ".repeat(4000);
        let report = PdfReport {
            institution: huge.clone(),
            title: huge.clone(),
            patient_lines: vec![(huge.clone(), huge.clone())],
            exam_lines: vec![("Accession".to_owned(), "x".repeat(5000))],
            sections: vec![(huge.clone(), huge.clone()), (String::new(), String::new())],
            measurements: vec![(huge.clone(), "y".repeat(3000))],
            status: huge.clone(),
            signature: Some(huge.clone()),
            footer: huge,
            ..PdfReport::default()
        };
        let pdf = render(&report).expect("render");
        assert!(pdf.starts_with(b"%PDF-1.7"));
    }

    #[test]
    fn nothing_is_drawn_outside_the_margins() {
        let report = PdfReport {
            institution: "Radiology".to_owned(),
            title: "Title".to_owned(),
            sections: (0..30)
                .map(|i| (format!("Heading {i}"), "text ".repeat(200)))
                .collect(),
            measurements: (0..80)
                .map(|i| (format!("m{i}"), format!("{i} mm")))
                .collect(),
            status: "AMENDED".to_owned(),
            footer: "Footer".to_owned(),
            ..PdfReport::default()
        };
        let stamp = stamp_text(&report.status);
        let (_, first_top) = first_page_header(&report, None, stamp.as_deref());
        let (_, other_top) = running_header(&report, stamp.as_deref());
        let footer = Footer::new(&report.footer);
        let mut flow = Flow::new(first_top, other_top, footer.body_bottom());
        for (heading, text) in &report.sections {
            layout_section(&mut flow, heading, text);
        }
        layout_measurements(&mut flow, &report.measurements);
        layout_signature(&mut flow, &report.status, None);
        assert!(flow.pages.len() > 5);
        for (i, page) in flow.pages.iter().enumerate() {
            let top = if i == 0 { first_top } else { other_top };
            for op in page {
                if let Op::Text {
                    x,
                    y,
                    font,
                    size,
                    text,
                } = op
                {
                    assert!(*y < top && *y > footer.body_bottom() - 4.0, "page {i}: {y}");
                    assert!(
                        *x >= MARGIN - 1e-3
                            && x + font.width(text, *size) <= PAGE_W - MARGIN + 1e-3
                    );
                }
            }
        }
    }

    fn encode_png(
        width: u32,
        height: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(color);
            encoder.set_depth(depth);
            if color == png::ColorType::Indexed {
                encoder.set_palette(vec![0, 0, 0, 255, 255, 255]);
                encoder.set_trns(vec![0, 255]);
            }
            let mut writer = encoder.write_header().expect("header");
            writer.write_image_data(data).expect("data");
        }
        out
    }

    #[test]
    fn logos_of_all_pixel_formats_decode() {
        let gray = encode_png(
            2,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[0, 1, 2, 3],
        );
        let logo = decode_logo(&gray).expect("gray");
        assert!(logo.gray && logo.alpha.is_none());

        let rgba = encode_png(
            1,
            2,
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            &[1, 2, 3, 255, 4, 5, 6, 0],
        );
        let logo = decode_logo(&rgba).expect("rgba");
        assert!(!logo.gray);
        let alpha =
            miniz_oxide::inflate::decompress_to_vec_zlib(logo.alpha.as_deref().expect("alpha"))
                .expect("zlib");
        assert_eq!(alpha, [255, 0]);
        let rgb = miniz_oxide::inflate::decompress_to_vec_zlib(&logo.samples).expect("zlib");
        assert_eq!(rgb, [1, 2, 3, 4, 5, 6]);

        // An opaque alpha channel needs no soft mask.
        let opaque = encode_png(
            1,
            1,
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            &[9, 255],
        );
        assert!(decode_logo(&opaque).expect("gray+alpha").alpha.is_none());

        // 16-bit samples are reduced to 8 bits; a 1-bit palette is expanded.
        let deep = encode_png(
            1,
            1,
            png::ColorType::Rgb,
            png::BitDepth::Sixteen,
            &[1, 0, 2, 0, 3, 0],
        );
        assert_eq!(
            miniz_oxide::inflate::decompress_to_vec_zlib(
                &decode_logo(&deep).expect("16-bit").samples
            )
            .expect("zlib"),
            [1, 2, 3]
        );
        let indexed = encode_png(
            2,
            1,
            png::ColorType::Indexed,
            png::BitDepth::One,
            &[0b0100_0000],
        );
        let logo = decode_logo(&indexed).expect("indexed");
        assert_eq!(
            miniz_oxide::inflate::decompress_to_vec_zlib(&logo.samples).expect("zlib"),
            [0, 0, 0, 255, 255, 255]
        );
        assert!(logo.alpha.is_some());
    }

    #[test]
    fn bad_logos_are_errors() {
        assert!(matches!(decode_logo(b""), Err(PdfError::InvalidLogo(_))));
        assert!(matches!(
            decode_logo(b"not a png at all"),
            Err(PdfError::InvalidLogo(_))
        ));
        let good = encode_png(4, 4, png::ColorType::Rgb, png::BitDepth::Eight, &[7; 48]);
        for cut in [8, 20, 33, good.len() - 13] {
            assert!(decode_logo(&good[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn logo_size_keeps_the_aspect_ratio() {
        let logo = |width, height| Logo {
            width,
            height,
            gray: true,
            samples: Vec::new(),
            alpha: None,
        };
        let (w, h) = logo(1000, 1000).size_pt();
        assert!((h - LOGO_MAX_H).abs() < 1e-3 && (w - h).abs() < 1e-3);
        let (w, h) = logo(3000, 300).size_pt();
        assert!((w - LOGO_MAX_W).abs() < 1e-3 && (w / h - 10.0).abs() < 1e-3);
        assert_eq!(logo(50, 20).size_pt(), (50.0, 20.0));
    }
}
