//! Structure-aware byte mutations.
//!
//! Each call applies a stack of 1, 2, 4 or 8 operations, chosen uniformly
//! from:
//!
//! | op | what it does |
//! |---|---|
//! | bit flip | flips one bit |
//! | interesting byte | sets a byte to `0x00 0x01 0x7f 0x80 0xff 0xfe`, or bincode's varint markers `0xfb 0xfc 0xfd` |
//! | interesting word | writes a little-endian u16/u32/u64 boundary value (0, 1, MAX, MAX/2, 2^15, 2^16, 2^31, 2^32, …) |
//! | arithmetic | adds or subtracts 1..=35 to a byte, u16 or u32 |
//! | length inflation | finds a plausible length or count (a u8, u16 or u32 whose value fits in the input) and inflates it: +1, ×2, ×256, max, or re-encodes a small bincode varint as a huge `0xfc`/`0xfd` one |
//! | truncation | cuts the input anywhere, or one to eight bytes short |
//! | erase | removes a range |
//! | insert | inserts random bytes or a run of one byte |
//! | duplication | copies a block and inserts it again, up to 8 times |
//! | overwrite | copies a block over another place of the input |
//! | splice | joins this input's head to another corpus input's tail, or inserts a piece of another input |
//! | dictionary | inserts or overwrites a token of the target's dictionary (field names, type bytes, magic) |
//!
//! The result never exceeds `max_len`.

use crate::rng::Rng;

const BYTES: [u8; 12] = [
    0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff, 0xfa, 0xfb, 0xfc, 0xfd,
];
const WORDS: [u64; 16] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Mutation context: the dictionary and the length cap.
pub struct Mutator<'a> {
    /// Tokens worth inserting.
    pub dict: &'a [&'a [u8]],
    /// Largest input produced.
    pub max_len: usize,
}

impl Mutator<'_> {
    /// Applies a stack of mutations to `data`; `others` is the corpus to
    /// splice from.
    pub fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
        let stack = 1 << rng.below(4);
        for _ in 0..stack {
            self.one(rng, data, others);
            if data.len() > self.max_len {
                data.truncate(self.max_len);
            }
        }
    }

    fn one(&self, rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
        if data.is_empty() {
            let n = 1 + rng.below(16);
            data.extend((0..n).map(|_| rng.next_u64() as u8));
            return;
        }
        let len = data.len();
        match rng.below(13) {
            0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(len);
                data[at] = *rng.pick(&BYTES);
            }
            2 => {
                let width = *rng.pick(&[2usize, 4, 8]);
                let mut v = *rng.pick(&WORDS);
                if rng.one_in(2) {
                    v = v.wrapping_sub(rng.below(2) as u64);
                }
                write_le(data, rng.below(len), width, v);
            }
            3 => {
                let width = *rng.pick(&[1usize, 2, 4]);
                let at = rng.below(len);
                let delta = 1 + rng.below(35) as u64;
                let v = read_le(data, at, width);
                let v = if rng.one_in(2) {
                    v.wrapping_add(delta)
                } else {
                    v.wrapping_sub(delta)
                };
                write_le(data, at, width, v);
            }
            4 => inflate_length(rng, data),
            5 => {
                let cut = if rng.one_in(2) {
                    len.saturating_sub(1 + rng.below(8))
                } else {
                    rng.below(len)
                };
                data.truncate(cut);
            }
            6 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            7 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = if rng.one_in(2) {
                    vec![*rng.pick(&BYTES); n]
                } else {
                    (0..n).map(|_| rng.next_u64() as u8).collect()
                };
                data.splice(at..at, bytes);
            }
            8 => {
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(256));
                let block = data[from..from + n].to_vec();
                let times = 1 + rng.below(8);
                let at = rng.below(len + 1);
                let room = self.max_len.saturating_sub(len) / n;
                for _ in 0..times.min(room) {
                    data.splice(at..at, block.iter().copied());
                }
            }
            9 => {
                let from = rng.below(len);
                let to = rng.below(len);
                let n = 1 + rng.below((len - from).min(len - to).min(64));
                data.copy_within(from..from + n, to);
            }
            10 => {
                let other = rng.pick(others);
                if other.is_empty() {
                    return;
                }
                if rng.one_in(2) {
                    let head = rng.below(len + 1);
                    let tail = rng.below(other.len());
                    data.truncate(head);
                    data.extend_from_slice(&other[tail..]);
                } else {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(256));
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            _ => {
                if self.dict.is_empty() {
                    let at = rng.below(len);
                    data[at] = rng.next_u64() as u8;
                    return;
                }
                let token = *rng.pick(self.dict);
                let at = rng.below(len + 1);
                if rng.one_in(2) || at + token.len() > len {
                    data.splice(at..at, token.iter().copied());
                } else {
                    data[at..at + token.len()].copy_from_slice(token);
                }
            }
        }
    }
}

/// Little-endian read of up to 8 bytes at `at` (missing bytes are 0).
fn read_le(data: &[u8], at: usize, width: usize) -> u64 {
    data[at..]
        .iter()
        .take(width)
        .enumerate()
        .fold(0, |v, (i, &b)| v | (u64::from(b) << (8 * i)))
}

/// Little-endian write of `width` bytes at `at`, clipped at the end.
fn write_le(data: &mut [u8], at: usize, width: usize, v: u64) {
    for (i, b) in data[at..].iter_mut().take(width).enumerate() {
        *b = (v >> (8 * i)) as u8;
    }
}

/// Finds something that looks like a length (a non-zero value no larger
/// than the input) and makes it larger, or re-encodes a small bincode
/// varint as a wide one announcing a huge value.
fn inflate_length(rng: &mut Rng, data: &mut Vec<u8>) {
    let len = data.len();
    let width = *rng.pick(&[1usize, 2, 4]);
    let mut at = rng.below(len);
    for _ in 0..32 {
        let v = read_le(data, at, width);
        if v > 0 && v <= len as u64 {
            break;
        }
        at = rng.below(len);
    }
    let v = read_le(data, at, width);
    if width == 1 && data[at] < 0xfb && rng.one_in(3) {
        // bincode varint: 0xfb u16, 0xfc u32, 0xfd u64.
        let wide: Vec<u8> = match rng.below(3) {
            0 => [vec![0xfb], 0xffffu16.to_le_bytes().to_vec()].concat(),
            1 => [
                vec![0xfc],
                (u32::MAX - rng.below(2) as u32).to_le_bytes().to_vec(),
            ]
            .concat(),
            _ => [vec![0xfd], (v << 40 | 0xffff).to_le_bytes().to_vec()].concat(),
        };
        data.splice(at..at + 1, wide);
        return;
    }
    let max = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let new = match rng.below(5) {
        0 => v + 1,
        1 => v.saturating_mul(2).max(1),
        2 => v.saturating_mul(256),
        3 => max,
        _ => v + len as u64,
    };
    write_le(data, at, width, new.min(max));
}
