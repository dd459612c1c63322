//! `c10m`'s projection: the per-connection costs measured on this machine,
//! multiplied out to [`TARGET_CONNECTIONS`] on one server and set next to
//! that server's budget ([`SERVER`]).
//!
//! Pure functions over the figures [`super::report`] already has; nothing
//! here measures.
//!
//! ## The wire-bytes estimate
//! The gateways count websocket *payload* bytes, frames and flushes
//! (`ws_bytes_out_total`, `ws_messages_out_total`, `ws_flushes_total`);
//! the clients count the websocket header of every frame they receive.
//! On a real link each connection's outbound traffic is, per second:
//!
//! - payload bytes (gateway counter);
//! - websocket frame headers: 2 B for a payload under 126 B, 4 B up to
//!   64 KiB, 10 B beyond, unmasked server to client ([`ws_header_len`],
//!   counted per frame by the clients);
//! - per TCP segment [`SEGMENT_OVERHEAD`] = 90 B: IPv4 20 + TCP 20 + the
//!   timestamp option 12, plus Ethernet 14 + FCS 4 + preamble 8 +
//!   inter-frame gap 12;
//! - segments ≈ max(flushes, bytes / [`MSS`]): every flush ends with a
//!   socket write, and a write larger than the MSS takes more segments.
//!   The gateway leaves Nagle on (no `TCP_NODELAY`), but with a few
//!   writes per second per connection nothing is unacknowledged when the
//!   next one comes, so each write leaves at once. Either way it is an
//!   estimate: a flush over the MSS whose size is not a multiple of it
//!   takes one more segment, Nagle can merge writes, and the gateway
//!   counts flushes, not socket writes. At the small flushes measured (a
//!   few frames each) these are small.
//!
//! Inbound, per connection: the clients' Sets (payload, 6 B masked header,
//! one segment each) plus one pure ACK (90 B on the link) per outbound
//! segment, an upper bound since delayed ACKs often cover two. A 1 Gbit/s
//! port is full duplex: each direction is checked against it.
//!
//! ## What the projection assumes
//! - Per-connection costs stay what they were at the measured count. The
//!   idle parts (RSS, kernel memory, `Stats`) do; the traffic of a hot
//!   chunk's viewers does not: with the same per-user rate and the same
//!   concentration, a hot chunk gets `TARGET / measured` times more
//!   writes. The gateway's per-connection byte budget
//!   (`ws_budget_bytes_per_second`) caps what such a viewer receives by
//!   coalescing longer, so bytes stay bounded while latency grows.
//! - Kernel memory is measured machine-wide over both loopback ends of
//!   each connection; the server holds one end, so RAM counts half of it
//!   ([`Projection::ram_gib_both_ends`] gives the other bound).
//! - Node CPU scales with the total write rate, not with connections; the
//!   nodes need not run on the gateway's server, so it is shown, not
//!   budgeted.

use std::fmt::Write as _;

use serde::Serialize;

/// Connections on one server in the projection.
pub const TARGET_CONNECTIONS: u64 = 2_500_000;
/// Click → visible at another client, p99, the target (ms).
pub const P99_TARGET_MS: f64 = 100.0;
/// TCP maximum segment size on a 1500-byte Ethernet MTU with the
/// timestamp option: 1500 - 20 (IPv4) - 20 (TCP) - 12 (timestamps).
pub const MSS: f64 = 1448.0;
/// Bytes on the link per TCP segment besides its payload: IPv4 20, TCP
/// 20, timestamps 12, Ethernet header 14, FCS 4, preamble 8, gap 12.
pub const SEGMENT_OVERHEAD: f64 = 20.0 + 20.0 + 12.0 + 14.0 + 4.0 + 8.0 + 12.0;
/// Websocket header of a client's (masked) small frame: 2 + 4-byte mask.
pub const CLIENT_FRAME_HEADER: f64 = 6.0;

