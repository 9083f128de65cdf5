//! The subset of CBOR (RFC 8949) that WebAuthn needs: attestation objects, COSE keys
//! (RFC 9052/9053) and authenticator extension maps.
//!
//! Authenticators emit CTAP2 canonical CBOR, so what this reader refuses is what a genuine
//! authenticator never sends: indefinite lengths, tags, reserved additional information,
//! duplicate map keys and nesting deeper than [`MAX_DEPTH`]. Every length is checked against
//! the bytes that are left before anything is allocated, so a lying length cannot make us
//! allocate more than the input.

/// Deepest nesting we read (an attestation object with an `x5c` array is 3 deep).
const MAX_DEPTH: usize = 8;

/// A decoded CBOR data item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cbor {
    Unsigned(u64),
    /// Major type 1: the value is `-1 - n`.
    Negative(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Bool(bool),
    Null,
    Undefined,
    /// A half, single or double float (WebAuthn never needs the value).
    Float,
}

/// Why bytes are not the CBOR we accept (the message names the offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CBOR at byte {offset}: {why}")]
pub(crate) struct CborError {
    pub offset: usize,
    pub why: &'static str,
}

impl Cbor {
    /// The value of an integer item that fits an `i64`.
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Cbor::Unsigned(n) => i64::try_from(n).ok(),
            Cbor::Negative(n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Cbor::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cbor::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Cbor, Cbor)]> {
        match self {
            Cbor::Map(m) => Some(m),
            _ => None,
        }
    }
}

/// The value of a text key (attestation objects, attestation statements).
pub(crate) fn get_text<'a>(map: &'a [(Cbor, Cbor)], key: &str) -> Option<&'a Cbor> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

/// The value of an integer key (COSE keys).
pub(crate) fn get_int(map: &[(Cbor, Cbor)], key: i64) -> Option<&Cbor> {
    map.iter()
        .find(|(k, _)| k.as_int() == Some(key))
        .map(|(_, v)| v)
}

/// Decode exactly one item that fills `input`.
pub(crate) fn decode(input: &[u8]) -> Result<Cbor, CborError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(CborError {
            offset: used,
            why: "trailing bytes after the item",
        });
    }
    Ok(value)
}

