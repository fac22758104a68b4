#!/usr/bin/env bash
# Installs the Debian tools the test suite drives, when they are missing.
# As root with apt it installs them; otherwise it fails naming them. It never
# lets the suite skip a test for want of a tool.
set -euo pipefail

# command -> Debian package
declare -A tools=(
  [curl]=curl
  [jq]=jq
  [script]=util-linux
  [prlimit]=util-linux
  [qemu-img]=qemu-utils
  [qemu-io]=qemu-utils
  [nbdinfo]=libnbd-bin
  [nbdcopy]=libnbd-bin
  [nbdsh]=python3-libnbd
  [fio]=fio
  [nbdkit]=nbdkit
  [qemu-system-x86_64]=qemu-system-x86
  [faketime]=faketime
  [promtool]=prometheus
  [chromium]=chromium
  [setpriv]=util-linux
  [fincore]=util-linux-extra
  [libvirtd]=libvirt-daemon-system
  [virsh]=libvirt-clients
  [virt-xml-validate]=libvirt-clients
  [xmllint]=libxml2-utils
  [shellcheck]=shellcheck
  [systemd-analyze]=systemd
  [systemd-sysusers]=systemd
  [ceph-mon]=ceph-mon
  [ceph-osd]=ceph-osd
  [rados]=ceph-common
  [radosgw]=radosgw
  [radosgw-admin]=radosgw
)

missing=()
for command in "${!tools[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${tools[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install_tools: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "install_tools: the tests need these Debian packages: ${missing[*]}" >&2
  echo "install_tools: install them (apt-get install ${missing[*]}) and run again" >&2
  exit 1
fi
