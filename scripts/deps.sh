#!/usr/bin/env bash
# What bhrd's make targets need from the system, in one place.
#
#   scripts/deps.sh go      print the path of a go that builds this module,
#                           installing Debian's golang-1.23-go from
#                           bookworm-backports when there is none
#   scripts/deps.sh test    install the packages the test suite uses
#   scripts/deps.sh bench   install the packages make bench uses too
#   scripts/deps.sh list    print the package lists
#
# Everything it installs it says on stderr first. It installs with apt-get
# as root, or through sudo (which may ask for a password); without either
# it says what is missing and goes on (the tests that need a missing part
# then skip loudly, or fail under CI's BHRD_REQUIRE_* variables).
#
# The go it finds or installs need not be the release go.mod names: Go
# 1.21 and later fetch that release through the module proxy on first use
# (GOTOOLCHAIN=auto, set by the Makefile; Debian's go.env says "local").
set -euo pipefail

# The packages, by what needs them. A command or file tells whether each
# is there already.
test_pkgs=(
  "postgresql:/usr/lib/postgresql/*/bin/initdb" # internal/pgtest runs a throw-away cluster
  "bird2:bird"                                   # BIRD peers (pkg/bgp, internal/app)
  "frr:/usr/lib/frr/bgpd"                        # FRR peers (internal/app)
  "iproute2:ip"                                  # network namespaces (null routes)
  "util-linux:runuser"                           # initdb and postgres as user postgres
  "memcached:memcached"                          # pkg/httpbl/memcache
  "git:git"                                      # the version stamped into the binary
  "gcc:gcc"                                      # cgo, for go test -race
  "chromium:chromium"                            # the web pages' browser tests (chromedp)
  "fonts-dejavu-core:/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" # legible screenshots
)
bench_pkgs=(
  "rbldnsd:rbldnsd" # the reference DNSBL server, scripts/bench-dnsbl.sh
  "dnsperf:dnsperf" # its load generator
)
go_pkg=golang-1.23-go
go_min=21 # go1.21: the first that switches toolchains by go.mod

say() { echo "deps: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    say "running with sudo: $*"
    sudo "$@"
  else
    return 127
  fi
}

present() { # "pkg:probe"
  local probe=${1#*:}
  if [[ $probe == /* ]]; then
    compgen -G "$probe" >/dev/null
  else
    command -v "$probe" >/dev/null 2>&1 || [ -x "/usr/sbin/$probe" ]
  fi
}

apt_updated=
apt_install() { # [apt-get install options...] packages...
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -q >&2 || return $?
    apt_updated=1
  fi
  as_root apt-get install -y -q --no-install-recommends "$@" >&2
}

install_missing() { # pkg:probe...
  local need=()
  for p in "$@"; do
    present "$p" || need+=("${p%%:*}")
  done
  [ ${#need[@]} = 0 ] && return 0
  say "installing from Debian's packages: ${need[*]}"
  if ! apt_install "${need[@]}"; then
    say "could not install ${need[*]} (not root, no sudo, or apt-get failed); the tests needing them will skip or fail"
  fi
}

# go_ok GO: GO runs and is go1.$go_min or later.
go_ok() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go1.}
  v=${v%%.*}
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge $go_min ]
}

find_go() {
  local g
  if g=$(command -v go 2>/dev/null) && go_ok "$g"; then
    echo "$g"
    return 0
  fi
  # Debian's versioned packages, newest first.
  for g in $(ls -d /usr/lib/go-1.*/bin/go 2>/dev/null | sort -t. -k2 -n -r); do
    if go_ok "$g"; then
      echo "$g"
      return 0
    fi
  done
  return 1
}

install_go() {
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding Debian's bookworm-backports suite (/etc/apt/sources.list.d/bookworm-backports.sources) for $go_pkg"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  fi
  say "no go 1.$go_min or later on the PATH: installing $go_pkg from bookworm-backports (it fetches the Go release go.mod names on first use)"
  apt_install -t bookworm-backports "$go_pkg"
}

case "${1:-}" in
go)
  if ! find_go; then
    install_go || { say "could not install $go_pkg: install Go 1.$go_min or later and put it on the PATH"; exit 1; }
    find_go || { say "$go_pkg installed but no usable go found"; exit 1; }
  fi
  ;;
test) install_missing "${test_pkgs[@]}" ;;
bench) install_missing "${test_pkgs[@]}" "${bench_pkgs[@]}" ;;
list)
  echo "go: $go_pkg (bookworm-backports), when no go 1.$go_min+ is on the PATH"
  echo "test: ${test_pkgs[*]%%:*}"
  echo "bench: the test packages and ${bench_pkgs[*]%%:*}"
  ;;
*)
  echo "usage: $0 go|test|bench|list" >&2
  exit 2
  ;;
esac
