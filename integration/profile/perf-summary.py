#!/usr/bin/env python3
"""Summarises a write-path profile (write-path.sh): for the gateway, the
nodes and the bench workers, the share of samples per category (kernel
TCP, scheduling, malloc, tokio, our code, ...) and the top leaf symbols,
plus the node's sled flushes over the sampled window.

    perf-summary.py OUTDIR [TOP]

Leaf symbols only (release builds keep no frame pointers, so call chains
are not reliable); the categories are by symbol and DSO name."""
import collections
import re
import subprocess
import sys


def role_of(line):
    if "bench-worker" in line:
        return "load generator"
    if "checkraft-gateway" in line:
        return "gateway"
    if "checkraft-node" in line:
        return "nodes"
    return None


def category(sym, dso):
    if "kernel" in dso:
        if re.search(r"futex|schedule|switch|wake|sched|enqueue|dequeue|update_curr|pick_", sym):
            return "kernel: scheduling, futex"
        if re.search(r"tcp|ip_|skb|sock|net_|__dev|loopback|inet|^sk_", sym):
            return "kernel: TCP over loopback"
        if re.search(r"ext4|jbd|blk|nvme|virtio|iowrite|file|filemap|iomap|bio|clear_page", sym):
            return "kernel: disk, page cache"
        if re.search(r"syscall|entry_|ret_from", sym):
            return "kernel: syscall entry"
        return "kernel: other"
    if re.search(r"malloc|free|_int_|unlink_chunk|consolidate|realloc|tcache|calloc|_mi_|mi_", sym):
        return "allocator"
    if "libc" in dso:
        return "memcpy, memset" if re.search(r"mem(cpy|move|set|cmp)", sym) else "libc other"
    for pattern, name in [
        (r"serde_json", "serde_json"),
        (r"tungstenite", "tungstenite"),
        (r"hyper|h2::|http::|reqwest|warp", "hyper, reqwest, warp"),
        (r"tokio", "tokio runtime"),
        (r"sled", "sled"),
        (r"openraft", "openraft"),
        (r"bincode", "bincode"),
        (r"roaring", "croaring"),
        (r"checkraft|raftctl", "checkraft code"),
    ]:
        if re.search(pattern, sym):
            return name
    return "other: " + dso.split("/")[-1]


def flushes(path):
    values = {}
    try:
        for line in open(path):
            m = re.match(r"checkraft_node_(flushes_total|flush_entries_total|flush_latency_seconds_sum) (\S+)", line)
            if m:
                values[m.group(1)] = float(m.group(2))
    except OSError:
        pass
    return values


def main():
    out = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    roles = {}
    for line in open(out + "/pids.txt"):
        fields = line.split()
        if fields and fields[0].isdigit() and role_of(line):
            roles[fields[0]] = role_of(line)
    script = subprocess.run(
        ["perf", "script", "-i", out + "/perf.data", "-F", "pid,ip,sym,dso", "-G"],
        capture_output=True, text=True, check=True,
    ).stdout
    total = collections.Counter()
    cats = collections.defaultdict(collections.Counter)
    syms = collections.defaultdict(collections.Counter)
    for line in script.splitlines():
        m = re.match(r"\s*(\d+)\s+[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", line)
        if not m or m.group(1) not in roles:
            continue
        role, sym, dso = roles[m.group(1)], re.sub(r"\+0x[0-9a-f]+$", "", m.group(2).strip()), m.group(3)
        total[role] += 1
        cats[role][category(sym, dso)] += 1
        syms[role][sym[:100]] += 1
    n = sum(total.values())
    print(f"{n} samples")
    for role in ["gateway", "nodes", "load generator"]:
        k = total[role]
        if not k:
            continue
        print(f"\n{role}: {100 * k / n:.1f}% of the samples")
        for c, v in cats[role].most_common(10):
            print(f"  {100 * v / k:5.1f}%  {c}")
        print("  top leaf symbols:")
        for s, v in syms[role].most_common(top):
            print(f"    {100 * v / k:5.1f}%  {s}")
    a, b = flushes(out + "/node-metrics-before.txt"), flushes(out + "/node-metrics-after.txt")
    if a and b:
        f = b["flushes_total"] - a["flushes_total"]
        e = b["flush_entries_total"] - a["flush_entries_total"]
        t = b["flush_latency_seconds_sum"] - a["flush_latency_seconds_sum"]
        if f > 0:
            print(f"\nnode 1 over the window: {f:.0f} sled flushes, {e / f:.2f} log entries per flush, "
                  f"{1000 * t / f:.2f} ms per flush")


main()
