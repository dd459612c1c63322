//! # checkraft-gateway: the stateless front of a checkraft cluster
//!
//! A gateway holds no durable state. It follows the cluster and keeps, in
//! memory, every shard's current bitmap, so that reads never touch a node;
//! writes go to shard leaders in batches. Browsers talk to it over one
//! WebSocket each ([`ws`], protocol in `docs/protocol.md`) and fetch chunk
//! state over HTTP ([`http`]).
//!
//! Every call to a node goes through [`node_client::NodeClient`], which
//! signs it with the gateway secret (`gateway_secret`, required; see
//! `checkraft-auth`). That credential allows only the data plane and map
//! reads: a compromised gateway can write boxes, but cannot forge raft
//! messages, restore a shard or change the cluster.
//!
//! ## Data flow
//! 1. **Map** ([`map`]): one task long-polls `GET
//!    /meta/map?since=V&wait_ms=…` on a node (the `--cluster` seeds first,
//!    then any live node of the last map) and publishes each newer
//!    [`checkraft_proto::ShardMap`] on a watch channel.
//! 2. **Subscriptions** ([`shards`], [`subscription`]): for each shard of
//!    the map, exactly one task holds one `GET /shards/{id}/changes?from=SEQ`
//!    stream on a replica (a random one first, so gateways spread) and
//!    applies its [`checkraft_proto::ChangeEvent`] frames to the shard's
//!    [`state::ShardState`] (croaring bitmap + `seq` + epoch). It
//!    resubscribes from its last `seq` on a gap, an end, an error, a silent
//!    stream, a map change of the shard's replicas or range, or a replica
//!    that stops advancing: one that has not reached, within
//!    `stale_replica_ms`, a `seq` this gateway knows committed, from its
//!    own writes' acknowledgements or, while the stream is on a follower,
//!    from the leader's applied `seq` ([`commit_watch`]). A replica cut
//!    off from its group still sends progress markers.
//! 3. **Writes** ([`batcher`], [`writer`]): sets are grouped per shard for a
//!    tick (5 ms) or up to 1024 sets, and each batch is ONE `SetBatch` raft
//!    write to the leader, following 421 forwards and refreshing the map on
//!    `StaleEpoch`. Sets whose boxes a split or merge moved (`Moved`,
//!    `Frozen`) are routed again, by the change streams where they are
//!    ahead of the map ([`shards::Shards::route`]). An attempt unanswered
//!    for `probe_after_ms` asks the other replicas who leads (`GET
//!    /shards/{id}/leader`) and moves to a new leader at once. Every caller of a batch gets its outcome once it
//!    is committed and applied.
//! 4. **HTTP** ([`http`]): the API below, served by [`run`], including the
//!    no-JavaScript HTML fallback ([`nojs`]).
//! 5. **WebSockets** ([`ws`]): `GET /ws` is upgraded by hand so each
//!    stream gets a 1 KiB read buffer and 4 KiB frame limit (warp's own
//!    `ws()` costs ~130 KB per socket; ours measured ~3.4 KB per idle
//!    connection at 15,000). One fan-out task per shard, started when the
//!    shard registry announces the shard's handle
//!    ([`shards::Shards::watch`]), turns the shard's
//!    applied changes into per-chunk net `Update`s, each chunk on its own
//!    tick (`ws_fanout_tick_ms`, 20 ms, lengthened up to
//!    `ws_coalesce_max_ms` for a chunk whose subscribers' byte budgets
//!    would overflow: `ws::pace`), encodes each once, and queues the
//!    same bytes to that chunk's subscribers only (a connection over its
//!    own budget holds and merges them: `ws::budget`). A connection's
//!    task writes everything queued at once (`feed` each frame, one
//!    `flush`, `TCP_NODELAY`). `Stats` is read and encoded once per
//!    `ws_stats_interval_ms` for everyone, only when it changed, and rides
//!    along with a connection's next write (alone only after
//!    `ws_stats_alone_ms`), so an idle connection costs next to nothing
//!    and a quiet one no extra writes. Each connection's queue is bounded
//!    (64), and the sockets' kernel buffers are small ([`socket`]:
//!    `SO_SNDBUF`, `TCP_NOTSENT_LOWAT`, set on the listener): a connection that falls behind loses updates and gets
//!    `Resync{FellBehind}` instead, after kilobytes, so memory stays
//!    bounded. Sets (and SetMany's boxes, one write per message) go
//!    through the batcher and are acknowledged when their batch commits
//!    (the Update may come later); token buckets per connection and per
//!    IP (counting boxes), connection caps and the `Origin` rule apply.
//!    Shutdown closes every socket with 1001. The layer sees the gateway
//!    through narrow handles only: the hub and its connections through
//!    [`ws::Backend`] (settings, metrics, map, the checked count, the Set
//!    and SetMany writes), the fan-out through [`ws::fanout::Sources`].
//! 6. **Cross-origin reads** ([`cors`]): the page sends its chunk and API
//!    reads straight to the gateway its socket uses; GETs of the read
//!    paths from one of `page_origins` get CORS headers (allow-origin,
//!    exposed `ETag`/`X-Checkraft-Seq`, `Timing-Allow-Origin`), other
//!    origins and writes none.
//! 7. **Registry** ([`registry`]): a gateway with a `public_endpoint`
//!    reports it, its websocket connections and its load (connections in
//!    permille of `ws_max_connections`, as in `Hello`) to the metadata
//!    leader (`POST /meta/gateways`) every `register_interval_ms` (2000),
//!    following 421s to the leader. `/config.json` lists the gateways the
//!    leader saw within its `gateway_down_after_ms`, so starting or
//!    stopping a gateway needs no configuration change elsewhere.
//! 8. **Guard** ([`guard`]): the client's address (the forwarded one from
//!    `trusted_proxies`), the websocket `Origin` rule (the gateway's own
//!    origin, i.e. Origin host = `Host` or trusted `X-Forwarded-Host`, or
//!    one of `page_origins`; else 403), and the per-address token bucket
//!    of the HTTP write paths (`http_sets_per_second`, `http_sets_burst`;
//!    else 429).
//!
//! ## Invariants
//! - A shard's state only moves through [`state::ShardState::apply`]:
//!   `Changes` events strictly in `seq` order (a duplicate is ignored, a gap
//!   forces a resubscription), `Snapshot` events replace it. So the state
//!   is always the shard's exact state at its `seq`, never a mix.
//! - Chunks are chunk-aligned within shards (the metadata group enforces
//!   it), so a chunk's version is a `seq` of its shard (`X-Checkraft-Seq`
//!   is the shard's current one). Its ETag is a digest of its content
//!   ([`chunk::etag`]): a write elsewhere in the shard leaves it alone, and
//!   every gateway names the same content alike.
//! - A write is acknowledged only after the shard committed and applied
//!   it. A `PUT` (and the no-JS form) then waits (bounded) until this
//!   gateway's own state shows it, so a client reading back from the same
//!   gateway sees its write; a websocket `Ack` does not wait (the client
//!   follows the chunk's Updates).
//! - Sets are absolute, so every retry (lost answer, leader change) is
//!   safe.
//!
//! ## Chunks
//! The grid (`grid.boxes`, `grid.chunk_size` from the map) is cut into
//! chunks: chunk `c` covers `[c * chunk_size, min((c + 1) * chunk_size,
//! boxes))`. Its body is a bitset: `ceil(len / 8)` bytes, box `start + i`
//! is bit `i % 8` (value `1 << (i % 8)`) of byte `i / 8`, least significant
//! bit first ([`chunk`] has the test vector).
//!
//! ## HTTP API
//! Errors are JSON [`checkraft_proto::ApiError`] `{kind, message}`: 400
//! (bad index, body or id), 404 (no such chunk or path), 409 (the shard
//! rejected the write; `message` says why), 413 (body too large), 429
//! (`{"kind": "rate_limited", ...}`: too many writes from this client
//! address; `Retry-After` in seconds; nothing changed), 503 (map or shard
//! state not loaded yet, or no commit within `write_timeout_ms`;
//! `Retry-After: 1`, and retrying is safe).
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `GET /api/chunks/{c}` | optional `If-None-Match`, `Accept-Encoding` | 200 `application/octet-stream` bitset (`br`, `zstd` or `gzip`-encoded as negotiated, [`encoding`]), headers `ETag: W/"{content digest}"`, `X-Checkraft-Seq: {seq}`, `Cache-Control: no-cache`, `Vary: Accept-Encoding`; 304 without body (same headers) when `If-None-Match` matches; 400 bad id, 404 past the grid, 503 shard not loaded |
//! | `GET /api/overview` | optional `?start=S&end=E`, `If-None-Match`, `Accept-Encoding` | 200 JSON [`overview::Overview`] `{"boxes","start","end","region","level","counts"}`: checked boxes per region of `chunk_size × 2^level` boxes, at most 1024 regions (the finest level that fits the range); content `ETag`, 304 when unchanged; 400 bad range, 503 a shard not loaded |
//! | `GET /api/boxes/{i}` | | `{"index","checked","seq"}`; 400 bad or out-of-range index, 503 not loaded |
//! | `PUT /api/boxes/{i}` | `{"checked": bool}` | after commit, once this gateway shows the write (read-your-writes): `{"index","checked","seq"}` (`seq`: the committing change); 400 bad index or body, 409 rejected, 429 over the per-address write limit, 503 unavailable (also when the write committed but this gateway's view did not catch up within `read_your_writes_ms`) |
//! | `GET /api/stats` | | `{"checked","boxes","chunk_size","shards_loaded","shards","map_version"}` |
//! | `GET /ws` | WebSocket upgrade | the binary protocol of `docs/protocol.md`; 403 for an `Origin` that is neither the gateway's own (its `host[:port]` = `Host`, or `X-Forwarded-Host` from a trusted proxy) nor in `page_origins` (no `Origin`: allowed); close 1002 malformed, 1008 policy, 1009 too big, 1013 at capacity, 1001 shutdown |
//! | `GET /nojs?page=N` | or `?box=I` (jump) | 200 HTML form of page `N` (`nojs_page_boxes` boxes, default 1000): each box a `<button name="set" value="I:1">` (`I:0` when checked), prev/next links, a jump-to-box field; `?box=I` answers 303 to `/nojs?page=P#box-I`; 400 HTML page for a bad `page`/`box`, 404 past the grid, 503 not loaded. No JavaScript; `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`, script-free `Content-Security-Policy` ([`nojs`]) |
//! | `POST /nojs/set` | form `set=I:1\|0&page=N` | after commit: 303 to `/nojs?page=N#box-I`; HTML error pages (with a link back): 400 malformed form or index, 409 rejected, 429 over the per-address write limit (shared with `PUT /api/boxes`), 503 unavailable |
//! | `GET /config.json` | | `{"endpoints": [ws URL, ...], "source", "gateways": [{"endpoint","connections","load"}, ...]}`: the websocket endpoints the page picks from: `client_endpoints` when set (`source: "static"`), else the registered healthy gateways with their load (`"registry"`, read from the metadata leader at most once a second), else `["/ws"]`, the page's own origin (`"default"`); [`registry`] |
//! | `GET /`, `GET /index.html` | optional `Cookie: checkraft-view=COLSxROWS` | the page with the top of the grid rendered from current state in the script's markup, and those chunks' bitsets in a data block ([`ssr`]); the bare page while the state is not loaded |
//! | `GET /js/…`, … | | the page's static files from `assets_dir` when it is set (no Caddy in front), with the Caddyfile's security headers ([`assets`]) |
//! | `GET /health` | | 200 `ok` once the map and every shard's state are loaded; else 503 with the reason |
//! | `GET /ready` | | 200 `ready` when, besides, the map is initialized and names a leader for every shard (writes have somewhere to go); else 503 with every reason ([`ready`]); systemd's `READY=1` is sent at the same moment |
//! | `GET /metrics` | | OpenMetrics text: connections, messages and bytes, subscriptions, send-queue depth, changes held by coalescing, rejections and resyncs by reason, write and set latency histograms, shard streams; every name in `docs/metrics.md` |
//!
//! ## Configuration
//! [`config::GatewayConfig`]: defaults, a TOML file (`--config`),
//! `CHECKRAFT_GATEWAY_<FIELD>` environment variables, then the flags
//! `--listen`, `--cluster`, `--id`, `--log-format`. Logs follow `RUST_LOG`,
//! as text or JSON lines ([`logging`]). The registry's settings:
//! `public_endpoint` (unset: not listed) and `register_interval_ms` (2000).
//!
//! ## Caveats
//! - A gateway holds every shard's bitmap: memory grows with the grid (at
//!   most about 131 KB per million boxes in croaring's densest case).
//! - One rejected set rejects its whole batch. The gateway validates
//!   indices against the map first, so this only happens when the map it
//!   used is stale (a range change), and then the batch's sets are routed
//!   again (see 3. above) rather than refused.
//! - Splits and merges arrive in the change streams: a split's child is
//!   adopted from its parent's stream at the split's `seq`, and fan-out
//!   chains carry over, so clients need no refetch (`docs/resharding.md`).
//!   A merge whose absorbed shard's last updates do not reach this gateway
//!   within 2 s resyncs that shard's chunks.
//! - Between the commit of a write and its event on this gateway's stream,
//!   another gateway may still serve the older chunk; the ETag moves on
//!   as soon as its stream delivers the event.
//! - The registry is the metadata leader's memory: after a leader change
//!   `/config.json` lists fewer gateways (or `/ws`) until every gateway
//!   has reported once, within one `register_interval_ms`.
//! - A chunk that changes and changes back gets its old ETag again: the
//!   tag names content, not history (a client holding that content may
//!   keep it).

pub mod assets;
pub mod batcher;
pub mod chunk;
pub mod commit_watch;
pub mod config;
pub mod cors;
pub mod encoding;
pub mod error;
pub mod gateway;
pub mod guard;
pub mod http;
pub mod logging;
pub mod map;
pub mod metrics;
pub mod node_client;
pub mod nojs;
pub mod overview;
pub mod ready;
pub mod registry;
pub mod server;
pub mod shards;
pub mod socket;
pub mod ssr;
pub mod state;
pub mod subscription;
pub mod writer;
pub mod ws;

pub use config::GatewayConfig;
pub use error::{Error, Result};
pub use gateway::Gateway;
pub use server::run;
