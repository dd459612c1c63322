//! The byte layout of a backup file (specified in the [crate
//! docs](crate)): magic, version, crc32-protected sections, final crc32.
//!
//! [`write`](fn@write) turns a [`Backup`] into bytes; [`read`] turns bytes back into
//! a checked [`Backup`], refusing anything malformed with an error that
//! names the section, never panicking and never allocating more than the
//! file actually holds.

use std::io::{Read, Write};

use checkraft_proto::{codec, ShardDescriptor, ShardMap};
use croaring::{Bitmap, Portable};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::check;
use crate::contents::{Backup, ShardBackup};
use crate::error::{invalid, Context, Error, Result};

/// The first eight bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"CKRFTBK\0";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Largest header body.
const MAX_HEADER: u32 = 16 << 20;
/// Largest shard body: what the codec decodes at most.
const MAX_SHARD: u32 = codec::DECODE_LIMIT as u32;

/// The header section's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// When the backup started, ms since the Unix epoch.
    pub created_ms: u64,
    /// The writer, e.g. `raftctl 0.1.0`.
    pub tool: String,
    /// The source cluster's shard map, `operation` cleared.
    pub map: ShardMap,
}

/// A shard section's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSection {
    /// The shard's descriptor as its snapshot recorded it.
    pub descriptor: ShardDescriptor,
    /// The change number the snapshot reflects.
    pub seq: u64,
    /// openraft's snapshot id.
    pub snapshot_id: String,
    /// The last raft log index the snapshot covers (0 when none).
    pub last_log_index: u64,
    /// croaring `Portable` bytes of the checked absolute indices.
    pub bitmap: Vec<u8>,
}

/// Writes `backup` to `out`, naming `tool` (e.g. `raftctl 0.1.0`) as
/// its writer; returns the number of bytes written.
pub fn write(out: impl Write, backup: &Backup, tool: &str) -> Result<u64> {
    let header = Header {
        created_ms: backup.created_ms,
        tool: tool.to_string(),
        map: ShardMap {
            operation: None,
            ..backup.map.clone()
        },
    };
    let sections: Vec<ShardSection> = backup.shards.iter().map(to_section).collect();
    write_parts(out, &header, &sections)
}

/// Writes a file from its parts, as they are (no validation: [`read`]
/// does that).
pub fn write_parts(out: impl Write, header: &Header, shards: &[ShardSection]) -> Result<u64> {
    let mut w = CrcWriter {
        inner: out,
        hasher: crc32fast::Hasher::new(),
        written: 0,
    };
    w.put(MAGIC)?;
    w.put(&VERSION.to_le_bytes())?;
    w.section(&codec::encode(header), MAX_HEADER)
        .context("writing the header")?;
    for s in shards {
        let id = s.descriptor.shard;
        w.section(&codec::encode(s), MAX_SHARD)
            .with_context(|| format!("writing shard {id}"))?;
    }
    let crc = w.hasher.clone().finalize();
    w.put(&crc.to_le_bytes())?;
    w.inner
        .flush()
        .map_err(|e| Error::io("writing the file", e))?;
    Ok(w.written)
}

/// Reads and checks a whole backup.
pub fn read(input: impl Read) -> Result<Backup> {
    let mut r = CrcReader {
        inner: input,
        hasher: crc32fast::Hasher::new(),
        offset: 0,
    };
    read_preamble(&mut r)?;
    let header: Header = r.section("the header", MAX_HEADER)?;
    let count = header.map.shards.len();
    let mut shards = Vec::new();
    for i in 1..=count {
        shards.push(r.section(&format!("shard section {i} of {count}"), MAX_SHARD)?);
    }
    read_trailer(&mut r)?;
    check::backup(header, shards)
}

/// Reads only the magic, the version and the header section (checksum
/// included): cheap, for listing backups. It does not check the rest of
/// the file; [`read`] does.
pub fn read_header(input: impl Read) -> Result<Header> {
    let mut r = CrcReader {
        inner: input,
        hasher: crc32fast::Hasher::new(),
        offset: 0,
    };
    read_preamble(&mut r)?;
    r.section("the header", MAX_HEADER)
}

