//! `Accept` header negotiation for WADO-RS (PS3.18 8.7): media ranges with their `type` and
//! `transfer-syntax` parameters, tried in order of quality.

/// One acceptable media type.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// e.g. `multipart/related`, `application/dicom`, `*/*`.
    pub media: String,
    /// The `type` parameter of a multipart range, lower case.
    pub part_type: Option<String>,
    pub transfer_syntax: Option<String>,
    pub q: f32,
}

/// Parse an `Accept` header; a missing or empty header accepts anything.
pub fn parse(header: Option<&str>) -> Vec<MediaRange> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return vec![MediaRange {
            media: "*/*".into(),
            part_type: None,
            transfer_syntax: None,
            q: 1.0,
        }];
    };
    let mut out: Vec<MediaRange> = split_top(h, ',')
        .into_iter()
        .filter_map(|range| {
            let mut parts = split_top(&range, ';').into_iter();
            let media = parts.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let mut r = MediaRange {
                media,
                part_type: None,
                transfer_syntax: None,
                q: 1.0,
            };
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"').trim();
                match k.trim().to_ascii_lowercase().as_str() {
                    "type" => r.part_type = Some(v.to_ascii_lowercase()),
                    "transfer-syntax" => r.transfer_syntax = Some(v.to_owned()),
                    "q" => r.q = v.parse().unwrap_or(1.0),
                    _ => {}
                }
            }
            Some(r)
        })
        .collect();
    out.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// Split on a separator outside double quotes.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == sep && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

impl MediaRange {
    /// Whether this range admits a multipart response whose parts are `part`.
    pub fn admits_multipart_of(&self, part: &str) -> bool {
        match self.media.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => self
                .part_type
                .as_deref()
                .is_none_or(|t| t == part || t == "*/*" || type_wildcard(t, part)),
            m => m == part,
        }
    }
}

fn type_wildcard(pattern: &str, media: &str) -> bool {
    pattern
        .strip_suffix("/*")
        .is_some_and(|major| media.split('/').next() == Some(major))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dicomweb_accept() {
        let r = parse(Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1, application/json;q=0.5",
        ));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].media, "multipart/related");
        assert_eq!(r[0].part_type.as_deref(), Some("application/dicom"));
        assert_eq!(r[0].transfer_syntax.as_deref(), Some("1.2.840.10008.1.2.1"));
        assert!(r[0].admits_multipart_of("application/dicom"));
        assert!(!r[0].admits_multipart_of("application/octet-stream"));
        assert!(parse(None)[0].admits_multipart_of("image/jpeg"));
        let img = parse(Some("multipart/related; type=\"image/*\""));
        assert!(img[0].admits_multipart_of("image/jls"));
    }
}
