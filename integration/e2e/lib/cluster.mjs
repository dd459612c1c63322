// A real local checkraft cluster for the browser tests: three
// `checkraft-node` processes, `raftctl init`, two `checkraft-gateway`s and
// Caddy running the repository's Caddyfile in front of them, all on
// 127.0.0.1 ports picked at random, data in a fresh temp dir.
//
// Unlike `raftctl up` (which stops everything when a child dies), this
// harness lets a test kill -9 any process and start it again. `stop()`
// kills every process it started and removes the data; the test files
// call it from `after`, and a process-exit hook covers a crash.

import { spawn, execFile } from "node:child_process";
import { mkdtempSync, openSync, rmSync, readFileSync, existsSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { build as precompress, unbuild } from "../../../assets/build.mjs";

const run = promisify(execFile);
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const BIN = process.env.CHECKRAFT_BIN_DIR ?? join(REPO, "target", "debug");
const TOKEN = "e2e-token-0123456789abcdef";
// Nodes sign calls to each other with the cluster secret, gateways theirs
// with the gateway secret (docs/reliability.md, "Security").
const CLUSTER_SECRET = "e2e-cluster-secret-0123456789";
const GATEWAY_SECRET = "e2e-gateway-secret-0123456789";

/** A free loopback port below Linux's ephemeral range (32768 and up), so
 * that no outgoing connection of the cluster can take it between this
 * check and the server's bind. */
export async function freePort() {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port)) continue;
    const ok = await new Promise((done) => {
      const srv = createServer();
      srv.once("error", () => done(false));
      srv.listen(port, "127.0.0.1", () => srv.close(() => done(true)));
    });
    if (ok) {
      taken.add(port);
      return port;
    }
  }
}
const taken = new Set();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a truthy value, or throws after `ms`. */
export async function eventually(what, ms, probe, every = 100) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
    }
    await sleep(every);
  }
}

