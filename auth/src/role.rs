//! [`Role`]: which kind of cluster process signed a request.

use std::fmt;

/// The kind of process behind a signed request. Each role has its own
/// secret, so a verified role cannot be claimed by a holder of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A node: raft RPCs, forwarded metadata commands, everything.
    Node,
    /// A gateway: shard reads, writes and change streams, and map reads.
    Gateway,
}

impl Role {
    /// The name used in the header and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Gateway => "gateway",
        }
    }

    /// Parses a header's role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "node" => Some(Role::Node),
            "gateway" => Some(Role::Gateway),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