/// The one server a C10M deployment's gateway tier should fit on.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// What it is.
    pub name: &'static str,
    /// Cores (physical; the measured "cores" are this machine's vCPUs).
    pub cores: f64,
    /// RAM, GiB.
    pub ram_gib: f64,
    /// Network port, Gbit/s in each direction.
    pub gbit_per_s: f64,
    /// Price, € a month.
    pub eur_per_month: f64,
}

/// The budget (issue 13): about €75 a month, 1 Gbit/s. The cores and RAM
/// are an assumption: a Hetzner AX-class dedicated server (8-core AMD
/// Ryzen, 64 GB) costs about that.
pub const SERVER: Server = Server {
    name: "a Hetzner AX-class dedicated server, assumed 8 cores, 64 GiB, 1 Gbit/s",
    cores: 8.0,
    ram_gib: 64.0,
    gbit_per_s: 1.0,
    eur_per_month: 75.0,
};

/// Length of the websocket header of an unmasked (server to client)
/// frame with `payload` bytes (RFC 6455 §5.2).
pub fn ws_header_len(payload: u64) -> u64 {
    match payload {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    }
}

/// What was measured, per connection (rates per second, over the
/// measured phase).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measured {
    /// Connections measured.
    pub connections: u64,
    /// Gateway CPU, µs per second.
    pub gateway_cpu_us_per_s: f64,
    /// Gateway RSS, bytes.
    pub rss_bytes: f64,
    /// Kernel memory (slab + TCP buffers), both loopback ends, bytes.
    pub kernel_bytes_both_ends: f64,
    /// Websocket payload bytes sent by the gateway.
    pub payload_out: f64,
    /// Websocket frames sent by the gateway.
    pub frames_out: f64,
    /// Gateway socket flushes (each ends with a write).
    pub flushes_out: f64,
    /// Websocket header bytes of the frames received (client count;
    /// `None`: not counted, estimated from the mean frame size).
    pub header_bytes_out: Option<f64>,
    /// Websocket payload bytes received by the gateway.
    pub payload_in: f64,
    /// Websocket frames received by the gateway.
    pub frames_in: f64,
    /// Nodes' CPU (all three), cores, over all connections.
    pub node_cores: f64,
    /// Click → visible p99, ms, and its sample count.
    pub seen_p99_ms: f64,
    /// Samples behind [`Self::seen_p99_ms`].
    pub seen_samples: u64,
}

/// The estimated bytes on the link per connection per second.
#[derive(Debug, Clone, Serialize)]
pub struct Wire {
    /// Websocket payload, outbound.
    pub payload: f64,
    /// Websocket frame headers, outbound.
    pub ws_headers: f64,
    /// TCP segments, outbound.
    pub segments: f64,
    /// TCP/IP and Ethernet bytes of those segments.
    pub tcp_ip_ethernet: f64,
    /// All of the above: outbound bytes on the link.
    pub outbound: f64,
    /// Inbound bytes on the link: Sets and the ACKs of outbound segments.
    pub inbound: f64,
}

/// Estimates the bytes on the link per connection per second (see the
/// module overview).
pub fn wire(m: &Measured) -> Wire {
    let ws_headers = m.header_bytes_out.unwrap_or_else(|| {
        let mean = match m.frames_out > 0.0 {
            true => (m.payload_out / m.frames_out).round() as u64,
            false => 0,
        };
        m.frames_out * ws_header_len(mean) as f64
    });
    let stream = m.payload_out + ws_headers;
    let segments = m.flushes_out.max(stream / MSS);
    let tcp_ip_ethernet = segments * SEGMENT_OVERHEAD;
    let sets = m.payload_in + m.frames_in * (CLIENT_FRAME_HEADER + SEGMENT_OVERHEAD);
    Wire {
        payload: m.payload_out,
        ws_headers,
        segments,
        tcp_ip_ethernet,
        outbound: stream + tcp_ip_ethernet,
        inbound: sets + segments * SEGMENT_OVERHEAD,
    }
}

