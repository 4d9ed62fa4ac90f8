#!/bin/sh
# mmdebstrap customize hook: $1 is the root of the new image.
# Lab containers may write /proc/sys (for network-namespaced sysctls), so the boot-time
# systemd-sysctl must not run there: it would apply host-wide keys to the host's kernel.
set -eu
root="$1"
ln -sf /dev/null "$root/etc/systemd/system/systemd-sysctl.service"
# An empty machine-id: systemd creates a fresh one per container at first boot.
: > "$root/etc/machine-id"
# Keep the image small: no docs. The apt lists stay, as on a freshly flashed device.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/*
