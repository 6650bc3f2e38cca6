#!/bin/sh
# Buildroot post-image script of every Postern board (BR2_ROOTFS_POST_IMAGE_SCRIPT).
# Assembles the GPT system disk of image/README.md with genimage (efi, boot_a,
# system_a, boot_b, system_b, persist) and the signed RAUC update bundle, both
# in $BINARIES_DIR. Buildroot runs it from its top directory, with the tools it
# built (genimage, mkfs.ext4, rauc) first in PATH.
set -eu

COMMON="$BR2_EXTERNAL_POSTERN_PATH/board/postern/common"
WORKSPACE=$(cd "$BR2_EXTERNAL_POSTERN_PATH/../.." && pwd)
B="$BINARIES_DIR"

config_value() {
    sed -n "s/^$1=\"\(.*\)\"\$/\1/p" "$BR2_CONFIG"
}

# A board's own file if it has one, else the common one.
board_or_common() {
    if [ -f "$BR2_EXTERNAL_POSTERN_PATH/board/postern/$BOARD/$1" ]; then
        echo "$BR2_EXTERNAL_POSTERN_PATH/board/postern/$BOARD/$1"
    else
        echo "$COMMON/$1"
    fi
}

# Stable identifiers from the board name: the same commit gives the same bytes.
uuid_for() {
    printf 'postern/%s/%s' "$BOARD" "$1" | sha256sum |
        sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/'
}

BOARD=$(config_value BR2_POSTERN_BOARD)
EPOCH="${SOURCE_DATE_EPOCH:-0}"
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$WORKSPACE/Cargo.toml")

# 1. EFI partition: GRUB (built by Buildroot as efi-part/EFI/BOOT/bootx64.efi),
# its A/B script, and a grubenv where both slots are good and untried.
mkdir -p "$B/efi-part/EFI/BOOT"
# The same grub.cfg image/build writes: one template, rendered with the board's console.
python3 "$WORKSPACE/image/lib/grub_cfg.py" "$WORKSPACE/board-configs/$BOARD.toml" \
    > "$B/efi-part/EFI/BOOT/grub.cfg"
{
    printf '# GRUB Environment Block\n'
    printf 'ORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=0\nEXTRA_CMDLINE=\n'
} > "$B/grubenv.head"
# A GRUB environment block is exactly 1024 bytes, padded with '#'.
{
    cat "$B/grubenv.head"
    head -c $((1024 - $(wc -c < "$B/grubenv.head"))) /dev/zero | tr '\0' '#'
} > "$B/efi-part/EFI/BOOT/grubenv"
rm -f "$B/grubenv.head"

# 2. Stage-1 initramfs: postern-init (linked statically) as /init and the
# mount points it uses before switching root. The kernel has every driver
# stage 1 needs built in (linux.fragment), so no modules.
INITRD_ROOT="$BUILD_DIR/postern-initrd"
rm -rf "$INITRD_ROOT"
mkdir -p "$INITRD_ROOT/dev" "$INITRD_ROOT/proc" "$INITRD_ROOT/sys" \
    "$INITRD_ROOT/run" "$INITRD_ROOT/sysroot"
install -m 0755 "$TARGET_DIR/usr/sbin/postern-init" "$INITRD_ROOT/init"
find "$INITRD_ROOT" -exec touch -h -d "@$EPOCH" {} +
(cd "$INITRD_ROOT" && find . | LC_ALL=C sort |
    cpio --quiet -o -H newc --reproducible -R 0:0) > "$B/initrd.cpio"

# 3. persist: an empty ext4 for boot records, configuration and keys.
rm -f "$B/persist.ext4"
E2FSPROGS_FAKE_TIME="$EPOCH" mkfs.ext4 -q -F -L persist -U "$(uuid_for persist-fs)" \
    -E root_owner=0:0,hash_seed="$(uuid_for persist-hash)" "$B/persist.ext4" 128M

# 4. The disk: genimage through Buildroot's wrapper.
sed -e "s/@BOARD@/$BOARD/g" \
    -e "s/@DISK_UUID@/$(uuid_for disk)/" \
    -e "s/@EFI_UUID@/$(uuid_for efi)/" \
    -e "s/@BOOT_A_UUID@/$(uuid_for boot_a)/" \
    -e "s/@SYSTEM_A_UUID@/$(uuid_for system_a)/" \
    -e "s/@BOOT_B_UUID@/$(uuid_for boot_b)/" \
    -e "s/@SYSTEM_B_UUID@/$(uuid_for system_b)/" \
    -e "s/@PERSIST_UUID@/$(uuid_for persist)/" \
    "$(board_or_common genimage.cfg.in)" > "$B/genimage.cfg"
support/scripts/genimage.sh -c "$B/genimage.cfg"

# 5. The update bundle: one slot group (kernel + rootfs), signed with the key
# post-build.sh installed the keyring of. Plain format, as image/build: a
# verity bundle carries a random salt, so it would differ from build to build.
KEY_DIR=$(cat "$BASE_DIR/postern-key-dir")
BUNDLE_DIR="$BUILD_DIR/postern-bundle"
rm -rf "$BUNDLE_DIR" "$B/postern-$BOARD.raucb"
mkdir -p "$BUNDLE_DIR"
cp "$B/rootfs.erofs" "$B/boot.vfat" "$BUNDLE_DIR/"
cat > "$BUNDLE_DIR/manifest.raucm" <<MANIFEST
[update]
compatible=postern-$BOARD
version=$VERSION

[bundle]
format=plain

[image.rootfs]
filename=rootfs.erofs

[image.kernel]
filename=boot.vfat
MANIFEST
rauc bundle --cert="$KEY_DIR/signing.cert.pem" --key="$KEY_DIR/signing.key.pem" \
    "$BUNDLE_DIR" "$B/postern-$BOARD.raucb"
