#!/bin/bash
# nvzramconfig.sh LAB STAND-IN (rvm-fleet) for JetPack's /etc/systemd/nvzramconfig.sh (nvidia-l4t-init),
# run at boot by nvzramconfig.service. What NVIDIA's script does, as public copies of it show (JetPack
# 4 to 6; not read from a JetPack 6.2 image here): load zram with one device per CPU (num_devices, or
# zram_num_devices on old kernels), give each device an equal share of HALF of MemTotal as `free`
# reports it, mkswap it and swap on it at priority 5. It sets no compressor: the kernel's default
# (lzo-rle). On an Orin Nano 8 GB: six devices of about 635 MB, about 3.8 GB in all.
# The one difference: the real script writes the size to /sys/block/zramN/disksize, which a container
# cannot; this one gives it to zramctl (the lab's stand-in, lab/jetson/bin/swaptools) instead.
set -e
cpus=$(grep -c '^processor' /proc/cpuinfo)
[ "$cpus" -gt 0 ] || cpus=1
modprobe zram "num_devices=${cpus}"
total_kib=$(LC_ALL=C free | awk '$1 == "Mem:" { print $2 }')
per_device=$((total_kib / 2 / cpus * 1024))
for ((n = 0; n < cpus; n++)); do
    zramctl "/dev/zram${n}" --size "${per_device}"
    mkswap "/dev/zram${n}"
    swapon -p 5 "/dev/zram${n}"
done