/// Encodes one shard for the file.
fn to_section(s: &ShardBackup) -> ShardSection {
    let mut bitmap = s.bitmap.clone();
    bitmap.run_optimize();
    ShardSection {
        descriptor: s.descriptor.clone(),
        seq: s.seq,
        snapshot_id: s.snapshot_id.clone(),
        last_log_index: s.last_log_index,
        bitmap: bitmap.serialize::<Portable>(),
    }
}

/// Decodes untrusted `Portable` bytes, or explains that they do not.
pub fn decode_bitmap(bytes: &[u8]) -> Result<Bitmap> {
    Bitmap::try_deserialize::<Portable>(bytes)
        .ok_or_else(|| Error::Invalid("not valid croaring Portable bytes".into()))
}

/// Magic and version.
fn read_preamble(r: &mut CrcReader<impl Read>) -> Result<()> {
    let magic = r.take(MAGIC.len())?;
    if magic.len() < MAGIC.len() || magic.as_slice() != MAGIC {
        invalid!(
            "not a checkraft backup: the file does not start with {:?}",
            String::from_utf8_lossy(MAGIC)
        );
    }
    let version = r.u32("the format version")?;
    if version != VERSION {
        invalid!(
            "unsupported backup format version {version} (this reader knows version {VERSION})"
        );
    }
    Ok(())
}

/// The final crc32, then the end of the file.
fn read_trailer(r: &mut CrcReader<impl Read>) -> Result<()> {
    let computed = r.hasher.clone().finalize();
    let stored = r.u32("the final checksum")?;
    if stored != computed {
        invalid!(
            "final checksum mismatch (stored {stored:08x}, computed {computed:08x}): \
             the file is corrupt"
        );
    }
    let extra = r.take(1)?;
    if !extra.is_empty() {
        invalid!(
            "unexpected bytes after the final checksum at offset {}: the file is corrupt",
            r.offset - 1
        );
    }
    Ok(())
}

/// A writer that keeps a crc32 of everything written.
struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner
            .write_all(bytes)
            .map_err(|e| Error::io("writing the file", e))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// `len`, `body`, crc32 of both.
    fn section(&mut self, body: &[u8], max: u32) -> Result<()> {
        let len = u32::try_from(body.len()).ok().filter(|&l| l <= max);
        let Some(len) = len else {
            invalid!(
                "a section of {} bytes exceeds the format's limit of {max}",
                body.len()
            );
        };
        let len = len.to_le_bytes();
        self.put(&len)?;
        self.put(body)?;
        self.put(&section_crc(&len, body).to_le_bytes())
    }
}

/// A reader that keeps a crc32 of everything read and its offset.
struct CrcReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    offset: u64,
}

