#!/bin/sh
# Buildroot post-build script of every Postern board (BR2_ROOTFS_POST_BUILD_SCRIPT).
# Puts the rootfs paths of image/README.md in place that no package installs:
# the board file, the build record, the RAUC configuration and keyring, and
# /sbin/init -> postern-init. Buildroot runs it with the target directory as $1
# and BR2_CONFIG, BASE_DIR and BR2_EXTERNAL_POSTERN_PATH in the environment.
set -eu

TARGET="$1"
COMMON="$BR2_EXTERNAL_POSTERN_PATH/board/postern/common"
WORKSPACE=$(cd "$BR2_EXTERNAL_POSTERN_PATH/../.." && pwd)

config_value() {
    sed -n "s/^$1=\"\(.*\)\"\$/\1/p" "$BR2_CONFIG"
}

BOARD=$(config_value BR2_POSTERN_BOARD)
BOARD_FILE="$WORKSPACE/board-configs/$BOARD.toml"
if [ ! -f "$BOARD_FILE" ]; then
    echo "post-build.sh: no board file $BOARD_FILE (BR2_POSTERN_BOARD=\"$BOARD\")" >&2
    exit 1
fi

# Files every system slot carries verbatim, shared with image/build.
if [ -d "$WORKSPACE/image/rootfs" ]; then
    cp -a "$WORKSPACE/image/rootfs/." "$TARGET/"
fi

install -D -m 0644 "$BOARD_FILE" "$TARGET/etc/postern/board.toml"

# The build record: which commit and board this slot was built from, so a
# vendor can prove what it ships. A dirty tree is recorded as such.
COMMIT=$(git -C "$WORKSPACE" rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=false
if [ "$COMMIT" != unknown ] && [ -n "$(git -C "$WORKSPACE" status --porcelain 2>/dev/null)" ]; then
    DIRTY=true
fi
cat > "$TARGET/etc/postern/build.json" <<JSON
{"build_id": "$COMMIT-$BOARD-buildroot", "commit": "$COMMIT", "dirty": $DIRTY, "board": "$BOARD", "builder": "buildroot"}
JSON

# RAUC: the system.conf template image/build renders too (image/rootfs), or
# ours, gets the board's compatible string, so bundles built for another board
# are refused.
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$WORKSPACE/Cargo.toml")
mkdir -p "$TARGET/etc/rauc"
if [ -f "$TARGET/etc/rauc/system.conf.in" ]; then
    TEMPLATE="$TARGET/etc/rauc/system.conf.in"
else
    TEMPLATE="$COMMON/rauc-system.conf.in"
fi
sed -e "s/@COMPATIBLE@/postern-$BOARD/g" -e "s/@BOARD@/$BOARD/g" -e "s/@VERSION@/$VERSION/g" \
    "$TEMPLATE" > "$TARGET/etc/rauc/system.conf"
rm -f "$TARGET/etc/rauc/system.conf.in"

# Keys, in image/build's layout (signing.key.pem, signing.cert.pem, ca.cert.pem):
# the vendor's (BR2_POSTERN_RAUC_KEY_DIR) or the workspace's development keys
# (image/keys/dev, shared with image/build), made here if absent.
# post-image.sh signs the bundle from the same directory.
KEY_DIR=$(config_value BR2_POSTERN_RAUC_KEY_DIR)
if [ -z "$KEY_DIR" ]; then
    KEY_DIR="$WORKSPACE/image/keys/dev"
    if [ ! -f "$KEY_DIR/ca.cert.pem" ]; then
        KEY_DIR="$BASE_DIR/postern-dev-keys"
    fi
    if [ ! -f "$KEY_DIR/ca.cert.pem" ]; then
        echo "post-build.sh: generating a development RAUC key in $KEY_DIR (never ship it)" >&2
        mkdir -p "$KEY_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -days 3650 -subj "/O=Postern development/CN=Postern development signing key" \
            -keyout "$KEY_DIR/signing.key.pem" -out "$KEY_DIR/signing.cert.pem" 2>/dev/null
        cp "$KEY_DIR/signing.cert.pem" "$KEY_DIR/ca.cert.pem"
    fi
fi
if [ ! -f "$KEY_DIR/ca.cert.pem" ]; then
    echo "post-build.sh: $KEY_DIR/ca.cert.pem is missing (BR2_POSTERN_RAUC_KEY_DIR)" >&2
    exit 1
fi
install -D -m 0644 "$KEY_DIR/ca.cert.pem" "$TARGET/etc/rauc/keyring.pem"
# Where post-image.sh finds the signing pair.
echo "$KEY_DIR" > "$BASE_DIR/postern-key-dir"

# PID 1 is postern-init. After every package, so that no init a package
# installs (busybox's) wins. Absolute: /sbin may be a link to usr/sbin.
ln -sf /usr/sbin/postern-init "$TARGET/sbin/init"

# Mount points of the read-only root: the boot-state partition and the data
# array (image/README.md, stage 2).
mkdir -p "$TARGET/persist" "$TARGET/var/lib/postern"
