#!/usr/bin/env python3
"""Tables for bench/run.sh from its raw results.

    report.py RESULTS.tsv RUNS SECS SESSIONS

RESULTS.tsv has one record per line, tab-separated: kind, lun, row, target,
run, value.
    rowdef  -    ID     GROUP   UNIT  NAME     a row of the benchmark
    io      LUN  ID     DAEMON  RUN   IOPS     (or fail / nodigest / noshim)
    iperf   LUN  plain|sendfile  -  RUN  bits/s
    mem     LUN  METRIC DAEMON  -     kB       (sessions_ok: a count)
    warn    LUN  WHAT   DAEMON  -     detail
Daemons: r1 = rtgt --threads 1 pinned to CPU 1, r2 = rtgt with its default
threads, unpinned, tgt = tgtd. Groups: a = one session, targets pinned;
hd = the same with HeaderDigest=CRC32C; b = two sessions, targets unpinned.
"""
import statistics
import sys
from collections import defaultdict

LUN_ORDER = ["ram", "shm", "blockio"]
LUN_TITLE = {"ram": "ram", "shm": "shm", "blockio": "blockio"}
BLOCK = 128 * 1024          # bytes per request of the MB/s rows
GIB_KB = 1024 * 1024        # the RAM LUN's data, in kB


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def median(vals):
    xs = [x for x in (num(v) for v in vals) if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, unit="IOPS"):
    if x is None:
        return "-"
    if unit == "MB/s":
        x = x * BLOCK / 1e6
    return f"{x:.0f}"


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}"