/// A projected figure next to its budget.
#[derive(Debug, Clone, Serialize)]
pub struct Projected {
    /// At [`TARGET_CONNECTIONS`].
    pub value: f64,
    /// The server's budget.
    pub budget: f64,
    /// `value <= budget`.
    pub fits: bool,
}

impl Projected {
    fn new(value: f64, budget: f64) -> Self {
        Self {
            value,
            budget,
            fits: value.is_finite() && value <= budget,
        }
    }
}

/// The projection of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    /// Connections projected to.
    pub target_connections: u64,
    /// The server assumed.
    pub server: Server,
    /// The per-connection figures it starts from.
    pub measured: Measured,
    /// Their wire estimate.
    pub wire: Wire,
    /// Gateway cores.
    pub gateway_cores: Projected,
    /// Gateway RSS plus the server's end of kernel memory, GiB.
    pub ram_gib: Projected,
    /// Gateway RSS plus kernel memory of both ends, GiB (upper bound).
    pub ram_gib_both_ends: f64,
    /// Outbound Gbit/s on the link.
    pub outbound_gbit_per_s: Projected,
    /// Inbound Gbit/s on the link.
    pub inbound_gbit_per_s: Projected,
    /// Nodes' cores (all three) at the target's write rate (scaled with
    /// the users); not budgeted.
    pub node_cores: f64,
    /// Click → visible p99 as measured (ms), against [`P99_TARGET_MS`].
    pub click_to_visible_p99_ms: Projected,
    /// Everything budgeted fits, and the p99 target holds.
    pub fits: bool,
}

/// Projects `m` to `target` connections on [`SERVER`].
pub fn project(m: &Measured, target: u64) -> Projection {
    let n = target as f64;
    let scale = n / (m.connections.max(1) as f64);
    let gib = (1u64 << 30) as f64;
    let w = wire(m);
    let gbit = |bytes: f64| bytes * 8.0 * n / 1e9;
    let gateway_cores = Projected::new(m.gateway_cpu_us_per_s * n / 1e6, SERVER.cores);
    let ram_gib = Projected::new(
        (m.rss_bytes + m.kernel_bytes_both_ends / 2.0) * n / gib,
        SERVER.ram_gib,
    );
    let outbound = Projected::new(gbit(w.outbound), SERVER.gbit_per_s);
    let inbound = Projected::new(gbit(w.inbound), SERVER.gbit_per_s);
    let mut p99 = Projected::new(m.seen_p99_ms, P99_TARGET_MS);
    p99.fits &= m.seen_samples > 0;
    let fits = gateway_cores.fits && ram_gib.fits && outbound.fits && inbound.fits && p99.fits;
    Projection {
        target_connections: target,
        server: SERVER,
        measured: m.clone(),
        ram_gib_both_ends: (m.rss_bytes + m.kernel_bytes_both_ends) * n / gib,
        node_cores: m.node_cores * scale,
        wire: w,
        gateway_cores,
        ram_gib,
        outbound_gbit_per_s: outbound,
        inbound_gbit_per_s: inbound,
        click_to_visible_p99_ms: p99,
        fits,
    }
}

