#!/bin/sh
# Builds mortar's guest disk image from Debian packages, offline from everything but the apt
# archive: Debian's cloud kernel, busybox and dropbear in an initramfs, booted by syslinux
# from a FAT file system that fills the whole (partition-less) disk. No loop device, no root
# file system to mount. Runs in a container of mortar's base image; writes /out/$IMAGE.
set -eu
IMAGE=${IMAGE:-mortar-guest.img}
src=$(dirname "$0")
work=/tmp/guest
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends busybox-static dropbear-bin syslinux syslinux-common mtools \
    dosfstools xz-utils cpio kmod curl iputils-ping bash >/dev/null
mkdir -p $work/debs $work/kernel
cd $work/debs && chown _apt $work/debs
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
apt-get download -q "$kernel_pkg" >/dev/null
dpkg-deb -x ./*.deb $work/kernel
modules=$work/kernel/usr/lib/modules; [ -d $modules ] || modules=$work/kernel/lib/modules
release=$(ls $modules)

root=$work/root
mkdir -p $root/bin $root/sbin $root/usr/bin $root/usr/sbin $root/lib/modules $root/etc $root/proc $root/sys \
    $root/dev $root/root $root/home/mortar
cp /bin/busybox $root/bin/busybox
for applet in $($root/bin/busybox --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
# dropbear, curl, ping and bash are linked dynamically: bring their libraries and loader
# along. curl and ping are what tools such as Tempest run in a guest (the metadata service,
# reachability). busybox's ping opens raw sockets only and the SSH user is not root, while
# iputils' ping uses the ICMP datagram sockets that ping_group_range (set by init) opens to
# every user, so no setuid binary is needed. The SSH user's shell is bash: busybox's own
# shell runs its built-in applet for `ping` whatever PATH says.
rm -f $root/bin/ping $root/bin/ping6
for bin in /usr/sbin/dropbear /usr/bin/dropbearkey /usr/bin/curl /usr/bin/ping /usr/bin/bash; do
    cp "$bin" "$root$bin"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
ln -sf /usr/bin/ping $root/bin/ping
ln -sf /usr/bin/bash $root/bin/bash
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net \
         virtio_blk; do
    file=$(find $modules/$release -name "$m.ko*" | head -n1)
    [ -n "$file" ] || continue
    case "$file" in
        *.xz) xz -dc "$file" > $root/lib/modules/$m.ko ;;
        *.zst) zstd -dc "$file" > $root/lib/modules/$m.ko ;;
        *) cp "$file" $root/lib/modules/$m.ko ;;
    esac
done
cp "$src/init" $root/init
cp "$src/udhcpc.script" $root/etc/udhcpc.script
chmod 0755 $root/init $root/etc/udhcpc.script
printf 'root:x:0:0:root:/root:/bin/sh\nmortar:x:1000:1000:mortar:/home/mortar:/bin/bash\n' > $root/etc/passwd
printf 'root:x:0:\nmortar:x:1000:\n' > $root/etc/group
# No password logs in: the injected key is the only way in (the console is root's).
printf 'root:*:1::::::\nmortar:*:1::::::\n' > $root/etc/shadow
printf '/bin/sh\n/bin/bash\n' > $root/etc/shells
(cd $root && find . | cpio -o -H newc --quiet | gzip -9) > $work/initrd.gz

boot=$work/boot
mkdir -p $boot
cp $work/kernel/boot/vmlinuz-$release $boot/vmlinuz
cp $work/initrd.gz $boot/initrd.gz
cat > $boot/syslinux.cfg <<CFG
DEFAULT mortar
PROMPT 0
TIMEOUT 0
LABEL mortar
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=tty0 console=ttyS0,115200 quiet
CFG
size_kb=$(( $(du -sk $boot | cut -f1) + 2048 ))
rm -f /out/$IMAGE.tmp
mkfs.fat -C -n MORTARGUEST /out/$IMAGE.tmp $size_kb >/dev/null
mcopy -i /out/$IMAGE.tmp $boot/vmlinuz $boot/initrd.gz $boot/syslinux.cfg ::/
syslinux --install /out/$IMAGE.tmp
mv /out/$IMAGE.tmp /out/$IMAGE
echo "kernel $release, $(du -k /out/$IMAGE | cut -f1) KiB"
