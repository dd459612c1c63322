//! [`Partition`]: cutting nodes off from each other with iptables, on
//! loopback, while clients (gateways, the test) still reach them.
//!
//! It needs a [`Cluster::start_as_users`] cluster: each node runs under
//! its own uid, so an `OUTPUT` rule can match a node's packets by owner.
//! [`Partition::isolate`] drops every new request between node `id` and
//! its peers, both ways (its requests to their ports, theirs to its port),
//! and [`Partition::partition`] does the same between two nodes only;
//! processes running as other users, such as gateways and the test, are
//! untouched. All rules live in a chain of this partition's own, which
//! [`Partition::heal`] empties and `Drop` removes, even when the test
//! fails.

use std::process::Command;

use crate::cluster::{node_uid, Cluster};

/// A set of iptables rules; removed on drop.
pub struct Partition {
    chain: String,
}

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl Partition {
    /// A new, empty partition. `None`, with the reason printed, when
    /// iptables is missing or refuses (not root).
    pub fn new() -> Option<Self> {
        let chain = format!("CHECKRAFT-{}", std::process::id());
        if !iptables(&["-N", &chain]) {
            eprintln!("SKIPPED: cannot create an iptables chain (iptables missing, or not root)");
            return None;
        }
        if !iptables(&["-I", "OUTPUT", "-o", "lo", "-j", &chain]) {
            iptables(&["-X", &chain]);
            eprintln!("SKIPPED: cannot hook an iptables chain into OUTPUT");
            return None;
        }
        Some(Self { chain })
    }

    /// Cuts node `id` off from every other node of `cluster`.
    pub fn isolate(&self, cluster: &Cluster, id: u64) {
        for peer in cluster.members().into_keys().filter(|p| *p != id) {
            self.partition(cluster, id, peer);
        }
    }

    /// Cuts nodes `a` and `b` off from each other; both still reach
    /// every other node.
    pub fn partition(&self, cluster: &Cluster, a: u64, b: u64) {
        assert!(
            cluster.runs_as_users(),
            "a partition needs Cluster::start_as_users"
        );
        let (a_uid, b_uid) = (node_uid(a).to_string(), node_uid(b).to_string());
        let (a_port, b_port) = (cluster.port(a).to_string(), cluster.port(b).to_string());
        for (uid, port) in [(&a_uid, &b_port), (&b_uid, &a_port)] {
            let rule = [
                "-A",
                &self.chain,
                "-p",
                "tcp",
                "-m",
                "owner",
                "--uid-owner",
                uid,
                "--dport",
                port,
                "-j",
                "DROP",
            ];
            assert!(iptables(&rule), "iptables {rule:?}");
        }
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&self) {
        assert!(iptables(&["-F", &self.chain]), "flush {}", self.chain);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        iptables(&["-D", "OUTPUT", "-o", "lo", "-j", &self.chain]);
        iptables(&["-F", &self.chain]);
        iptables(&["-X", &self.chain]);
    }
}