async function healthy(addr) {
  try {
    const r = await fetch(`http://${addr}/health`, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  } catch {
    return false;
  }
}

/** Prometheus text → value of the first sample of `name` (no labels). */
export function metric(text, name) {
  for (const line of text.split("\n")) {
    if (line.startsWith(name + " ")) return Number(line.slice(name.length + 1));
  }
  return undefined;
}

/** A TCP relay from a public address to a server's own, counting the
 * bytes each way: what a browser using the public address sends and gets
 * on the wire (HTTP headers and bodies as encoded, websocket frames). A
 * connection whose server is down is closed at once. */
class WireCounter {
  constructor(target) {
    this.target = target;
    this.up = 0;
    this.down = 0;
    this.requests = [];
    this.sockets = new Set();
    /** Per request: {req, up, down, downHead}: its bytes each way (a
     * websocket's frames count to its handshake), and the size of the
     * response's head (status line and headers). */
    this.detail = [];
    this.server = createServer((client) => {
      const [host, port] = target.split(":");
      const upstream = connect(Number(port), host);
      this.sockets.add(client).add(upstream);
      let current = null;
      let answer = "";
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("data", (d) => {
        this.up += d.length;
        // Request lines, for a breakdown (websocket frames never start so).
        const head = d.subarray(0, 120).toString("latin1");
        const m = head.match(/^(GET|PUT|POST|HEAD|OPTIONS) (\S+) HTTP\/1\.1\r\n/);
        if (m) {
          this.requests.push(`${m[1]} ${m[2]}`);
          current = { req: `${m[1]} ${m[2]}`, up: 0, down: 0, downHead: null };
          this.detail.push(current);
          answer = "";
        }
        if (current) current.up += d.length;
      });
      upstream.on("data", (d) => {
        this.down += d.length;
        if (!current) return;
        current.down += d.length;
        if (current.downHead === null) {
          answer += d.subarray(0, 4096).toString("latin1");
          const end = answer.indexOf("\r\n\r\n");
          if (end >= 0) current.downHead = end + 4;
        }
      });
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
    });
  }

  async listen(addr) {
    const [host, port] = addr.split(":");
    await new Promise((ok, fail) => this.server.once("error", fail).listen(Number(port), host, ok));
  }

  close() {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

export class Cluster {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "checkraft-e2e-"));
    /** name ("node-1", "gateway-2", "caddy") → {spec, child} */
    this.procs = new Map();
    this.nodes = []; // [{id, addr}]
    this.gateways = []; // [{id, addr}]
    this.caddyAddr = null;
    this.publicCaddyAddr = null;
    this.counters = []; // WireCounter relays, with `countBytes`
    this.exitHook = () => this.killAll();
    process.on("exit", this.exitHook);
  }

  /** Starts everything and waits until the page's address is healthy.
   * With `countBytes`, the browser reaches Caddy and the gateways through
   * counting relays (`wire()`, `resetWire()`). */
  static async start({ boxes = 1_000_000, shards = 8, chunkSize = 4096, countBytes = false } = {}) {
    for (const bin of ["checkraft-node", "checkraft-gateway", "raftctl"]) {
      if (!existsSync(join(BIN, bin))) {
        throw new Error(`${join(BIN, bin)} is missing: run \`cargo build --bins\` first`);
      }
    }
    const c = new Cluster();
    try {
      for (let id = 1; id <= 3; id++) {
        c.nodes.push({ id, addr: `127.0.0.1:${await freePort()}` });
      }
      for (let id = 1; id <= 2; id++) {
        const addr = `127.0.0.1:${await freePort()}`;
        c.gateways.push({ id, addr, publicAddr: countBytes ? `127.0.0.1:${await freePort()}` : addr });
      }
      c.caddyAddr = `127.0.0.1:${await freePort()}`;
      c.publicCaddyAddr = countBytes ? `127.0.0.1:${await freePort()}` : c.caddyAddr;
      if (countBytes) {
        for (const [pub, own] of [[c.publicCaddyAddr, c.caddyAddr], ...c.gateways.map((g) => [g.publicAddr, g.addr])]) {
          const counter = new WireCounter(own);
          await counter.listen(pub);
          c.counters.push(counter);
        }
      }
      for (const n of c.nodes) c.startNode(n.id);
      for (const n of c.nodes) await c.waitHealthy(`node-${n.id}`, n.addr);
      await run(join(BIN, "raftctl"), [
        "init",
        "--cluster", c.nodes[0].addr,
        "--token", TOKEN,
        "--nodes", c.nodes.map((n) => `${n.id}=${n.addr}`).join(","),
        "--boxes", String(boxes),
        "--shards", String(shards),
        "--chunk-size", String(chunkSize),
      ], { timeout: 60_000 });
      for (const g of c.gateways) c.startGateway(g.id);
      // The page's precompressed copies (Caddy's `precompressed`), fresh.
      await precompress();
      c.startCaddy();
      for (const g of c.gateways) await c.waitHealthy(`gateway-${g.id}`, g.addr);
      await c.waitHealthy("caddy", c.caddyAddr);
      return c;
    } catch (e) {
      e.message += `\n(logs in ${c.dir})`;
      c.killAll();
      throw e;
    }
  }

  /** The page's URL (Caddy, or its counting relay). */
  get url() {
    return `http://${this.publicCaddyAddr}`;
  }

  /** Bytes on the wire between the browser and the servers since the last
   * `resetWire()` (with `countBytes`): {up, down, total}. */
  wire() {
    const up = this.counters.reduce((n, c) => n + c.up, 0);
    const down = this.counters.reduce((n, c) => n + c.down, 0);
    const requests = this.counters.flatMap((c) => c.requests);
    const detail = this.counters.flatMap((c) => c.detail);
    return { up, down, total: up + down, requests, detail };
  }

  resetWire() {
    for (const c of this.counters) {
      c.up = c.down = 0;
      c.requests = [];
      c.detail = [];
    }
  }

  spawnLogged(name, bin, args, env = {}) {
    const log = openSync(join(this.dir, `${name}.log`), "a");
    // Servers run at a lower CPU priority than the browser: in real use
    // they do not share the user's cores, and on a 2-core test machine
    // the page's timings (the long-task test) should measure the page,
    // not raft heartbeats. `nice` execs the binary, so the pid is the
    // server's own.
    const child = spawn("nice", ["-n", "10", bin, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", log, log],
      detached: true, // own process group: kill(-pid) reaches only it
    });
    child.unref();
    this.procs.set(name, { bin, args, env, child });
    return child;
  }

  startNode(id) {
    const n = this.nodes.find((x) => x.id === id);
    this.spawnLogged(`node-${id}`, join(BIN, "checkraft-node"), [
      "--id", String(id),
      "--listen", n.addr,
      "--data-dir", join(this.dir, `node-${id}`),
    ], {
      CHECKRAFT_NODE_ADMIN_TOKEN: TOKEN,
      CHECKRAFT_NODE_CLUSTER_SECRET: CLUSTER_SECRET,
      CHECKRAFT_NODE_GATEWAY_SECRET: GATEWAY_SECRET,
    });
  }

  startGateway(id) {
    const g = this.gateways.find((x) => x.id === id);
    this.spawnLogged(`gateway-${id}`, join(BIN, "checkraft-gateway"), [
      "--id", String(id),
      "--listen", g.addr,
      "--cluster", this.nodes.map((n) => n.addr).join(","),
    ], {
      CHECKRAFT_GATEWAY_CLIENT_ENDPOINTS: JSON.stringify(
        this.gateways.map((x) => `ws://${x.publicAddr}/ws`),
      ),
      CHECKRAFT_GATEWAY_TRUSTED_PROXIES: '["127.0.0.1"]',
      CHECKRAFT_GATEWAY_GATEWAY_SECRET: GATEWAY_SECRET,
      // The page comes from Caddy and opens the gateways' direct ws://
      // URLs above: a cross-origin websocket each gateway must allow.
      // The same origins get CORS headers on reads the page routes to the
      // gateway directly (assets/js/routes.js).
      CHECKRAFT_GATEWAY_PAGE_ORIGINS: JSON.stringify([this.url]),
    });
  }

  startCaddy() {
    const home = join(this.dir, "caddy");
    this.spawnLogged("caddy", "caddy", [
      "run", "--config", join(REPO, "Caddyfile"), "--adapter", "caddyfile",
    ], {
      CHECKRAFT_HTTP_PORT: this.caddyAddr.split(":")[1],
      CHECKRAFT_BIND: "127.0.0.1",
      CHECKRAFT_GATEWAYS: this.gateways.map((g) => g.addr).join(" "),
      CHECKRAFT_ASSETS: join(REPO, "assets"),
      // The page may read from the gateways directly (assets/js/routes.js).
      CHECKRAFT_CONNECT_SRC: this.gateways.map((g) => `http://${g.publicAddr}`).join(" "),
      XDG_DATA_HOME: home,
      XDG_CONFIG_HOME: home,
    });
  }

  async waitHealthy(name, addr, ms = 60_000) {
    await eventually(`${name} at ${addr} to be healthy (log ${join(this.dir, name + ".log")})`, ms,
      async () => {
        const p = this.procs.get(name);
        if (p && p.child.exitCode !== null) {
          throw new Error(`${name} exited with ${p.child.exitCode}: ${this.logTail(name)}`);
        }
        return healthy(addr);
      }, 150);
  }

  logTail(name, lines = 15) {
    try {
      return readFileSync(join(this.dir, `${name}.log`), "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** kill -9 a process and wait until it is gone. */
  async kill9(name) {
    const p = this.procs.get(name);
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    const gone = new Promise((r) => p.child.once("exit", r));
    try {
      process.kill(-p.child.pid, "SIGKILL");
    } catch {
      p.child.kill("SIGKILL");
    }
    await gone;
  }

  /** Starts a killed process again with its first command line. */
  async restart(name) {
    const p = this.procs.get(name);
    this.spawnLogged(name, p.bin, p.args, p.env);
    const [kind, id] = name.split("-");
    const addr = kind === "node"
      ? this.nodes.find((n) => n.id === Number(id)).addr
      : kind === "gateway"
        ? this.gateways.find((g) => g.id === Number(id)).addr
        : this.caddyAddr;
    await this.waitHealthy(name, addr);
  }

  async metrics(addr) {
    const r = await fetch(`http://${addr}/metrics`);
    return r.text();
  }

  /** Open websockets per gateway: [{id, addr, connections}]. */
  async wsConnections() {
    const out = [];
    for (const g of this.gateways) {
      let connections = null;
      try {
        connections = metric(await this.metrics(g.addr), "checkraft_gateway_ws_connections");
      } catch {
        // a killed gateway has no metrics
      }
      out.push({ ...g, connections });
    }
    return out;
  }

  /** The shard map, from any node that answers. */
  async map() {
    for (const n of this.nodes) {
      try {
        // The map is for cluster members and the operator: the admin token.
        const r = await fetch(`http://${n.addr}/meta/map`, {
          signal: AbortSignal.timeout(2000),
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        if (r.ok) return await r.json();
      } catch {
        // try the next node
      }
    }
    throw new Error("no node serves the shard map");
  }

  /** The node id leading the shard that holds `box`, confirmed by that
   * node's own status. */
  async leaderOf(box) {
    return eventually(`a confirmed leader for box ${box}`, 30_000, async () => {
      const map = await this.map();
      const shard = Object.values(map.shards).find(
        (s) => s.descriptor.start <= box && box < s.descriptor.end,
      );
      const hint = shard?.leader;
      const node = this.nodes.find((n) => n.id === hint);
      if (!node) return null;
      const st = await (await fetch(`http://${node.addr}/status`)).json();
      const g = st.groups[String(shard.descriptor.shard)];
      return g && g.leader === hint ? { node: hint, shard: shard.descriptor.shard } : null;
    }, 250);
  }

  killAll() {
    for (const c of this.counters) c.close();
    for (const [, p] of this.procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        try {
          process.kill(-p.child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
  }

  /** Kills everything; keeps the logs when `keep` (a failed run). */
  async stop({ keep = false } = {}) {
    process.off("exit", this.exitHook);
    // The compressed copies are this run's: a later edit of a file must not
    // be hidden behind one (Caddy serves a copy whenever it exists).
    unbuild();
    const exits = [...this.procs.values()]
      .filter((p) => p.child.exitCode === null && p.child.signalCode === null)
      .map((p) => new Promise((r) => p.child.once("exit", r)));
    this.killAll();
    await Promise.race([Promise.all(exits), sleep(5000)]);
    if (keep || process.env.CHECKRAFT_KEEP_FAILED) {
      console.error(`e2e: logs kept in ${this.dir}`);
    } else {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
