//! The checker's own tests: it catches each anomaly and accepts valid
//! histories.

use super::*;
use checkraft_proto::ShardDescriptor;

/// A clock for hand-made histories: `at(n)` is n ms after the start.
struct Clock(Instant);

impl Clock {
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn setup() -> (History, Clock) {
    let h = History::new();
    let c = Clock(h.t0());
    (h, c)
}

fn acked(seq: u64) -> Outcome {
    Outcome::Acked(Ack {
        seq: Some(seq),
        log_index: Some(seq + 10),
        node: Some(1),
    })
}

fn indeterminate() -> Outcome {
    Outcome::Indeterminate("timed out".into())
}

fn write(h: &History, c: &Clock, index: u32, value: bool, span: (u64, u64), outcome: Outcome) {
    h.record_writes(
        "w1",
        1,
        &[(index, value)],
        WriteApi::Node,
        c.at(span.0),
        c.at(span.1),
        outcome,
    );
}

fn shard_read(boxes: &[u32], applied_index: u64, seq: u64) -> ShardRead {
    let mut b = Bitmap::new();
    for &i in boxes {
        b.add(i);
    }
    ShardRead {
        descriptor: ShardDescriptor {
            shard: 1,
            start: 0,
            end: 1000,
            epoch: 1,
        },
        seq,
        applied_index,
        start: 0,
        end: 1000,
        bitmap: b.serialize::<Portable>(),
        reshape: Default::default(),
    }
}

fn finals(h: &History, boxes: &[u32]) {
    for node in 1..=3 {
        h.record_final(node, &shard_read(boxes, 100, 50));
    }
}

#[test]
fn a_valid_history_passes() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    write(&h, &c, 1, false, (20, 30), acked(2));
    write(&h, &c, 2, true, (0, 10), acked(3));
    h.record_shard_read(
        "r",
        ReadApi::Linearizable,
        1,
        c.at(15),
        c.at(18),
        &shard_read(&[1, 2], 5, 3),
    );
    // Concurrent with the second write of box 1: either value.
    h.record_shard_read(
        "r",
        ReadApi::Linearizable,
        1,
        c.at(25),
        c.at(26),
        &shard_read(&[1, 2], 5, 3),
    );
    h.record_shard_read(
        "r",
        ReadApi::Linearizable,
        2,
        c.at(31),
        c.at(33),
        &shard_read(&[2], 6, 4),
    );
    // A replica may lag arbitrarily.
    h.record_shard_read(
        "r",
        ReadApi::Replica,
        3,
        c.at(40),
        c.at(41),
        &shard_read(&[], 0, 0),
    );
    finals(&h, &[2]);
    let report = h.check();
    assert!(report.ok(), "{}", report.summary(10));
    assert_eq!(report.writes_acked, 3);
    assert_eq!(report.final_states, 3);
    assert_eq!(report.final_boxes_checked, 6);
}

#[test]
fn indeterminate_writes_may_or_may_not_have_happened() {
    for landed in [false, true] {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        write(&h, &c, 1, false, (20, 30), indeterminate());
        // A never-acknowledged check of box 2.
        write(&h, &c, 2, true, (0, 10), indeterminate());
        // A read long after may see either value of both.
        let seen: &[u32] = if landed { &[2] } else { &[1] };
        h.record_shard_read(
            "r",
            ReadApi::Linearizable,
            1,
            c.at(500),
            c.at(501),
            &shard_read(seen, 3, 2),
        );
        finals(&h, seen);
        let report = h.check();
        assert!(report.ok(), "landed={landed}: {}", report.summary(10));
        assert_eq!(report.writes_indeterminate, 2);
    }
}

#[test]
fn an_indeterminate_write_may_land_after_its_client_gave_up() {
    // Box 1: an earlier write timed out, then a later one was
    // acknowledged. The first may still land later (proposed when a
    // paused node resumes), so either final value is possible.
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), indeterminate());
    write(&h, &c, 1, false, (20, 30), acked(1));
    finals(&h, &[1]);
    assert!(h.check().ok());
}

#[test]
fn failed_writes_never_happened() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), Outcome::Failed("429".into()));
    h.record_final(1, &shard_read(&[1], 5, 1));
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::LostWrite),
        1,
        "{}",
        report.summary(10)
    );
    assert!(report.anomalies[0]
        .description
        .contains("no write ever set it to true"));
}

#[test]
fn it_catches_a_lost_write() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    write(&h, &c, 1, false, (20, 30), acked(2));
    write(&h, &c, 7, true, (0, 10), acked(3));
    // Box 1 kept the earlier value, box 7 lost its only write.
    finals(&h, &[1]);
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::LostWrite),
        6,
        "{}",
        report.summary(10)
    );
    assert_eq!(report.anomalies.len(), 6);
    let text = report.summary(10);
    assert!(text.contains("box 1: node 1 ends with true"), "{text}");
    assert!(text.contains("box 7: node 3 ends with false"), "{text}");
    assert!(text.contains("seq 2"), "{text}");
}

#[test]
fn a_set_box_that_no_write_set_is_reported() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    h.record_final(1, &shard_read(&[1, 999], 5, 1));
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::LostWrite),
        1,
        "{}",
        report.summary(10)
    );
    assert!(report.anomalies[0].description.contains("box 999"));
}