impl Projection {
    /// The report's section: per-connection figures, the projection next
    /// to the budget, and how the wire bytes are estimated.
    pub fn markdown(&self) -> String {
        let m = &self.measured;
        let w = &self.wire;
        let s = &self.server;
        let n = self.target_connections;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "### Projection to {} connections on one server\n",
            thousands(n)
        );
        let _ = writeln!(
            md,
            "Per connection, measured over {} connections:\n\n| figure | per connection |\n|---|---|",
            thousands(m.connections)
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(md, "| {k} | {v} |");
        };
        row("gateway CPU", format!("{:.2} µs/s", m.gateway_cpu_us_per_s));
        row("gateway RSS", format!("{:.0} B", m.rss_bytes));
        row(
            "kernel memory (both loopback ends / server end)",
            format!(
                "{:.0} B / {:.0} B",
                m.kernel_bytes_both_ends,
                m.kernel_bytes_both_ends / 2.0
            ),
        );
        row(
            "payload out (websocket payload, gateway count)",
            format!(
                "{:.1} B/s in {:.3} frames/s, {:.3} flushes/s",
                w.payload, m.frames_out, m.flushes_out
            ),
        );
        row(
            "websocket frame headers out",
            format!(
                "{:.1} B/s ({})",
                w.ws_headers,
                match m.header_bytes_out {
                    Some(_) => "counted per frame by the clients",
                    None => "from the mean frame size",
                }
            ),
        );
        row(
            "TCP/IP + Ethernet out",
            format!(
                "{:.1} B/s ({:.3} segments/s × {SEGMENT_OVERHEAD:.0} B)",
                w.tcp_ip_ethernet, w.segments
            ),
        );
        row(
            "**estimated wire bytes out**",
            format!("**{:.1} B/s** ({:.0} bit/s)", w.outbound, w.outbound * 8.0),
        );
        row(
            "estimated wire bytes in (Sets + ACKs)",
            format!("{:.1} B/s", w.inbound),
        );
        let _ = writeln!(
            md,
            "\nAt {} connections, against one server ({}, about €{:.0} a month):\n\n\
             | resource | projected | budget | fits |\n|---|---|---|---|",
            thousands(n),
            s.name,
            s.eur_per_month
        );
        let yes = |p: &Projected| if p.fits { "yes" } else { "**no**" };
        let _ = writeln!(
            md,
            "| gateway CPU | {:.2} cores | {:.0} cores | {} |",
            self.gateway_cores.value,
            s.cores,
            yes(&self.gateway_cores)
        );
        let _ = writeln!(
            md,
            "| RAM: gateway RSS + kernel (server end) | {:.1} GiB ({:.1} GiB counting both ends) | {:.0} GiB | {} |",
            self.ram_gib.value,
            self.ram_gib_both_ends,
            s.ram_gib,
            yes(&self.ram_gib)
        );
        let _ = writeln!(
            md,
            "| network out (estimated wire bytes) | {:.3} Gbit/s | {:.0} Gbit/s | {} |",
            self.outbound_gbit_per_s.value,
            s.gbit_per_s,
            yes(&self.outbound_gbit_per_s)
        );
        let _ = writeln!(
            md,
            "| network in (Sets + ACKs) | {:.3} Gbit/s | {:.0} Gbit/s | {} |",
            self.inbound_gbit_per_s.value,
            s.gbit_per_s,
            yes(&self.inbound_gbit_per_s)
        );
        let _ = writeln!(
            md,
            "| click → visible p99 (as measured, {} samples) | {:.0} ms | ≤ {P99_TARGET_MS:.0} ms | {} |",
            m.seen_samples,
            self.click_to_visible_p99_ms.value,
            yes(&self.click_to_visible_p99_ms)
        );
        let _ = writeln!(
            md,
            "| nodes (3 replicas, scaled to the write rate; not on this server's budget) | {:.2} cores | | |",
            self.node_cores
        );
        let _ = writeln!(
            md,
            "\n**{}.** Wire bytes: payload + websocket header per frame (2 B under 126 B, 4 B to 64 KiB, 10 B beyond) + {SEGMENT_OVERHEAD:.0} B per TCP segment (IPv4 20 + TCP 20 + timestamps 12 + Ethernet 14 + FCS 4 + preamble 8 + gap 12), segments = max(flushes, bytes / {MSS:.0}) (the gateway counts flushes, each ending in a socket write, not the writes themselves). Inbound counts one ACK per outbound segment. Per-connection costs are taken as constant; at the same per-user rate a hot chunk's viewers get more updates at 2.5M, which the per-connection byte budget coalesces.",
            if self.fits {
                "The projection fits"
            } else {
                "The projection does not fit"
            }
        );
        md
    }
}

