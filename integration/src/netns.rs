//! [`Hosts`]: network namespaces as separate machines on one bridge.
//!
//! Each host is a namespace with its own loopback and an `eth0` holding
//! its own address on a private /24 (`10.77.K.0/24`, `K` from the test's
//! pid); the other end of its veth pair is plugged into a bridge in the
//! test's own namespace, which holds `10.77.K.1`, so the test (and the
//! [`crate::DelayRelay`]s it runs) reaches every host and every host
//! reaches the test. [`Hosts::command`] runs a program inside a host
//! (`ip netns exec`); [`Hosts::cut`] takes a host's link down (a
//! partition: it reaches nothing and nothing reaches it) and
//! [`Hosts::heal`] brings it back.
//!
//! Needs root and `ip` (iproute2). Dropping [`Hosts`] deletes every
//! namespace (which removes their veths) and the bridge, also when the
//! test fails; names carry the test's pid (`ck<pid>-<host>`), and what a
//! killed test process left behind is removed by the next run.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// A host: a network namespace with one address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The host's name in the test (`n1`, `gw1`, ...).
    pub name: String,
    /// The namespace (`ip netns` name).
    pub netns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    /// The root-side end of its veth pair (in the test's namespace).
    veth: String,
}

/// Namespaces joined by a bridge; see the module docs.
pub struct Hosts {
    bridge: String,
    gateway: Ipv4Addr,
    hosts: Vec<Host>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Hosts {
    /// Creates one namespace per `(name, octet)`, the host at
    /// `10.77.K.octet` (octets 2 to 254; 1 is the test's). An `Err` says
    /// why namespaces cannot be made here (the caller skips); what was
    /// made is removed first.
    pub fn create(names: &[(&str, u8)]) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root".into());
        }
        remove_stale();
        let run = std::process::id();
        let prefix = format!("ck{run}");
        let subnet = (run % 250 + 1) as u8;
        let bridge = format!("{prefix}br");
        let mut hosts = Self {
            bridge: bridge.clone(),
            gateway: Ipv4Addr::new(10, 77, subnet, 1),
            hosts: Vec::new(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", hosts.gateway),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for (name, octet) in names {
            let netns = format!("{prefix}-{name}");
            let veth = format!("{prefix}{name}");
            let addr = Ipv4Addr::new(10, 77, subnet, *octet);
            ip(&["netns", "add", &netns])?;
            hosts.hosts.push(Host {
                name: name.to_string(),
                netns: netns.clone(),
                addr,
                veth: veth.clone(),
            });
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// The test's own address on the bridge (where relays listen).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// A command running `program` inside host `name`'s namespace.
    pub fn command(&self, name: &str, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.host(name).netns])
            .arg(program);
        cmd
    }

    /// Takes host `name`'s link down: it is cut off from every other host
    /// and from the test.
    pub fn cut(&self, name: &str) {
        ip(&["link", "set", &self.host(name).veth, "down"]).expect("link down");
    }

    /// Brings host `name`'s link back up.
    pub fn heal(&self, name: &str) {
        ip(&["link", "set", &self.host(name).veth, "up"]).expect("link up");
    }

    /// Limits the bandwidth towards host `name` with a token bucket
    /// (`tc qdisc ... tbf`; `rate` as tc spells it, e.g. `100mbit`).
    pub fn limit_rate(&self, name: &str, rate: &str) -> Result<(), String> {
        let out = Command::new("tc")
            .args(["qdisc", "add", "dev", &self.host(name).veth, "root", "tbf"])
            .args(["rate", rate, "burst", "256kb", "latency", "50ms"])
            .output()
            .map_err(|e| format!("running tc: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

/// Removes the namespaces and bridge of earlier runs whose test process
/// is gone (killed before its `Drop` could run): names carry the pid.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix("ck")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("removing namespace {name}, left by test process {pid}");
        let _ = ip(&["netns", "del", name]);
        let _ = ip(&["link", "del", &format!("ck{pid}br")]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &self.hosts {
            if let Err(e) = ip(&["netns", "del", &host.netns]) {
                eprintln!("cleanup: {e}");
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("cleanup: {e}");
        }
        // A veth left behind by a namespace that could not be deleted.
        for host in &self.hosts {
            let _ = ip(&["link", "del", &host.veth]);
        }
    }
}
