# Sourced by the scripts that install what a fresh machine lacks.
#
# apt_install PKG...: installs the packages with apt-get, noninteractive (no
# standard input in CI), without recommends, keeping a configuration file
# that is already there (this suite writes /etc/fuse.conf; without
# --force-confold dpkg asks, finds no standard input and fails the package,
# and every later apt-get with it). On a failure it prints what apt-get and
# dpkg said (quiet otherwise), finishes what dpkg left half done
# (`dpkg --configure -a`, `apt-get -f install`) and tries once more.
apt_install() {
  [ $# -gt 0 ] || return 0
  export DEBIAN_FRONTEND=noninteractive
  local keep=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  local log
  log=$(mktemp)
  local try
  for try in 1 2; do
    if apt-get update -qq >"$log" 2>&1 &&
      apt-get install -y -qq --no-install-recommends "${keep[@]}" "$@" >>"$log" 2>&1 </dev/null; then
      rm -f "$log"
      return 0
    fi
    echo "apt-get install $* failed (try $try):" >&2
    tail -n 40 "$log" >&2
    dpkg --force-confdef --force-confold --configure -a </dev/null >&2 2>&1 || true
    apt-get -f install -y -qq "${keep[@]}" </dev/null >&2 2>&1 || true
  done
  rm -f "$log"
  return 1
}
