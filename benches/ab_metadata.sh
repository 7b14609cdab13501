#!/usr/bin/env bash
# A/B of small-file creates and unlinks between two markbase builds, in turns
# (new, old, new, old ...), each round on a fresh mount of a new library, so
# that a shared machine's drift hits both alike. Prints each round and the
# medians.
#
#   sudo benches/ab_metadata.sh NEW/markbase OLD/markbase [rounds] [files]
set -euo pipefail
new=${1:?usage: ab_metadata.sh NEW OLD [rounds] [files]}
old=${2:?usage: ab_metadata.sh NEW OLD [rounds] [files]}
rounds=${3:-8}
files=${4:-5000}

round() {
  local bin=$1 dir
  dir=$(mktemp -d /var/tmp/markbase-ab-XXXX)
  mkdir -p "$dir/mnt"
  "$bin" --data-dir "$dir/data" library create --user ab >/dev/null
  "$bin" --data-dir "$dir/data" fuse --mount --user ab --dir "$dir/mnt" >/dev/null
  mkdir "$dir/mnt/d"
  python3 - "$dir/mnt/d" "$files" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
for i in range(n):
    os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
c = n / (time.perf_counter() - t)
t = time.perf_counter()
for i in range(n):
    os.unlink(f"{d}/f{i}")
print(f"{c:.0f} {n / (time.perf_counter() - t):.0f}")
PY
  "$bin" --data-dir "$dir/data" fuse --unmount --dir "$dir/mnt" >/dev/null
  rm -rf "$dir"
}

out=$(for _ in $(seq "$rounds"); do
  echo "new $(round "$new")"
  echo "old $(round "$old")"
done | tee /dev/stderr)
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in sys.argv[1].splitlines()]
for which in ("new", "old"):
    c = [float(r[1]) for r in rows if r[0] == which]
    u = [float(r[2]) for r in rows if r[0] == which]
    print(f"{which}: creates median {statistics.median(c):.0f}/s, unlinks median {statistics.median(u):.0f}/s ({len(c)} rounds)")
PY