impl<R: Read> CrcReader<R> {
    /// Up to `n` bytes: fewer only at the end of the file. Allocates as
    /// bytes arrive, so a bogus `n` costs nothing.
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        (&mut self.inner)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading the file", e))?;
        self.hasher.update(&buf);
        self.offset += buf.len() as u64;
        Ok(buf)
    }

    /// Exactly `n` bytes of `what`.
    fn exact(&mut self, n: usize, what: &str) -> Result<Vec<u8>> {
        let buf = self.take(n)?;
        if buf.len() < n {
            invalid!(
                "truncated: the file ends at offset {} inside {what} ({} of {n} bytes present)",
                self.offset,
                buf.len()
            );
        }
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.exact(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// One section, checked against its crc32 and decoded.
    fn section<T: DeserializeOwned>(&mut self, what: &str, max: u32) -> Result<T> {
        let start = self.offset;
        let len_bytes = self.exact(4, what)?;
        let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if len > max {
            invalid!(
                "{what} at offset {start} declares {len} bytes, over the limit of {max}: \
                 the file is corrupt"
            );
        }
        let body = self.exact(len as usize, what)?;
        let stored = self.u32(what)?;
        let computed = section_crc(&len_bytes, &body);
        if stored != computed {
            invalid!(
                "checksum mismatch in {what} at offset {start} \
                 (stored {stored:08x}, computed {computed:08x}): the file is corrupt"
            );
        }
        codec::decode(&body)
            .map_err(|e| Error::Invalid(format!("{what} at offset {start} does not decode: {e}")))
    }
}

/// The crc32 of a section's length bytes followed by its body.
fn section_crc(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::contents::samples;

    fn sample() -> Backup {
        let mut rng = StdRng::seed_from_u64(7);
        let layout = samples::layout(&mut rng, 5000, 4);
        samples::backup(&mut rng, 5000, &layout)
    }

    fn bytes_of(b: &Backup) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write(&mut out, b, "test").unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", read(bytes).expect_err("corrupt input accepted"))
    }

    /// `(name, start, end)` of each section, found by walking the lengths.
    fn sections(bytes: &[u8], count: usize) -> Vec<(String, usize, usize)> {
        let mut at = 12;
        let mut out = Vec::new();
        for i in 0..=count {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let name = if i == 0 {
                "the header".to_string()
            } else {
                format!("shard section {i} of {count}")
            };
            out.push((name, at, at + 4 + len + 4));
            at += 4 + len + 4;
        }
        assert_eq!(at + 4, bytes.len());
        out
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let back = read(bytes_of(&b).as_slice()).unwrap();
        assert_eq!(back, b);
        assert!(back.boxes_checked() > 0);
        let header = read_header(bytes_of(&b).as_slice()).unwrap();
        assert_eq!(
            (header.created_ms, header.tool.as_str()),
            (b.created_ms, "test")
        );
        assert_eq!(header.map, b.map);
    }

    #[test]
    fn map_operation_is_not_written() {
        let mut b = sample();
        b.map.operation = Some(checkraft_proto::Operation {
            id: 3,
            kind: checkraft_proto::OperationKind::Restore {
                backup_created_ms: 1,
            },
            step: "x".into(),
        });
        let back = read(bytes_of(&b).as_slice()).unwrap();
        assert_eq!(back.map.operation, None);
    }

    #[test]
    fn truncation_anywhere_is_rejected() {
        let bytes = bytes_of(&sample());
        for cut in 0..bytes.len() {
            let e = err(&bytes[..cut]);
            assert!(
                e.contains("truncated") || e.contains("not a checkraft backup"),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let bytes = bytes_of(&sample());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5a;
            let _ = err(&bad);
        }
    }

    #[test]
    fn a_flip_in_a_section_body_names_the_section() {
        let b = sample();
        let bytes = bytes_of(&b);
        for (name, start, end) in sections(&bytes, b.shards.len()) {
            for at in [start + 4, (start + end) / 2, end - 5] {
                let mut bad = bytes.clone();
                bad[at] ^= 0x01;
                let e = err(&bad);
                assert!(
                    e.contains(&format!("checksum mismatch in {name}")),
                    "byte {at}: {e}"
                );
            }
        }
    }

    #[test]
    fn a_flip_in_a_section_checksum_or_the_trailer_is_named() {
        let b = sample();
        let bytes = bytes_of(&b);
        for (name, _, end) in sections(&bytes, b.shards.len()) {
            let mut bad = bytes.clone();
            bad[end - 1] ^= 0x80;
            assert!(err(&bad).contains(&format!("checksum mismatch in {name}")));
        }
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 0x01;
        assert!(err(&bad).contains("final checksum mismatch"));
    }

    #[test]
    fn wrong_magic_and_unknown_version_are_rejected() {
        let bytes = bytes_of(&sample());
        let mut bad = bytes.clone();
        bad[..8].copy_from_slice(b"CKRFTBK\x01");
        assert!(err(&bad).contains("not a checkraft backup"));
        assert!(err(b"hello").contains("not a checkraft backup"));
        let mut v2 = bytes.clone();
        v2[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(err(&v2).contains("unsupported backup format version 2"));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = bytes_of(&sample());
        bytes.push(0);
        assert!(err(&bytes).contains("after the final checksum"));
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_allocating() {
        let bytes = bytes_of(&sample());
        let mut bad = bytes[..12].to_vec();
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&bad).contains("over the limit"));
        let mut bad = bytes[..12].to_vec();
        bad.extend_from_slice(&(MAX_HEADER).to_le_bytes());
        assert!(err(&bad).contains("truncated"));
    }
}
