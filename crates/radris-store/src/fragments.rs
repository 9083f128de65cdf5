//! A data set held in memory as the fragments it arrived in (the PDVs of a C-STORE), never
//! joined: parsing, hashing and encrypting all read across the fragments, so the bytes are not
//! copied into one growing buffer (which costs a copy of each fragment and of every buffer it
//! outgrows).

use std::io::Read;

/// Byte fragments read as one sequence.
#[derive(Debug, Default)]
pub struct Fragments {
    parts: Vec<Vec<u8>>,
    len: usize,
}

impl Fragments {
    /// Append a fragment, taking its buffer.
    pub fn push(&mut self, part: Vec<u8>) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push(part);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fragments in order.
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        self.parts.iter().map(Vec::as_slice)
    }

    /// Sequential reads from the start.
    pub fn reader(&self) -> FragmentsReader<'_> {
        FragmentsReader {
            parts: &self.parts,
            part: 0,
            at: 0,
        }
    }
}

impl radris_dicom::wire::Source for Fragments {
    fn read_into(&self, pos: usize, buf: &mut [u8]) -> bool {
        if pos.checked_add(buf.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        let (mut skip, mut out) = (pos, &mut buf[..]);
        for part in &self.parts {
            if out.is_empty() {
                break;
            }
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let n = (part.len() - skip).min(out.len());
            out[..n].copy_from_slice(&part[skip..skip + n]);
            out = &mut out[n..];
            skip = 0;
        }
        out.is_empty()
    }
}

/// [`Fragments::reader`].
pub struct FragmentsReader<'a> {
    parts: &'a [Vec<u8>],
    part: usize,
    at: usize,
}

impl Read for FragmentsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(part) = self.parts.get(self.part) {
            if self.at < part.len() {
                let n = (part.len() - self.at).min(buf.len());
                buf[..n].copy_from_slice(&part[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            self.part += 1;
            self.at = 0;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radris_dicom::wire::Source;

    fn sample() -> (Fragments, Vec<u8>) {
        let whole: Vec<u8> = (0..1000u32).map(|i| (i * 13 % 256) as u8).collect();
        let mut f = Fragments::default();
        let mut at = 0;
        for size in [1, 0, 300, 7, 492, 200] {
            f.push(whole[at..at + size].to_vec());
            at += size;
        }
        (f, whole)
    }

    #[test]
    fn reads_across_fragments_as_one_sequence() {
        let (f, whole) = sample();
        assert_eq!(f.len(), 1000);
        let mut all = Vec::new();
        f.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, whole);
        assert_eq!(f.parts().flatten().copied().collect::<Vec<u8>>(), whole);
        for (pos, n) in [
            (0, 1000),
            (0, 1),
            (1, 300),
            (299, 10),
            (305, 500),
            (999, 1),
            (1000, 0),
        ] {
            let mut buf = vec![0u8; n];
            assert!(f.read_into(pos, &mut buf), "{pos}+{n}");
            assert_eq!(buf, whole[pos..pos + n]);
        }
        assert!(!f.read_into(995, &mut [0u8; 6]));
        assert!(!f.read_into(usize::MAX, &mut [0u8; 2]));
    }
}
