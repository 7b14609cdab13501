#!/usr/bin/env python3
"""Listing one big folder: an image sequence of N frames, as an editing app
writes it into the catalog (rows in file_nodes and file_locations, one content
file each), listed through a fresh MarkBase mount, against the same N empty
files in one folder of the backing disk, in one run, as ratios to the disk.

    sudo python3 benches/big_folder.py [--entries 50000] [--runs 3] [--json]

Rows: `ls -f` (names only: READDIR), `ls -l` first (READDIRPLUS and the
attributes of every entry), `ls -l` again (what the kernel and the daemon
kept). Before each run the mount is made anew and the page cache dropped, so
the first listing is a cold one on both sides. Figures are medians of --runs.
Needs root (mounts, drop_caches); builds the binary if needed.
"""
import argparse, json, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "..", "shared", "fixtures", "make_library.py")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(*cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def add_sequence(data, user, n):
    """N frames in a new top-level folder, written into the catalog as the
    app writes them, each with an empty content file under media/<user>/."""
    db = sqlite3.connect(os.path.join(data, "users", f"{user}.sqlite"))
    now = "2026-11-28T12:00:00.000Z"
    folder = str(uuid.uuid4())
    db.execute("INSERT INTO file_nodes VALUES (?,?,?,?,?,?,?)", (folder, None, "Sequence", "folder", None, now, now))
    media = os.path.join(data, "media", user, "seq")
    os.makedirs(media, exist_ok=True)
    nodes, locs = [], []
    for i in range(n):
        nid = str(uuid.uuid4())
        path = os.path.join(media, f"{nid}.exr")
        open(path, "wb").close()
        nodes.append((nid, folder, f"frame_{i:07}.exr", "file", 0, now, now))
        locs.append((nid, path, "Media", now))
    db.executemany("INSERT INTO file_nodes VALUES (?,?,?,?,?,?,?)", nodes)
    db.executemany("INSERT INTO file_locations VALUES (?,?,?,?)", locs)
    db.commit()
    db.close()


def listings(folder):
    drop_caches()
    return {"ls -f": timed("ls", "-f", folder), "ls -l": timed("ls", "-l", folder),
            "ls -l again": timed("ls", "-l", folder)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    exe = os.path.join(ROOT, "target", "release", "markbase")
    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    tmp = tempfile.mkdtemp(prefix="markbase-bigdir-", dir=a.dir)
    results = {"disk": {}, "markbase": {}}
    mp = os.path.join(tmp, "mnt")
    try:
        native = os.path.join(tmp, "native")
        os.mkdir(native)
        for i in range(a.entries):
            open(os.path.join(native, f"frame_{i:07}.exr"), "wb").close()
        data = os.path.join(tmp, "data")
        sh(sys.executable, FIXTURE, "--data-dir", data, "--user", "seq", "--nodes", "100")
        add_sequence(data, "seq", a.entries)
        os.mkdir(mp)
        for run in range(a.runs):
            for k, v in listings(native).items():
                results["disk"].setdefault(k, []).append(v)
            sh(exe, "--data-dir", data, "fuse", "--mount", "--user", "seq", "--dir", mp)
            try:
                for k, v in listings(os.path.join(mp, "Sequence")).items():
                    results["markbase"].setdefault(k, []).append(v)
            finally:
                sh(exe, "fuse", "--unmount", "--dir", mp)
            last = {t: {k: round(v[-1]) for k, v in r.items()} for t, r in results.items()}
            print(f"run {run + 1}/{a.runs}: {last}", file=sys.stderr)
    finally:
        subprocess.run([exe, "fuse", "--unmount", "--dir", mp], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {t: {k: statistics.median(v) for k, v in r.items()} for t, r in results.items()}
    if a.json:
        print(json.dumps({"entries": a.entries, "runs": a.runs, "median_ms": med}, indent=2))
        return
    print(f"{a.entries} entries in one folder, medians of {a.runs} runs, ms (ratio = disk time / markbase time)")
    for k in med["disk"]:
        d, m = med["disk"][k], med["markbase"][k]
        print(f"{k:<12} disk {d:>8.0f}   markbase {m:>8.0f}   {d / m:>5.2f}x")


if __name__ == "__main__":
    main()