/// Decode the item at the start of `input`; returns it and how many bytes it took (the
/// COSE key in authenticator data is followed by more data and has no length of its own).
pub(crate) fn decode_prefix(input: &[u8]) -> Result<(Cbor, usize), CborError> {
    let mut r = Reader { input, pos: 0 };
    let value = r.item(0)?;
    Ok((value, r.pos))
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn fail<T>(&self, why: &'static str) -> Result<T, CborError> {
        Err(CborError {
            offset: self.pos,
            why,
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.input.len());
        let Some(end) = end else {
            return self.fail("truncated");
        };
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// The initial byte: major type and argument.
    fn head(&mut self) -> Result<(u8, u64, u8), CborError> {
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes([self.take(1)?[0], self.take(1)?[0]])),
            26 => {
                let b = self.take(4)?;
                u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            27 => {
                let b = self.take(8)?;
                u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            28..=30 => return self.fail("reserved additional information"),
            _ => return self.fail("indefinite lengths are not canonical CBOR"),
        };
        Ok((major, arg, info))
    }

    /// A length that fits what is left (each element takes at least one byte).
    fn length(&self, arg: u64) -> Result<usize, CborError> {
        match usize::try_from(arg) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => self.fail("length exceeds the input"),
        }
    }

    fn item(&mut self, depth: usize) -> Result<Cbor, CborError> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        let (major, arg, info) = self.head()?;
        Ok(match major {
            0 => Cbor::Unsigned(arg),
            1 => Cbor::Negative(arg),
            2 => {
                let n = self.length(arg)?;
                Cbor::Bytes(self.take(n)?.to_vec())
            }
            3 => {
                let n = self.length(arg)?;
                let start = self.pos;
                let bytes = self.take(n)?.to_vec();
                match String::from_utf8(bytes) {
                    Ok(s) => Cbor::Text(s),
                    Err(_) => {
                        self.pos = start;
                        return self.fail("text string is not UTF-8");
                    }
                }
            }
            4 => {
                let n = self.length(arg)?;
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Cbor::Array(items)
            }
            5 => {
                let n = self.length(arg)?;
                let mut entries: Vec<(Cbor, Cbor)> = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let key = self.item(depth + 1)?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return self.fail("duplicate map key");
                    }
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Cbor::Map(entries)
            }
            6 => return self.fail("tags are not used by WebAuthn"),
            _ => match info {
                20 => Cbor::Bool(false),
                21 => Cbor::Bool(true),
                22 => Cbor::Null,
                23 => Cbor::Undefined,
                25..=27 => Cbor::Float,
                _ => return self.fail("unassigned simple value"),
            },
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal canonical CBOR writer for building test inputs.
    pub(crate) fn encode(v: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, v);
        out
    }

    fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            out.push(m | n as u8);
        } else if n <= 0xff {
            out.extend([m | 24, n as u8]);
        } else if n <= 0xffff {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        } else {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }

    fn write(out: &mut Vec<u8>, v: &Cbor) {
        match v {
            Cbor::Unsigned(n) => head(out, 0, *n),
            Cbor::Negative(n) => head(out, 1, *n),
            Cbor::Bytes(b) => {
                head(out, 2, b.len() as u64);
                out.extend(b);
            }
            Cbor::Text(t) => {
                head(out, 3, t.len() as u64);
                out.extend(t.as_bytes());
            }
            Cbor::Array(a) => {
                head(out, 4, a.len() as u64);
                a.iter().for_each(|i| write(out, i));
            }
            Cbor::Map(m) => {
                head(out, 5, m.len() as u64);
                for (k, v) in m {
                    write(out, k);
                    write(out, v);
                }
            }
            Cbor::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
            Cbor::Null => out.push(0xf6),
            Cbor::Undefined => out.push(0xf7),
            Cbor::Float => out.extend([0xf9, 0, 0]),
        }
    }

    pub(crate) fn int(n: i64) -> Cbor {
        if n >= 0 {
            Cbor::Unsigned(n as u64)
        } else {
            Cbor::Negative((-1 - n) as u64)
        }
    }

    pub(crate) fn text(s: &str) -> Cbor {
        Cbor::Text(s.to_owned())
    }

    #[test]
    fn round_trips_what_webauthn_uses() {
        let v = Cbor::Map(vec![
            (text("fmt"), text("none")),
            (text("attStmt"), Cbor::Map(vec![])),
            (text("authData"), Cbor::Bytes(vec![7; 300])),
            (int(-7), int(-70000)),
            (int(1), Cbor::Array(vec![Cbor::Bool(true), Cbor::Null])),
        ]);
        let bytes = encode(&v);
        assert_eq!(decode(&bytes), Ok(v.clone()));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_prefix(&longer), Ok((v, bytes.len())));
        assert!(decode(&longer).is_err());
        assert_eq!(int(-7).as_int(), Some(-7));
    }

    #[test]
    fn refuses_what_no_authenticator_sends() {
        let check = |bytes: &[u8], why: &str| {
            let e = decode(bytes).expect_err("must be refused");
            assert_eq!(e.why, why, "{bytes:?}");
        };
        check(&[], "truncated");
        check(&[0x5a, 0xff, 0xff, 0xff, 0xff], "length exceeds the input");
        check(
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            "length exceeds the input",
        );
        check(&[0x5f], "indefinite lengths are not canonical CBOR");
        check(&[0x1c], "reserved additional information");
        check(&[0xc0, 0x00], "tags are not used by WebAuthn");
        check(&[0x62, 0xff, 0xfe], "text string is not UTF-8");
        check(&[0xa2, 0x01, 0x00, 0x01, 0x00], "duplicate map key");
        check(&[0xf0], "unassigned simple value");
        check(&[0x81; 20], "nested too deeply");
    }
}
