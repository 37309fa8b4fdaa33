#!/usr/bin/env bash
# Installs the Debian packages the test-suite needs when any is missing (root only).
# MBROLA voices live in Debian's contrib/non-free components, which a stock image lacks.
#   bash scripts/sysdeps.sh        everything `make test` needs (CI)
#   bash scripts/sysdeps.sh run    what `make run` needs for rooms: Janus (+ a C compiler for its
#                                  loopback shim); never fails: 1:1 calls work without them
set -euo pipefail
# rooms: Janus 1.1.2 (VideoRoom) and gcc + libc headers for server/janus_loopback.c
RUN_PKGS=(janus gcc libc6-dev)
PKGS=(espeak-ng sox libsox-fmt-all mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 mbrola-de1 mbrola-de2 mbrola-fr1 mbrola-fr4 chromium fonts-dejavu-core ffmpeg docker-compose "${RUN_PKGS[@]}")
mode="${1:-test}"
[ "$mode" = "run" ] && PKGS=("${RUN_PKGS[@]}")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }
if [ "$(id -u)" != "0" ]; then
  if [ "$mode" = "run" ]; then
    echo "rooms (calls with other people) need: ${missing[*]} — install them with: sudo bash scripts/sysdeps.sh run" >&2
    echo "starting without them: the 1:1 page works, /r/<room> pages will say rooms are unavailable" >&2
    exit 0
  fi
  echo "missing system packages: ${missing[*]} — run this as root (sudo bash scripts/sysdeps.sh)" >&2
  exit 1
fi
if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  cat > /etc/apt/sources.list.d/s2f-nonfree.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${codename}
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
echo "installing system packages: ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
