#!/usr/bin/env python3
"""Sharing the catalog: how the MarkBase app's own writes fare while the mount
is busy, and two markbase processes on one library.

    sudo python3 benches/shared_catalog.py [--runs 3] [--files 20000] [--bursts 2]
                                           [--base-bin OLD_BINARY] [--mixed 10000]

Per run and per binary (this tree's release build, and --base-bin's), on a
fresh demo library:

  app writes    a second process stands in for the app: every 10 ms it
                inserts a `file_nodes` row with BEGIN IMMEDIATE and a 5 s busy
                timeout (Python's sqlite3, as an app with a busy handler does),
                while the mount untars --bursts x --files small files (1 KiB,
                40 folders). Reported: the app's writes, failures ("database
                is locked"), p50 / p99 / max latency of a write (BEGIN to
                COMMIT, or to the failure), the longest a row took to show in the mount, and the
                untar's own time beside the same untar on the disk.
                The untar alone (nobody else writing, a fresh library) too.
  two processes (--mixed N) the library mounted twice (the second process is a
                guest of the first's journal); N creates, renames and unlinks
                through both at once, half each. Reported: failed operations,
                inode numbers seen twice, and `markbase fsck`'s verdict.

Figures are medians of --runs. Needs root (mounts) and python3; builds the
binary if needed. Speed is measured here, never asserted by a test.
"""
import argparse, json, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, threading, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def app_writer(db, out, period=0.010, timeout=5.0):
    """The app: a row every `period` until SIGTERM; latencies to `out` (JSON)."""
    import signal
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conn = sqlite3.connect(db, timeout=timeout, isolation_level=None)
    now = lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    folder = str(uuid.uuid4())
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO file_nodes(node_id, parent_id, label, node_type, size, created_at, updated_at) "
                 "VALUES(?, NULL, 'FromApp', 'folder', 0, ?, ?)", (folder, now(), now()))
    conn.execute("COMMIT")
    rows, failed = [], []
    i = 0
    next_at = time.monotonic()
    while not stop.is_set():
        i += 1
        label = f"app-{i:06}.txt"
        t0 = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO file_nodes(node_id, parent_id, label, node_type, size, created_at, updated_at) "
                         "VALUES(?, ?, ?, 'file', 0, ?, ?)", (str(uuid.uuid4()), folder, label, now(), now()))
            conn.execute("COMMIT")
            rows.append((label, t0, time.monotonic() - t0))
        except sqlite3.OperationalError as e:
            failed.append((label, time.monotonic() - t0, str(e)))
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    with open(out, "w") as f:
        json.dump({"rows": rows, "failed": failed}, f)


def make_tar(tmp, files, folders=40):
    src = os.path.join(tmp, "src")
    tree = os.path.join(src, "tree")
    block = os.urandom(1024)
    for i in range(files):
        d = os.path.join(tree, f"dir{i % folders:03}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i:06}.dat"), "wb") as f:
            f.write(block)
    tar = os.path.join(tmp, "tree.tar")
    sh("tar", "-cf", tar, "-C", src, "tree")
    shutil.rmtree(src)
    return tar


def untar(tar, dest, bursts):
    t = time.perf_counter()
    for b in range(bursts):
        d = os.path.join(dest, f"burst{b}")
        os.mkdir(d)
        sh("tar", "-xf", tar, "-C", d)
    return time.perf_counter() - t


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class Library:
    """A fresh demo library mounted by `exe` (more mounts with `mount`)."""

    def __init__(self, exe, tmp, user="app"):
        self.exe, self.tmp, self.user = exe, tmp, user
        self.data = os.path.join(tmp, "data")
        self.mounts = []
        sh(exe, "--data-dir", self.data, "library", "create", "--user", user, "--demo")
        self.db = os.path.join(self.data, "users", f"{user}.sqlite")

    def mount(self, name):
        mp = os.path.join(self.tmp, name)
        os.mkdir(mp)
        sh(self.exe, "--data-dir", self.data, "fuse", "--mount", "--user", self.user, "--dir", mp)
        self.mounts.append(mp)
        return mp

    def close(self):
        for mp in reversed(self.mounts):
            sh(self.exe, "fuse", "--unmount", "--dir", mp, check=False)

    def fsck(self):
        out = sh(self.exe, "--data-dir", self.data, "fsck", "--user", self.user, check=False)
        return out.returncode, (out.stdout + out.stderr).strip().splitlines()[-1:]


def app_run(exe, tar, bursts):
    tmp = tempfile.mkdtemp(prefix="mb-share-")
    lib = Library(exe, tmp)
    try:
        mp = lib.mount("mnt")
        out = os.path.join(tmp, "app.json")
        app = subprocess.Popen([sys.executable, __file__, "--app-writer", lib.db, out])
        seen, stop = {}, threading.Event()

        def watch():
            # When each app row first shows in the mount.
            d = os.path.join(mp, "FromApp")
            while not stop.is_set():
                try:
                    for n in os.listdir(d):
                        seen.setdefault(n, time.monotonic())
                except OSError:
                    pass
                time.sleep(0.1)

        w = threading.Thread(target=watch)
        w.start()
        time.sleep(0.5)
        secs = untar(tar, mp, bursts)
        time.sleep(0.3)
        app.terminate()
        app.wait()
        time.sleep(2.5)
        stop.set()
        w.join()
        got = json.load(open(out))
        # Every attempt counts: a failed write waited out the busy timeout.
        lat = [r[2] * 1000 for r in got["rows"]] + [f[1] * 1000 for f in got["failed"]]
        lag = [seen[label] - t0 for label, t0, _ in got["rows"] if label in seen]
        unseen = sum(1 for r in got["rows"] if r[0] not in seen)
        return {"untar_s": secs, "writes": len(lat), "failed": len(got["failed"]),
                "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat, default=float("nan")),
                "lag_max_s": max(lag, default=float("nan")), "unseen": unseen}
    finally:
        lib.close()
        shutil.rmtree(tmp, ignore_errors=True)


