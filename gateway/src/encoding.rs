//! Content-coding of HTTP bodies the gateway builds itself (chunk bitsets,
//! no-JS pages): negotiation by `Accept-Encoding` and the encoders.
//!
//! The gateway prefers Brotli, then zstd, then gzip, among the codings the
//! request accepts with a non-zero `q`; a higher `q` wins over the
//! preference, `*` stands for any coding not named, and a coding named
//! with `q=0` is refused even when `*` is accepted. Bodies are small (a
//! chunk of 32,768 boxes is 4 KiB), so each is compressed in one call,
//! at a level chosen for speed: these answers are built per request.

use std::io::Write;

/// A content-coding the gateway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli (`br`), RFC 7932.
    Brotli,
    /// Zstandard (`zstd`), RFC 8878.
    Zstd,
    /// gzip (`gzip`), RFC 1952.
    Gzip,
}

impl Coding {
    /// Every coding, most preferred first.
    pub const ALL: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

    /// The coding's token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// `data` encoded with this coding.
    pub fn encode(self, data: &[u8]) -> Vec<u8> {
        match self {
            Coding::Brotli => brotli_encode(data),
            Coding::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL)
                .expect("zstd compresses any buffer in memory"),
            Coding::Gzip => gzip(data),
        }
    }
}

/// Brotli quality: 5 packs bitsets within a few percent of 11 at a small
/// fraction of its time.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window (log2 of bytes); a chunk body is at most 4 KiB.
const BROTLI_WINDOW: u32 = 18;
/// zstd level: the library's fast default range.
const ZSTD_LEVEL: i32 = 3;

fn brotli_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 + 32);
    {
        let mut writer =
            brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
        writer
            .write_all(data)
            .expect("writing to a Vec cannot fail");
    }
    out
}

/// `data` gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 32),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// The `q` of each item of an `Accept-Encoding` value: `(coding, q)`,
/// codings lower-cased; a missing or unreadable `q` counts as 1.
fn items(accept_encoding: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    accept_encoding.split(',').filter_map(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().filter(|c| !c.is_empty())?.to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(1.0));
        Some((coding, q))
    })
}

/// The coding to answer with for `accept_encoding`, or `None` for the
/// identity.
pub fn negotiate(accept_encoding: &str) -> Option<Coding> {
    let listed: Vec<(String, f32)> = items(accept_encoding).collect();
    let q_of = |token: &str| {
        listed
            .iter()
            .find(|(c, _)| c == token)
            .or_else(|| listed.iter().find(|(c, _)| c == "*"))
            .map_or(0.0, |(_, q)| *q)
    };
    let mut best: Option<(Coding, f32)> = None;
    for coding in Coding::ALL {
        let q = q_of(coding.token());
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// True when `accept_encoding` lets the gateway answer with gzip.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    items(accept_encoding).any(|(c, q)| (c == "gzip" || c == "*") && q > 0.0)
        && !items(accept_encoding).any(|(c, q)| c == "gzip" && q == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn preference_and_q_values() {
        assert_eq!(negotiate("gzip, deflate, br, zstd"), Some(Coding::Brotli));
        assert_eq!(negotiate("gzip, zstd"), Some(Coding::Zstd));
        assert_eq!(negotiate("GZIP"), Some(Coding::Gzip));
        assert_eq!(negotiate("br;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(negotiate("br;q=0, zstd;q=0, *"), Some(Coding::Gzip));
        assert_eq!(negotiate("*"), Some(Coding::Brotli));
        assert_eq!(negotiate("identity"), None);
        assert_eq!(negotiate("gzip;q=0"), None);
        assert_eq!(negotiate(""), None);
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, GZIP;q=0.5, br"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("*, gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip(""));
    }

    fn sample() -> Vec<u8> {
        (0..4096u32)
            .map(|i| if i % 97 == 0 { 0x11 } else { 0 })
            .collect()
    }

    #[test]
    fn every_coding_round_trips_and_shrinks_a_sparse_chunk() {
        let data = sample();
        for coding in Coding::ALL {
            let packed = coding.encode(&data);
            assert!(
                packed.len() < data.len() / 4,
                "{coding:?}: {}",
                packed.len()
            );
            let mut out = Vec::new();
            match coding {
                Coding::Brotli => {
                    brotli::Decompressor::new(&packed[..], 4096)
                        .read_to_end(&mut out)
                        .unwrap();
                }
                Coding::Zstd => out = zstd::bulk::decompress(&packed, data.len()).unwrap(),
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut out)
                        .unwrap();
                }
            }
            assert_eq!(out, data, "{coding:?}");
        }
    }
}