/// `n` with commas between thousands.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Measured {
        Measured {
            connections: 200_000,
            gateway_cpu_us_per_s: 2.0,
            rss_bytes: 3500.0,
            kernel_bytes_both_ends: 10_000.0,
            payload_out: 40.0,
            frames_out: 2.0,
            flushes_out: 1.0,
            header_bytes_out: None,
            payload_in: 0.011,
            frames_in: 0.001,
            node_cores: 0.3,
            seen_p99_ms: 80.0,
            seen_samples: 1000,
        }
    }

    #[test]
    fn header_lengths_follow_rfc_6455() {
        assert_eq!(ws_header_len(0), 2);
        assert_eq!(ws_header_len(125), 2);
        assert_eq!(ws_header_len(126), 4);
        assert_eq!(ws_header_len(65_535), 4);
        assert_eq!(ws_header_len(65_536), 10);
    }

    #[test]
    fn small_flushes_cost_one_segment_each() {
        let w = wire(&sample());
        // 2 frames of 20 B: 2 B headers each; one segment per flush.
        assert_eq!(w.ws_headers, 4.0);
        assert_eq!(w.segments, 1.0);
        assert_eq!(w.tcp_ip_ethernet, 90.0);
        assert_eq!(w.outbound, 40.0 + 4.0 + 90.0);
        let sets = 0.011 + 0.001 * (6.0 + 90.0);
        assert!((w.inbound - (sets + 90.0)).abs() < 1e-9, "{}", w.inbound);
    }

    #[test]
    fn large_payloads_take_segments_by_the_mss() {
        let mut m = sample();
        m.payload_out = 14_480.0 - 40.0;
        m.frames_out = 10.0; // ~1.4 KB frames: 4-byte headers
        m.flushes_out = 1.0;
        let w = wire(&m);
        assert_eq!(w.ws_headers, 40.0);
        assert!((w.segments - 10.0).abs() < 1e-9, "{}", w.segments);
    }

    #[test]
    fn counted_headers_win_over_the_mean() {
        let mut m = sample();
        m.header_bytes_out = Some(7.0);
        assert_eq!(wire(&m).ws_headers, 7.0);
    }

    #[test]
    fn projects_linearly_and_checks_every_budget() {
        let p = project(&sample(), TARGET_CONNECTIONS);
        assert!((p.gateway_cores.value - 5.0).abs() < 1e-9);
        assert!(p.gateway_cores.fits);
        let ram = (3500.0 + 5000.0) * 2.5e6 / (1u64 << 30) as f64;
        assert!((p.ram_gib.value - ram).abs() < 1e-9);
        assert!(p.ram_gib_both_ends > p.ram_gib.value);
        // 134 B/s × 8 × 2.5M = 2.68 Gbit/s: over a 1 Gbit/s port.
        assert!((p.outbound_gbit_per_s.value - 2.68).abs() < 1e-9);
        assert!(!p.outbound_gbit_per_s.fits);
        assert!((p.node_cores - 0.3 * 12.5).abs() < 1e-9);
        assert!(!p.fits);
        let md = p.markdown();
        assert!(md.contains("Projection to 2,500,000 connections"), "{md}");
        assert!(md.contains("does not fit"), "{md}");
    }

    #[test]
    fn fits_only_with_latency_samples_under_target() {
        let mut m = sample();
        m.payload_out = 1.0;
        m.frames_out = 0.1;
        m.flushes_out = 0.1;
        assert!(project(&m, TARGET_CONNECTIONS).fits);
        m.seen_samples = 0;
        assert!(!project(&m, TARGET_CONNECTIONS).fits);
        m.seen_samples = 1;
        m.seen_p99_ms = 101.0;
        assert!(!project(&m, TARGET_CONNECTIONS).fits);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(2_500_000), "2,500,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(200_000), "200,000");
    }
}