def alone_run(exe, tar, bursts):
    """The same untar into a fresh library's mount with nobody else writing."""
    tmp = tempfile.mkdtemp(prefix="mb-share-")
    lib = Library(exe, tmp)
    try:
        return untar(tar, lib.mount("mnt"), bursts)
    finally:
        lib.close()
        shutil.rmtree(tmp, ignore_errors=True)


def mixed_run(exe, n):
    tmp = tempfile.mkdtemp(prefix="mb-share-")
    lib = Library(exe, tmp)
    try:
        a, b = lib.mount("a"), lib.mount("b")
        failures, inos = [], {}

        def work(mp, tag, count):
            # Create (and stat), then rename every second file and unlink
            # every third: `count` operations in all.
            d = os.path.join(mp, f"work-{tag}")
            try:
                os.mkdir(d)
            except OSError as e:
                failures.append(f"{tag} mkdir: {e}")
                return
            ops = i = 0
            while ops < count:
                p = os.path.join(d, f"f{i:05}")
                try:
                    with open(p, "wb") as f:
                        f.write(b"x" * 100)
                    inos[(tag, i)] = os.stat(p).st_ino
                    ops += 1
                    if i % 2 == 0:
                        os.rename(p, p + ".moved")
                        p += ".moved"
                        ops += 1
                    if i % 3 == 0:
                        os.unlink(p)
                        ops += 1
                except OSError as e:
                    failures.append(f"{tag} {p}: {e}")
                    ops += 1
                i += 1

        ts = [threading.Thread(target=work, args=(mp, tag, n // 2)) for mp, tag in ((a, "a"), (b, "b"))]
        [t.start() for t in ts]
        [t.join() for t in ts]
        sh("sync")
        dup = len(inos) - len(set(inos.values()))
        lib.close()
        lib.mounts = []
        rc, verdict = lib.fsck()
        return {"failed": len(failures), "dup_inos": dup, "fsck_rc": rc, "fsck": " ".join(verdict),
                "first_failures": failures[:3]}
    finally:
        lib.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--bursts", type=int, default=2)
    ap.add_argument("--mixed", type=int, default=10_000, help="operations through two processes (0: skip)")
    ap.add_argument("--base-bin", help="an older markbase binary, run beside this build (before/after)")
    ap.add_argument("--bin", help="this build's binary (default: build target/release/markbase)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--app-writer", nargs=2, metavar=("DB", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.app_writer:
        return app_writer(*a.app_writer)
    exe = a.bin
    if not exe:
        sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
        exe = os.path.join(ROOT, "target", "release", "markbase")
    bins = [("after", exe)] + ([("before", a.base_bin)] if a.base_bin else [])
    tmp = tempfile.mkdtemp(prefix="mb-share-src-")
    results = {name: {"app": [], "mixed": []} for name, _ in bins}
    native = []
    try:
        tar = make_tar(tmp, a.files)
        for run in range(a.runs):
            d = tempfile.mkdtemp(prefix="native-", dir=tmp)
            native.append(untar(tar, d, a.bursts))
            shutil.rmtree(d)
            for name, b in (bins if run % 2 == 0 else bins[::-1]):
                r = app_run(b, tar, a.bursts)
                r["alone_s"] = alone_run(b, tar, a.bursts)
                results[name]["app"].append(r)
                print(f"run {run + 1} {name}: {json.dumps(r)}", file=sys.stderr)
                if a.mixed:
                    m = mixed_run(b, a.mixed)
                    results[name]["mixed"].append(m)
                    print(f"run {run + 1} {name} two processes: {json.dumps(m)}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    disk = statistics.median(native)
    if a.json:
        print(json.dumps({"native_untar_s": native, "results": results}, indent=1))
        return
    files = a.files * a.bursts
    print(f"{files:,}-file untar with the app writing every 10 ms (busy timeout 5 s); medians of {a.runs} runs;"
          f" the disk untars in {disk:.2f} s")
    print(f"{'build':8} {'alone s':>8} {'untar s':>8} {'x disk':>7} {'writes':>7} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'max ms':>8} {'seen s':>7}")
    for name, _ in bins:
        rs = results[name]["app"]
        med = lambda k: statistics.median(r[k] for r in rs)
        print(f"{name:8} {med('alone_s'):8.2f} {med('untar_s'):8.2f} {med('untar_s') / disk:7.1f} {med('writes'):7.0f}"
              f" {sum(r['failed'] for r in rs):7d} {med('p50_ms'):8.1f} {med('p99_ms'):8.1f} {med('max_ms'):8.0f}"
              f" {max(r['lag_max_s'] for r in rs):7.2f}")
    if a.mixed:
        print(f"\ntwo processes on one library (two mounts), {a.mixed:,} operations through both, per run:")
        for name, _ in bins:
            for m in results[name]["mixed"]:
                print(f"{name:8} failed {m['failed']:5d}  inode numbers seen twice {m['dup_inos']:4d}"
                      f"  fsck {m['fsck_rc']} {m['fsck']}")


if __name__ == "__main__":
    sys.exit(main())
