#!/usr/bin/env python3
"""Throughput through Samba (issue 28's studio server), against the disk, in
one run:

    sudo python3 benches/smb.py [--size 2G] [--streams 1,4] [--runs 3] [--dir D]

Three targets, each written then read with caches dropped between:

  disk         the disk itself: dd from /dev/shm with fsync, read to /dev/null
  smb-disk     Samba (markbase share's options) on a plain folder of the same
               disk: Samba's own cost
  smb-markbase Samba on a user's FUSE mount (kernel passthrough underneath):
               what a studio's Mac gets, less the network

The client is `smbclient` on loopback (SMB3), with --streams files moved at
once, one connection each; its source is /dev/shm and its sink /dev/null, so
neither side is the limit. Rows give MB/s (all streams together), the ratio to
the disk, and where the CPU went per GiB moved: smbclient, smbd (its clients'
processes included) and the markbase daemon (with passthrough, data never
reaches it). Figures are medians of --runs. A QEMU guest's kernel SMB client
(tests/smb_guest.rs) runs under software emulation here: its speed would be
the emulated CPU's, so it is not a target.

Needs root (drop_caches, mounts, Samba's accounts), Samba with vfs_fruit and
smbclient (installed with apt-get when missing), and a release build.
"""
import argparse, json, os, resource, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "..", "shared", "fixtures", "make_library.py")
PASSWORD = "markbase-bench"
CLK = os.sysconf("SC_CLK_TCK")


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def size_bytes(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * units[s[-1].upper()] if s[-1].upper() in units else int(s)


def cpu_s(pid, children=False):
    """utime + stime of a process (and, with children, of those it reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After ")": state is fields[0]; utime is field 14 of stat, so [11].
    t = int(fields[11]) + int(fields[12])
    if children:
        t += int(fields[13]) + int(fields[14])
    return t / CLK


def smbd_cpu(parent):
    """smbd's CPU: the parent, its reaped children, and its live children."""
    total = cpu_s(parent, children=True)
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent:
                total += cpu_s(int(p), children=True)
    return total


def ensure_tools():
    missing = []
    if not shutil.which("smbd") and not os.path.exists("/usr/sbin/smbd"):
        missing.append("samba")
    if not shutil.which("smbclient"):
        missing.append("smbclient")
    if not any(os.path.exists(f"/usr/lib/{d}/samba/vfs/fruit.so") for d in os.listdir("/usr/lib")):
        missing.append("samba-vfs-modules")
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


class Studio:
    """One library mounted with --allow-other, Samba serving it and a plain
    folder of the same disk."""

    def __init__(self, work, exe, port):
        self.work, self.exe, self.port = work, exe, port
        self.data = os.path.join(work, "data")
        self.drives = os.path.join(work, "drives")
        self.plain = os.path.join(work, "plain")
        os.makedirs(self.plain)
        sh("python3", FIXTURE, "--data-dir", self.data, "--user", "bench", "--nodes", "20")
        with open(os.path.join(self.data, "markbase.toml"), "w") as f:
            f.write('[users.bench]\nsmb_users = ["root"]\n')
        sh(exe, "--data-dir", self.data, "fuse", "--mount", "--all", "--allow-other", "--dir", self.drives)
        self.mount = os.path.join(self.drives, "MarkBase_bench")
        state = os.path.join(work, "samba")
        sh(exe, "--data-dir", self.data, "share", "--all", "--dir", self.drives,
           "--smb-port", str(port), "--state-dir", state)
        self.conf = os.path.join(state, "smb.conf")
        # The plain folder, shared with the same options (they are global).
        with open(self.conf, "a") as f:
            f.write(f"\n[disk]\n   path = {self.plain}\n   valid users = root\n   read only = no\n")
        p = subprocess.run(["smbpasswd", "-c", self.conf, "-a", "-s", "root"],
                           input=f"{PASSWORD}\n{PASSWORD}\n", capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"smbpasswd: {p.stderr}")
        smbd = shutil.which("smbd") or "/usr/sbin/smbd"
        self.smbd = subprocess.Popen([smbd, "--foreground", "--no-process-group", "--configfile", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        import socket
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("smbd did not listen")

    def daemon_pid(self):
        out = sh(self.exe, "fuse", "--status", "--json", check=False).stdout
        try:
            for m in json.loads(out):
                if m.get("mountpoint") == self.mount or m.get("path") == self.mount:
                    return int(m["pid"])
        except (ValueError, KeyError, TypeError):
            pass
        return None

    def stop(self):
        try:
            os.killpg(self.smbd.pid, 15)
            self.smbd.wait(10)
        except Exception:
            try:
                os.killpg(self.smbd.pid, 9)
            except OSError:
                pass
        sh(self.exe, "--data-dir", self.data, "fuse", "--unmount", "--all", check=False)


def smbclient(studio, share, commands):
    return subprocess.Popen(
        ["smbclient", f"//127.0.0.1/{share}", "-p", str(studio.port), "-m", "SMB3",
         "-U", f"root%{PASSWORD}", "--configfile", studio.conf, "-c", commands],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def remove(studio, target, names):
    """The files a target's write made."""
    folder = {"disk": studio.plain, "smb-disk": studio.plain, "smb-markbase": studio.mount}[target]
    prefix = "d-" if target == "disk" else ""
    for name in names:
        try:
            os.remove(os.path.join(folder, prefix + name))
        except FileNotFoundError:
            pass


def transfer(studio, target, direction, sources, names):
    """Move every stream at once; (seconds, CPU per process kind)."""
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    pid = studio.daemon_pid()
    smbd0, mb0 = smbd_cpu(studio.smbd.pid), cpu_s(pid) if pid else 0.0
    t0 = time.monotonic()
    if target == "disk":
        folder = studio.plain
        procs = []
        for src, name in zip(sources, names):
            dst = os.path.join(folder, "d-" + name)
            if direction == "write":
                procs.append(subprocess.Popen(["dd", f"if={src}", f"of={dst}", "bs=4M", "conv=fsync"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            else:
                procs.append(subprocess.Popen(["dd", f"if={dst}", "of=/dev/null", "bs=4M"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    else:
        share = "disk" if target == "smb-disk" else "MarkBase_bench"
        procs = []
        for src, name in zip(sources, names):
            cmd = f"put {src} {name}" if direction == "write" else f"get {name} /dev/null"
            procs.append(smbclient(studio, share, cmd))
    for p in procs:
        p.wait()
        if p.returncode != 0:
            err = p.stderr.read() if p.stderr else ""
            sys.exit(f"{target} {direction}: {err}")
    if direction == "write" and target != "disk":
        os.sync()
    secs = time.monotonic() - t0
    time.sleep(0.3)  # smbd reaps its clients' processes
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {
        "client": (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime),
        "smbd": smbd_cpu(studio.smbd.pid) - smbd0,
        "markbase": (cpu_s(pid) - mb0) if pid else 0.0,
    }
    return secs, cpu


def profile(studio, sources, scratch):
    """`perf record -a` around one write and one read through smb-markbase;
    the report by process and library, for each."""
    if not shutil.which("perf"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "linux-perf"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    out = []
    for direction in ["write", "read"]:
        data = os.path.join(scratch, f"perf-{direction}.data")
        if direction == "read":
            drop_caches()
        rec = subprocess.Popen(["perf", "record", "-a", "-F", "499", "-o", data],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        transfer(studio, "smb-markbase", direction, sources, ["perf.bin"])
        rec.send_signal(2)
        rec.wait()
        rep = sh("perf", "report", "-i", data, "--stdio", "--sort", "comm,dso,sym", "--comms", "smbd,smbclient,markbase,dd",
                 "--percent-limit", "1.5", check=False).stdout
        out.append((direction, "\n".join(l for l in rep.splitlines() if l and not l.startswith("#"))))
        os.remove(data)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2G", help="bytes per stream")
    ap.add_argument("--streams", default="1,4", help="streams at once, per row (comma-separated)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp", help="where the library and the plain folder go")
    ap.add_argument("--port", type=int, default=4459)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one write and one read through smb-markbase with perf "
                         "(the whole machine): the CPU's share by process and library")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benches/smb.py: run as root (drop_caches, mounts, Samba's accounts)")
    ensure_tools()
    exe = os.path.join(ROOT, "target", "release", "markbase")
    if not os.path.exists(exe):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    size = size_bytes(a.size)
    streams = [int(s) for s in a.streams.split(",")]
    work = tempfile.mkdtemp(prefix="mbsmb-", dir=a.dir)
    shm = tempfile.mkdtemp(prefix="mbsmb-", dir="/dev/shm")
    studio = None
    rows = []
    try:
        studio = Studio(work, exe, a.port)
        sources = []
        for i in range(max(streams)):
            src = os.path.join(shm, f"s{i}.bin")
            with open(src, "wb") as f:
                left = size
                while left:
                    n = min(left, 64 << 20)
                    f.write(os.urandom(n))
                    left -= n
            sources.append(src)
        targets = ["disk", "smb-disk", "smb-markbase"]
        for n in streams:
            results = {(t, d): [] for t in targets for d in ["write", "read"]}
            names = [f"f{n}-{i}.bin" for i in range(n)]
            for r in range(a.runs):
                # Alternating order, so drift hits every target alike; each
                # target writes, reads (caches dropped) and removes its files.
                for t in (targets if r % 2 == 0 else list(reversed(targets))):
                    for direction in ["write", "read"]:
                        if direction == "read":
                            drop_caches()
                        secs, cpu = transfer(studio, t, direction, sources[:n], names)
                        results[(t, direction)].append((n * size / secs / 1e6, cpu))
                    remove(studio, t, names)
            for direction in ["write", "read"]:
                disk = statistics.median(x for x, _ in results[("disk", direction)])
                for t in targets:
                    got = results[(t, direction)]
                    mbs = statistics.median(x for x, _ in got)
                    gib = n * size / (1 << 30)
                    cpu = {k: statistics.median(c[k] for _, c in got) / gib
                           for k in ["client", "smbd", "markbase"]}
                    rows.append({"streams": n, "op": direction, "target": t, "mb_s": round(mbs),
                                 "all_mb_s": [round(x) for x, _ in got], "ratio": round(mbs / disk, 2),
                                 "cpu_s_per_gib": {k: round(v, 3) for k, v in cpu.items()}})
        if a.profile:
            profiles = profile(studio, sources[:1], shm)
    finally:
        if studio:
            studio.stop()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    if a.profile:
        for direction, text in profiles:
            print(f"\nperf, one stream {direction} through smb-markbase: CPU by process and library")
            print(text)
    print(f"{a.size} per stream, medians of {a.runs}; CPU seconds per GiB moved (client = dd or smbclient)")
    print(f"{'streams':>7} {'op':<6} {'target':<13} {'MB/s':>7} {'x disk':>7} {'client':>7} {'smbd':>7} {'markbase':>8}  runs")
    for r in rows:
        c = r["cpu_s_per_gib"]
        print(f"{r['streams']:>7} {r['op']:<6} {r['target']:<13} {r['mb_s']:>7} {r['ratio']:>7} "
              f"{c['client']:>7} {c['smbd']:>7} {c['markbase']:>8}  {r['all_mb_s']}")


if __name__ == "__main__":
    main()