def main():
    path, runs, secs, sessions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    rows = []                                # (id, group, unit, name)
    io = defaultdict(list)                   # (lun, id, daemon) -> [values by run]
    iperf = defaultdict(list)                # (lun, plain|sendfile) -> [bits/s]
    mem = {}                                 # (lun, metric, daemon) -> value
    warns = []
    luns = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 6:
                parts += [""] * (6 - len(parts))
            kind, lun, row, target, run, value = parts[:6]
            if kind == "rowdef":
                rows.append((row, target, run, value))
                continue
            if lun not in luns:
                luns.append(lun)
            if kind == "io":
                io[lun, row, target].append(value or "fail")
            elif kind == "iperf":
                iperf[lun, row].append(value or "fail")
            elif kind == "mem":
                mem[lun, row, target] = value
            elif kind == "warn":
                warns.append(f"{lun}: {target} {row} {value}")
    luns.sort(key=lambda l: LUN_ORDER.index(l) if l in LUN_ORDER else 99)
    med = {k: median(v) for k, v in io.items()}

    def m(lun, rid, d):
        return med.get((lun, rid, d))

    w = 40
    cols = "".join(f"{LUN_TITLE.get(l, l):>10}" for l in luns)

    # ---- the ratios
    print(f"rtgt/tgt, median of {runs} runs ({secs} s per timed run); higher is better for rtgt")
    print(f"{'workload':<{w}} {'unit':<5}{cols}")
    heads = {
        "a": "one session; target on CPU 1, load on CPU 0; rtgt --threads 1:",
        "hd": "the same with HeaderDigest=CRC32C, checked at each login (no DataDigest: libiscsi 1.19\n"
              "has none; qemu-img: header-digest=crc32c, iscsi-perf: LD_PRELOAD bench/hdigest.c):",
        "b": "two sessions at once, targets unpinned, one generator per CPU (aggregate):",
    }
    last = None
    for rid, group, unit, name in rows:
        if group != last:
            print(heads.get(group, group))
            last = group
        if group == "b":
            print(f"  {name:<{w - 2}} {unit:<5}" + "".join(f"{ratio(m(l, rid, 'r2'), m(l, rid, 'tgt')):>10}" for l in luns))
            print(f"    {'scaling: rtgt 2 cores / rtgt 1 core':<{w - 4}} {'':<5}"
                  + "".join(f"{ratio(m(l, rid, 'r2'), m(l, rid, 'r1')):>10}" for l in luns))
            print(f"    {'rtgt 1 core / tgt 2 cores':<{w - 4}} {'':<5}"
                  + "".join(f"{ratio(m(l, rid, 'r1'), m(l, rid, 'tgt')):>10}" for l in luns))
        else:
            print(f"  {name:<{w - 2}} {unit:<5}" + "".join(f"{ratio(m(l, rid, 'r1'), m(l, rid, 'tgt')):>10}" for l in luns))
    print("  ram: rtgt's RAM backstore vs tgt's file LUN in /dev/shm; shm: both a file in /dev/shm;")
    print("  blockio: both O_DIRECT on a loop device of their own over a /dev/shm file")

    # ---- the medians they come from
    print()
    print("medians (IOPS, or MB/s = 10^6 B/s of 128 KiB requests); rtgt is --threads 1 on CPU 1,"
          " except in the two-session rows (default threads, unpinned)")
    print(f"{'':<{w}} {'':<5}" + "".join(f"{LUN_TITLE.get(l, l) + ' rtgt':>13}{'tgt':>9}" for l in luns))
    for rid, group, unit, name in rows:
        r = "r2" if group == "b" else "r1"
        print(f"  {name:<{w - 2}} {unit:<5}"
              + "".join(f"{fmt(m(l, rid, r), unit):>13}{fmt(m(l, rid, 'tgt'), unit):>9}" for l in luns))
        if group == "b":
            print(f"    {'rtgt 1 core (--threads 1, CPU 1)':<{w - 4}} {unit:<5}"
                  + "".join(f"{fmt(m(l, rid, 'r1'), unit):>13}{'':>9}" for l in luns))

    # ---- 128 KiB against the loopback ceiling
    print()
    print("128 KiB rows in MB/s (10^6 B/s) and % of iperf3's one loopback stream (plain) in the same runs")
    print(f"{'':<{w}}" + "".join(f"{'--- ' + LUN_TITLE.get(l, l) + ' ---':>24}" for l in luns))
    print(f"{'':<{w}}" + "".join(f"{'rtgt':>12}{'tgt':>12}" for l in luns))
    ip = {}
    for l in luns:
        p = median(iperf.get((l, "plain"), []))
        z = median(iperf.get((l, "sendfile"), []))
        ip[l] = p / 8 / 1e6 if p else None
        ip[l, "z"] = z / 8 / 1e6 if z else None
    for key, label in ((None, "iperf3 1 stream, server CPU 1"), ("z", "iperf3 1 stream, sendfile (-Z)")):
        cells = ""
        for l in luns:
            v = ip[l] if key is None else ip[l, "z"]
            cells += f"{(f'{v:.0f}' if v else '-'):>12}{'':>12}"
        print(f"  {label:<{w - 2}}" + cells)

    def cell(x, l):
        if x is None:
            return "-"
        mb = x * BLOCK / 1e6
        pct = f" {100 * mb / ip[l]:3.0f}%" if ip[l] else ""
        return f"{mb:.0f}{pct}"

    for rid, group, unit, name in rows:
        if unit != "MB/s":
            continue
        print(f"  {name:<{w - 2}}"
              + "".join(f"{cell(m(l, rid, 'r1'), l):>12}{cell(m(l, rid, 'tgt'), l):>12}" for l in luns))

    # ---- memory
    print()
    print(f"resident memory of each daemon, kB (/proc/PID/status); {sessions} sessions = {sessions}"
          f" iscsi-perf, 4k rand read QD32, {secs} s")
    print(f"{'':<{w}}" + "".join(f"{LUN_TITLE.get(l, l):>12}" for l in luns))
    names = {"r1": "rtgt --threads 1 (CPU 1)", "r2": "rtgt (default threads)", "tgt": "tgt"}
    metrics = [   # metric, heading, short name
        ("idle_rss", "idle VmRSS (started, LUN configured)", "idle"),
        ("rows_hwm", "peak VmHWM after all the rows", "peak after the rows"),
        ("sessions_rss", f"highest VmRSS during the {sessions} sessions", "during the sessions"),
        ("sessions_hwm", f"peak VmHWM after the {sessions} sessions", "peak after the sessions"),
    ]

    def kb(l, metric, d):
        return num(mem.get((l, metric, d), "") or "")

    def less_lun(l, metric, d, v):
        # rtgt's RAM LUN is in its own memory once prefilled (after idle)
        if v is not None and l == "ram" and d in ("r1", "r2") and metric != "idle_rss" and v >= GIB_KB:
            return v - GIB_KB
        return v

    ram_note = False
    for metric, label, _ in metrics:
        print(f"  {label}")
        for d in ("r1", "r2", "tgt"):
            cells = ""
            for l in luns:
                v = kb(l, metric, d)
                if v is None:
                    c = "-"
                elif less_lun(l, metric, d, v) != v:
                    c = f"{less_lun(l, metric, d, v):.0f}+1G"
                    ram_note = True
                else:
                    c = f"{v:.0f}"
                cells += f"{c:>12}"
            print(f"    {names[d]:<{w - 4}}" + cells)
    print(f"    {'sessions that ran I/O (r1/r2/tgt)':<{w - 4}}"
          + "".join(f"{'/'.join(mem.get((l, 'sessions_ok', d), '-') for d in ('r1', 'r2', 'tgt')):>12}" for l in luns))
    print("  rtgt/tgt (lower is better for rtgt)")
    for metric, _, short in metrics:
        for d in ("r1", "r2"):
            cells = "".join(
                f"{ratio(less_lun(l, metric, d, kb(l, metric, d)), kb(l, metric, 'tgt')):>12}" for l in luns)
            who = "rtgt -t1" if d == "r1" else "rtgt"
            print(f"    {short + ', ' + who:<{w - 4}}" + cells)
    if ram_note or "ram" in luns:
        print("  ram: rtgt's RSS includes its RAM LUN's data: 'N+1G' = N kB besides that 1 GiB, and the")
        print("  ratios use N; its idle figure is from before the LUN is written. tgt's ram LUN is a")
        print("  /dev/shm file, outside its RSS, as are both sides' shm and blockio LUNs.")

    # ---- raw
    print()
    print("raw IOPS per run (r1 = rtgt --threads 1 on CPU 1, r2 = rtgt default threads unpinned):")
    for l in luns:
        print(f"  {l}: iperf3 bits/s plain {' '.join(iperf.get((l, 'plain'), []))};"
              f" sendfile {' '.join(iperf.get((l, 'sendfile'), []))}")
        for rid, group, unit, name in rows:
            ds = ("r2", "r1", "tgt") if group == "b" else ("r1", "tgt")
            print(f"    {name:<{w - 4}}" + "  ".join(f"{d}: {' '.join(io.get((l, rid, d), ['-']))}" for d in ds))
    bad = sorted({v for vals in io.values() for v in vals if num(v) is None})
    if bad:
        print()
        print(f"NOTE: some runs gave no figure ({', '.join(bad)}): fail = the generator failed or"
              " timed out; nodigest = the target did not agree to HeaderDigest=CRC32C;"
              " noshim = no gcc for bench/hdigest.c. Medians use the runs that gave one.")
    for w_ in warns:
        print(f"WARNING: {w_}")


if __name__ == "__main__":
    main()
