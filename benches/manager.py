#!/usr/bin/env python3
"""The mount manager's benchmark: mount latency and concurrent writes.

    sudo python3 benches/manager.py [--runs 3] [--write-size 1G]

1. Mount latency: `markbase fuse --mount --all` for 1, 10 and 100 users, each
   with a 12,659-node catalog (made once by the shared fixture generator and
   copied), timed from the command's start until it returns (every mount
   answering), median of --runs; and one user with a 10x larger catalog, to
   show that mount time does not grow with the library.
2. Concurrent writes: ten users each writing --write-size through their own
   mount at once (1 MiB blocks, fsync at end), against ten writers on the
   backing directory, in the same run; aggregate MB/s and the ratio.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "..", "shared", "fixtures", "make_library.py")


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def make_users(data, n, nodes=12659):
    src = os.path.join(data, "users", "u000.sqlite")
    if not os.path.exists(src):
        run(sys.executable, FIXTURE, "--data-dir", data, "--user", "u000", "--nodes", str(nodes))
    for i in range(1, n):
        dst = os.path.join(data, "users", f"u{i:03}.sqlite")
        if not os.path.exists(dst):
            shutil.copyfile(src, dst)


def timed_mount_all(exe, data, base):
    t = time.perf_counter()
    run(exe, "--data-dir", data, "fuse", "--mount", "--all", "--dir", base)
    dt = time.perf_counter() - t
    run(exe, "--data-dir", data, "fuse", "--unmount", "--all")
    return dt


def writer(path, size, results, i):
    block = b"\x5a" * (1 << 20)
    t = time.perf_counter()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    done = 0
    while done < size:
        done += os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    results[i] = (done, time.perf_counter() - t)


def concurrent(paths, size):
    results = [None] * len(paths)
    ts = [threading.Thread(target=writer, args=(p, size, results, i)) for i, p in enumerate(paths)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    wall = time.perf_counter() - t
    for p in paths:
        os.unlink(p)
    return sum(r[0] for r in results) / wall / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write-size", default="1G")
    a = ap.parse_args()
    size = int(a.write_size.rstrip("GgMm")) * (1 << 30 if a.write_size[-1] in "Gg" else 1 << 20)
    run("cargo", "build", "--release", "--quiet", cwd=ROOT)
    exe = os.path.join(ROOT, "target", "release", "markbase")
    tmp = tempfile.mkdtemp(prefix="markbase-mgr-", dir="/var/tmp")
    try:
        print("mount latency (`--mount --all`, until every mount answers), median of", a.runs, "runs")
        for n in (1, 10, 100):
            data = os.path.join(tmp, f"data{n}")
            os.makedirs(os.path.join(data, "users"), exist_ok=True)
            src = os.path.join(tmp, "data1", "users", "u000.sqlite")
            if os.path.exists(src) and n > 1:
                shutil.copyfile(src, os.path.join(data, "users", "u000.sqlite"))
            make_users(data, n)
            base = os.path.join(tmp, f"mnt{n}")
            times = [timed_mount_all(exe, data, base) for _ in range(a.runs)]
            print(f"  {n:>3} users x 12,659 nodes: {statistics.median(times) * 1000:8.1f} ms")
        big = os.path.join(tmp, "big")
        run(sys.executable, FIXTURE, "--data-dir", big, "--user", "u000", "--nodes", "126590")
        times = [timed_mount_all(exe, big, os.path.join(tmp, "mntbig")) for _ in range(a.runs)]
        print(f"    1 user  x 126,590 nodes: {statistics.median(times) * 1000:8.1f} ms")

        data = os.path.join(tmp, "data10")
        base = os.path.join(tmp, "mntw")
        run(exe, "--data-dir", data, "fuse", "--mount", "--all", "--dir", base)
        try:
            native = os.path.join(tmp, "native")
            os.makedirs(native)
            mb, nat = [], []
            for _ in range(a.runs):
                mb.append(concurrent([os.path.join(base, f"MarkBase_u{i:03}", f"w{i}.bin") for i in range(10)], size))
                nat.append(concurrent([os.path.join(native, f"w{i}.bin") for i in range(10)], size))
            m, n = statistics.median(mb), statistics.median(nat)
            print(f"ten writers x {a.write_size} at once (fsync at end), median of {a.runs}:")
            print(f"  through ten mounts {m:8.0f} MB/s   backing directory {n:8.0f} MB/s   ratio {m / n:.2f}x")
        finally:
            run(exe, "--data-dir", data, "fuse", "--unmount", "--all")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
