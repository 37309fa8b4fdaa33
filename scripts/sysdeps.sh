#!/usr/bin/env bash
# Installs the Debian packages the test-suite needs when any is missing (root only).
# MBROLA voices live in Debian's contrib/non-free components, which a stock image lacks: we
# add those components for the archive(s) this machine already uses (the same URIs, suite and
# keyring as its own apt sources), never naming a mirror of our own.
#   bash scripts/sysdeps.sh                       install what is missing
#   bash scripts/sysdeps.sh --nonfree-sources DIR print the contrib/non-free entries that would be
#                                                 added for the apt configuration in DIR (a copy of /etc/apt)
#   bash scripts/sysdeps.sh run                   only what `make run` needs for rooms (Janus, and a C
#                                                 compiler for its loopback shim); never fails: 1:1 calls
#                                                 work without them
set -euo pipefail
# rooms: Janus 1.1.2 (VideoRoom) and gcc + libc headers for server/janus_loopback.c
RUN_PKGS=(janus gcc libc6-dev)
# docker-compose: tests/test_rooms_units.py validates docker-compose.yml with `docker-compose config`
PKGS=(espeak-ng sox libsox-fmt-all mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 mbrola-de1 mbrola-de2 mbrola-fr1 mbrola-fr4
  chromium firefox-esr pulseaudio fonts-dejavu-core ffmpeg docker-compose "${RUN_PKGS[@]}")
OURS=s2f-contrib-non-free

# The entries to add, from the deb822 (*.sources) and one-line (*.list) sources under $1 whose
# suite is this release's codename and that lack non-free: same type, URIs, suite, options and
# keyring, with "contrib non-free" as components. Prints "deb822" or "list" blocks on stdout.
nonfree_sources() {
  local dir=$1 codename=$2 f
  for f in "$dir"/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    case "$f" in *"/$OURS.sources") continue ;; esac
    awk -v codename="$codename" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " codename " ") && comps !~ /non-free( |$)/ && enabled != "no" && uris != "") {
          printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib non-free\n", uris, codename
          if (signed != "") printf "Signed-By: %s\n", signed
          printf "\n"
        }
        types = uris = suites = comps = signed = enabled = ""; last = ""
      }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { if (last == "signed-by") signed = signed "\n" $0; next }
      {
        key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val); last = key
        if (key == "types") types = val; else if (key == "uris") uris = val; else if (key == "suites") suites = val
        else if (key == "components") comps = val; else if (key == "signed-by") signed = val; else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }
    ' "$f" | sed 's/^/deb822 /'
  done
  for f in "$dir"/sources.list "$dir"/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    case "$f" in *"/$OURS.list") continue ;; esac
    awk -v codename="$codename" '
      $1 != "deb" { next }
      {
        i = 2; opts = ""
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { opts = opts $i " "; i++ } opts = opts $i " "; i++ }
        uri = $i; suite = $(i + 1); comps = ""
        for (j = i + 2; j <= NF; j++) comps = comps " " $j
        if (suite == codename && comps !~ /non-free( |$)/) print "deb " opts uri " " suite " contrib non-free"
      }
    ' "$f" | sed 's/^/list /'
  done
}

codename_of() {
  local dir=${1:-/etc}
  (. "$dir/os-release" 2>/dev/null && echo "${VERSION_CODENAME:-}") || true
}

if [ "${1:-}" = "--nonfree-sources" ]; then
  nonfree_sources "$2" "${3:-$(codename_of)}"
  exit 0
fi

mode=test
if [ "${1:-}" = "run" ]; then
  mode=run
  PKGS=("${RUN_PKGS[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node + npm drive Firefox (puppeteer-core, tests/browser/); any existing install will do
if [ "$mode" = test ]; then
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }
if [ "$(id -u)" != "0" ]; then
  if [ "$mode" = run ]; then
    echo "rooms (calls with other people) need: ${missing[*]} — install them with: sudo bash scripts/sysdeps.sh run" >&2
    echo "starting without them: the 1:1 page works, /r/<room> pages say rooms are unavailable" >&2
    exit 0
  fi
  echo "missing system packages: ${missing[*]} — run this as root (sudo bash scripts/sysdeps.sh)" >&2
  exit 1
fi
codename=$(codename_of)
rm -f /etc/apt/sources.list.d/s2f-nonfree.sources  # written (with a fixed host) by earlier versions of this script
if [ -n "$codename" ]; then
  entries=$(nonfree_sources /etc/apt "$codename")
  deb822=$(printf '%s\n' "$entries" | sed -n 's/^deb822 \{0,1\}//p')
  oneline=$(printf '%s\n' "$entries" | sed -n 's/^list //p')
  if [ -n "${deb822//[$'\n' ]/}" ]; then
    printf '%s\n' "$deb822" > "/etc/apt/sources.list.d/$OURS.sources"
  fi
  if [ -n "$oneline" ]; then
    printf '%s\n' "$oneline" > "/etc/apt/sources.list.d/$OURS.list"
  fi
fi
echo "installing system packages: ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