#[test]
fn it_catches_a_stale_linearizable_read() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    write(&h, &c, 1, false, (20, 30), acked(2));
    // Invoked after the second write completed, but shows the first.
    h.record_shard_read(
        "r",
        ReadApi::Linearizable,
        2,
        c.at(31),
        c.at(35),
        &shard_read(&[1], 1, 1),
    );
    // The same from a replica is allowed.
    h.record_shard_read(
        "r",
        ReadApi::Replica,
        2,
        c.at(31),
        c.at(35),
        &shard_read(&[1], 1, 1),
    );
    finals(&h, &[]);
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::StaleRead),
        1,
        "{}",
        report.summary(10)
    );
    let text = &report.anomalies[0].description;
    assert!(
        text.contains("node linearizable read from node 2"),
        "{text}"
    );
    assert!(text.contains("saw box 1 = true"), "{text}");
    assert!(text.contains("seq 2"), "{text}");
}

#[test]
fn it_catches_a_gateway_that_does_not_show_its_own_write() {
    let (h, c) = setup();
    h.record_writes(
        "gw",
        1,
        &[(5, true)],
        WriteApi::Gateway(1),
        c.at(0),
        c.at(10),
        acked(1),
    );
    // Gateway 1 must show it; gateway 2 need not.
    h.record_box_read("gw", ReadApi::Gateway(1), 5, false, c.at(11), c.at(12));
    h.record_box_read("gw", ReadApi::Gateway(2), 5, false, c.at(11), c.at(12));
    // Concurrent with the PUT: either.
    h.record_box_read("gw", ReadApi::Gateway(1), 5, false, c.at(5), c.at(12));
    h.record_box_read("gw", ReadApi::Gateway(1), 5, true, c.at(13), c.at(14));
    finals(&h, &[5]);
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::StaleRead),
        1,
        "{}",
        report.summary(10)
    );
    assert!(report.anomalies[0].description.starts_with("gateway 1 GET"));
}

#[test]
fn it_catches_a_phantom_read() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (100, 110), acked(1));
    // A replica shows box 1 before anyone tried to set it.
    h.record_shard_read(
        "r",
        ReadApi::Replica,
        1,
        c.at(10),
        c.at(20),
        &shard_read(&[1], 1, 1),
    );
    finals(&h, &[1]);
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::StaleRead),
        1,
        "{}",
        report.summary(10)
    );
    assert!(report.anomalies[0]
        .description
        .contains("no write of true was invoked before the read completed"));
}

#[test]
fn it_catches_a_divergence_at_an_equal_applied_index() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    write(&h, &c, 2, true, (0, 10), indeterminate());
    h.record_replica_state(1, &shard_read(&[1], 7, 1), c.at(20));
    h.record_replica_state(2, &shard_read(&[1], 7, 1), c.at(20));
    // Same applied index and seq, different boxes.
    h.record_replica_state(3, &shard_read(&[1, 2], 7, 1), c.at(21));
    finals(&h, &[1, 2]);
    let report = h.check();
    // Once by applied index, once by seq.
    assert_eq!(
        report.count(AnomalyKind::Divergence),
        2,
        "{}",
        report.summary(10)
    );
    assert!(report.anomalies[0]
        .description
        .contains("applied index 7 differ"));
}

#[test]
fn it_catches_replicas_that_differ_at_the_end() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    h.record_final(1, &shard_read(&[1], 9, 1));
    h.record_final(2, &shard_read(&[1], 9, 1));
    h.record_final(3, &shard_read(&[1], 8, 1));
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::Divergence),
        1,
        "{}",
        report.summary(10)
    );
    assert!(report.anomalies[0]
        .description
        .contains("still differ at the end"));
}

#[test]
fn equal_content_in_different_bytes_is_no_divergence() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    let a = shard_read(&(0..600).collect::<Vec<_>>(), 3, 1);
    let mut b = a.clone();
    let mut bitmap = Bitmap::try_deserialize::<Portable>(&b.bitmap).unwrap();
    bitmap.run_optimize();
    b.bitmap = bitmap.serialize::<Portable>();
    assert_ne!(a.bitmap, b.bitmap, "run containers serialize differently");
    h.record_replica_state(1, &a, c.at(20));
    h.record_replica_state(2, &b, c.at(20));
    let report = h.check();
    assert_eq!(
        report.count(AnomalyKind::Divergence),
        0,
        "{}",
        report.summary(10)
    );
}

#[test]
fn longest_gap_counts_from_the_fault_to_the_end() {
    let (h, c) = setup();
    write(&h, &c, 1, true, (0, 10), acked(1));
    write(&h, &c, 2, true, (100, 400), acked(2));
    write(&h, &c, 3, true, (410, 420), indeterminate());
    write(&h, &c, 4, true, (450, 500), acked(3));
    // From 50: writes invoked before 50 do not count.
    let gap = h.longest_ack_gap(c.at(50), c.at(1000), |_| true);
    assert_eq!(gap, Duration::from_millis(500));
    let gap = h.longest_ack_gap(c.at(50), c.at(600), |_| true);
    assert_eq!(gap, Duration::from_millis(350));
}
