//! The bodies of `SetMany` (client, type `0x05`) and `AckMany` (gateway,
//! type `0x89`) (`docs/protocol.md`, "SetMany").
//!
//! - SetMany, after its `request_id`: `varint count` (1 to
//!   [`MAX_SETS_PER_MESSAGE`]), then per box `varint (gap << 1 | checked)`
//!   in strictly ascending index order, where `gap` is the index minus
//!   `next` (0 for the first box, the previous index + 1 after it): the
//!   same gap code as an Update's list form, over absolute indices. Boxes
//!   next to each other cost one byte each; duplicates cannot be written.
//! - AckMany, after its `request_id`: `varint count` of runs (1 to
//!   [`MAX_SETS_PER_MESSAGE`]), then per run `varint len` (at least 1),
//!   `u8 status`, `varint seq`. The runs cover the SetMany's boxes in its
//!   order; their lengths add up to at most [`MAX_SETS_PER_MESSAGE`], and
//!   two adjacent runs never have the same status and seq (one encoding
//!   per message).

use super::wire::{put_varint, Reader};
use super::{AckRun, AckStatus, SetEntry, WsError, MAX_SETS_PER_MESSAGE};

/// Type byte of SetMany.
pub const SET_MANY: u8 = 0x05;
/// Type byte of AckMany.
pub const ACK_MANY: u8 = 0x89;

/// Appends a SetMany's `count` and entries. Panics on no entries, more
/// than [`MAX_SETS_PER_MESSAGE`], or indices not strictly ascending (a
/// caller bug: [`super::ClientMessage::set_many`] sorts and deduplicates).
pub fn encode_sets(out: &mut Vec<u8>, sets: &[SetEntry]) {
    assert!(
        (1..=MAX_SETS_PER_MESSAGE).contains(&sets.len()),
        "a SetMany holds 1 to {MAX_SETS_PER_MESSAGE} boxes, not {}",
        sets.len()
    );
    put_varint(out, sets.len() as u64);
    let mut next = 0u64;
    for s in sets {
        let index = u64::from(s.index);
        assert!(
            index >= next,
            "SetMany indices must ascend strictly; got {index} after {}",
            next.wrapping_sub(1)
        );
        put_varint(out, ((index - next) << 1) | u64::from(s.checked));
        next = index + 1;
    }
}

/// Reads a SetMany's `count` and entries, strictly: a count of 1 to
/// [`MAX_SETS_PER_MESSAGE`], every index within 32 bits.
pub fn decode_sets(r: &mut Reader<'_>) -> Result<Vec<SetEntry>, WsError> {
    let count = r.varint("count")?;
    if count == 0 || count > MAX_SETS_PER_MESSAGE as u64 {
        return Err(WsError::BadValue {
            field: "set_many count",
            value: count,
        });
    }
    let mut sets = Vec::with_capacity(count as usize);
    let mut next = 0u64;
    for _ in 0..count {
        let item = r.varint("set_many entry")?;
        let index = next + (item >> 1);
        let index = u32::try_from(index).map_err(|_| WsError::BadValue {
            field: "set_many index",
            value: index,
        })?;
        sets.push(SetEntry {
            index,
            checked: item & 1 == 1,
        });
        next = u64::from(index) + 1;
    }
    Ok(sets)
}

/// Appends an AckMany's runs. Panics on no runs, an empty run, lengths
/// adding up past [`MAX_SETS_PER_MESSAGE`], or two adjacent equal
/// outcomes (a gateway bug: [`runs_of`] builds them right).
pub fn encode_runs(out: &mut Vec<u8>, runs: &[AckRun]) {
    let total: u64 = runs.iter().map(|r| u64::from(r.len)).sum();
    assert!(
        !runs.is_empty() && total <= MAX_SETS_PER_MESSAGE as u64,
        "an AckMany answers 1 to {MAX_SETS_PER_MESSAGE} boxes, not {total}"
    );
    put_varint(out, runs.len() as u64);
    for (i, run) in runs.iter().enumerate() {
        assert!(run.len >= 1, "an AckMany run is never empty");
        assert!(
            i == 0 || !same_outcome(&runs[i - 1], run),
            "adjacent AckMany runs must differ"
        );
        put_varint(out, u64::from(run.len));
        out.push(run.status.code());
        put_varint(out, run.seq);
    }
}

fn same_outcome(a: &AckRun, b: &AckRun) -> bool {
    a.status == b.status && a.seq == b.seq
}

/// Reads an AckMany's runs, strictly (see the module comment).
pub fn decode_runs(r: &mut Reader<'_>) -> Result<Vec<AckRun>, WsError> {
    let count = r.varint("count")?;
    if count == 0 || count > MAX_SETS_PER_MESSAGE as u64 {
        return Err(WsError::BadValue {
            field: "ack_many count",
            value: count,
        });
    }
    let mut runs: Vec<AckRun> = Vec::with_capacity(count as usize);
    let mut total = 0u64;
    for _ in 0..count {
        let len = r.varint("run len")?;
        // Saturating: a hostile length near 2^64 must be an error, not
        // an overflow (found by the fuzz smoke test).
        total = total.saturating_add(len);
        if len == 0 || total > MAX_SETS_PER_MESSAGE as u64 {
            return Err(WsError::BadValue {
                field: "run len",
                value: len,
            });
        }
        let run = AckRun {
            len: len as u32,
            status: AckStatus::from_code(r.u8("status")?)?,
            seq: r.varint("seq")?,
        };
        if runs.last().is_some_and(|last| same_outcome(last, &run)) {
            return Err(WsError::NotCanonical(
                "adjacent AckMany runs have the same outcome",
            ));
        }
        runs.push(run);
    }
    Ok(runs)
}

/// The runs of per-box outcomes `(status, seq)` in order: adjacent equal
/// outcomes merged. Empty for no outcomes.
pub fn runs_of(outcomes: impl IntoIterator<Item = (AckStatus, u64)>) -> Vec<AckRun> {
    let mut runs: Vec<AckRun> = Vec::new();
    for (status, seq) in outcomes {
        match runs.last_mut() {
            Some(last) if last.status == status && last.seq == seq => last.len += 1,
            _ => runs.push(AckRun {
                len: 1,
                status,
                seq,
            }),
        }
    }
    runs
}
