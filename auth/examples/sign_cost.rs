//! What a proof costs: signs and verifies bodies of typical sizes (a
//! heartbeat, a write batch, a large append) and prints the time per call.
//!
//! `cargo run --release -p checkraft-auth --example sign_cost`

use std::time::Instant;

use checkraft_auth::{Proof, Role, Secret, Verifier};

fn main() {
    let secret = Secret::new("cluster_secret", "0123456789abcdef0123456789abcdef").unwrap();
    let verifier = Verifier::new(secret.clone(), None);
    for size in [64usize, 1 << 10, 16 << 10, 256 << 10] {
        let body = vec![7u8; size];
        let rounds = (64 << 20) / size.max(1024);
        let started = Instant::now();
        let mut header = String::new();
        for _ in 0..rounds {
            header =
                Proof::sign(&secret, Role::Node, 1, "POST", "/raft/3/append", &body).to_header();
        }
        let sign = started.elapsed() / rounds as u32;
        let started = Instant::now();
        for _ in 0..rounds {
            verifier
                .verify_at(Some(&header), "POST", "/raft/3/append", &body, 1)
                .unwrap();
        }
        let verify = started.elapsed() / rounds as u32;
        println!("body {size:>7} B: sign {sign:>9.2?}, verify {verify:>9.2?}");
    }
}
