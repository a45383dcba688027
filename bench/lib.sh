# bench/lib.sh: the set-up shared by the bench/ scripts (sourced, not run).
#
# A script sets BENCH_NAME (for messages) and its option variables, then calls, in order:
#   bench_check_tools [EXTRA-TOOL:DEBIAN-PACKAGE ...]   # dies listing what is missing
#   bench_find_podman           # PODMAN= the podman binary, or empty (NO_PODMAN=1: empty)
#   bench_find_skiff            # SKIFF= the binary (default target/release/skiff, built)
#   bench_setup_user            # ME, RUN_UID, RUN_GID, BENCH_USER_NAME
#   bench_setup_work            # WORK (temp dir, removed on exit), as_user, AS_USER
#   bench_build_image           # busybox OCI layout in $WORK/image/oci, rootfs in $WORK/rootfs
#   bench_start_registry        # docker-registry on a free loopback port: REGISTRY_PORT
#   bench_push_image            # IMAGE=127.0.0.1:PORT/bench/busybox:latest, registries.conf
#   bench_pull                  # skiff pull, and podman pull when $PODMAN is set
# Everything runs as an unprivileged user: as root the test user skiff-test
# (SKIFF_BENCH_USER), otherwise the caller. On exit (error, Ctrl-C and SIGTERM included)
# the registry is stopped, the function bench_cleanup_hook runs if the script defined
# one, podman's storage is reset, its pause process killed, and $WORK removed.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=${BENCH_NAME:-bench}
BENCH_USER=${SKIFF_BENCH_USER:-skiff-test}
NO_PODMAN=${NO_PODMAN:-0}
SKIFF=${SKIFF:-}
BUSYBOX=/bin/busybox
PODMAN_GLOBAL=(--storage-driver overlay)

say() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi; }

# Dies naming the Debian packages to install for whatever is missing. Arguments add
# tools as TOOL:PACKAGE.
bench_check_tools() {
    local missing=() tool
    for tool in skopeo:skopeo curl:curl gzip:gzip sha256sum:coreutils \
        unshare:util-linux setpriv:util-linux newuidmap:uidmap "$@"; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    REGISTRY_BIN=$(command -v docker-registry || echo /usr/bin/docker-registry)
    [ -x "$REGISTRY_BIN" ] || missing+=(docker-registry)
    # The image is this one file, so it must be static (busybox-static, not busybox).
    if [ ! -x "$BUSYBOX" ] || LC_ALL=C ldd "$BUSYBOX" 2>/dev/null | grep -q '=>'; then
        missing+=(busybox-static)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        die "missing tools; install the Debian packages: ${missing[*]}"
    fi
}

bench_find_podman() {
    PODMAN=
    [ "$NO_PODMAN" = 0 ] || return 0
    if ! command -v podman >/dev/null; then
        say "NOTE: podman is not installed: skipping podman"
    elif ! command -v runc >/dev/null; then
        say "NOTE: runc is not installed (Debian's crun fails on hybrid cgroups here): skipping podman"
    else
        PODMAN=$(command -v podman)
    fi
}

bench_find_skiff() {
    if [ -z "$SKIFF" ]; then
        SKIFF=$REPO/target/release/skiff
        if [ ! -x "$SKIFF" ]; then
            say "building $SKIFF (cargo build --release)"
            cargo build --release --locked --manifest-path "$REPO/Cargo.toml" >&2
        fi
    fi
    [ -x "$SKIFF" ] || die "skiff binary not found or not executable: $SKIFF"
    SKIFF=$(realpath "$SKIFF")
}

bench_setup_user() {
    ME=$(id -u)
    if [ "$ME" = 0 ]; then
        id -u "$BENCH_USER" >/dev/null 2>&1 \
            || die "running as root needs the unprivileged user $BENCH_USER (scripts/test creates it; or set SKIFF_BENCH_USER)"
        RUN_UID=$(id -u "$BENCH_USER") RUN_GID=$(id -g "$BENCH_USER")
        BENCH_USER_NAME=$BENCH_USER
    else
        RUN_UID=$ME RUN_GID=$(id -g)
        BENCH_USER_NAME=$(id -un)
    fi
    grep -Eq "^(${BENCH_USER_NAME}|${RUN_UID}):" /etc/subuid 2>/dev/null \
        || say "NOTE: $BENCH_USER_NAME has no /etc/subuid range: skiff and podman fall back to a single-ID mapping"
}

WORK=
REGISTRY_PID=
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if declare -F bench_cleanup_hook >/dev/null; then
        bench_cleanup_hook
    fi
    if [ -n "$REGISTRY_PID" ]; then
        kill "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        # Rootless podman leaves a pause process holding its user namespace.
        local pidfile=$WORK/run/libpod/tmp/pause.pid pid
        if [ -n "${PODMAN:-}" ] && [ -d "$WORK/home" ]; then
            as_user "$PODMAN" "${PODMAN_GLOBAL[@]}" system reset -f >/dev/null 2>&1
        fi
        if [ -r "$pidfile" ] && pid=$(cat "$pidfile") && [[ $pid =~ ^[0-9]+$ ]]; then
            kill "$pid" 2>/dev/null
        fi
        # Files owned by subordinate IDs: root removes them directly, a user from
        # inside its user namespace.
        if [ "$ME" != 0 ] && [ -d "$WORK/home" ]; then
            as_user "$SKIFF" unshare rm -rf "$WORK/home" >/dev/null 2>&1
        fi
        rm -rf "$WORK" 2>/dev/null || say "could not remove everything under $WORK"
    fi
    exit "$rc"
}

as_user() { "${AS_USER[@]}" "$@"; }

bench_setup_work() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/skiff-bench.XXXXXX")
    chmod 0755 "$WORK"
    mkdir -p "$WORK/home" "$WORK/run" "$WORK/image" "$WORK/rootfs" "$WORK/registry"
    chmod 0700 "$WORK/run"
    if [ "$ME" = 0 ]; then
        chown "$RUN_UID:$RUN_GID" "$WORK" "$WORK/home" "$WORK/run" "$WORK/image" "$WORK/rootfs" "$WORK/registry"
    fi
    # The unprivileged user's environment: a private HOME and XDG dirs, nothing else.
    USER_ENV=(env -i
        "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
        "HOME=$WORK/home" "USER=$BENCH_USER_NAME" "LOGNAME=$BENCH_USER_NAME"
        "XDG_RUNTIME_DIR=$WORK/run"
        "XDG_DATA_HOME=$WORK/home/.local/share"
        "XDG_CONFIG_HOME=$WORK/home/.config"
        "TMPDIR=$WORK/home/tmp"
        "LANG=C.UTF-8")
    if [ "$ME" = 0 ]; then
        AS_USER=(setpriv --reuid="$RUN_UID" --regid="$RUN_GID" --init-groups "${USER_ENV[@]}")
    else
        AS_USER=("${USER_ENV[@]}")
    fi
    as_user test -w "$WORK/home" \
        || die "$BENCH_USER_NAME cannot write $WORK/home: set TMPDIR to a directory it can reach"
    as_user mkdir -p "$WORK/home/tmp" "$WORK/home/.config/containers" "$WORK/home/.local/share"
    if ! as_user test -x "$SKIFF"; then
        # e.g. a binary under /root: give the user its own copy.
        cp "$SKIFF" "$WORK/skiff"
        chmod 0755 "$WORK/skiff"
        SKIFF=$WORK/skiff
        say "$BENCH_USER_NAME cannot execute the skiff binary where it is: using a copy, $SKIFF"
    fi
}

# One layer: /bin/busybox with a symlink per applet, and the usual empty dirs.
go_arch() {
    case $(uname -m) in
        x86_64) echo amd64 ;; aarch64) echo arm64 ;; armv7l) echo arm ;;
        i?86) echo 386 ;; ppc64le) echo ppc64le ;; s390x) echo s390x ;;
        riscv64) echo riscv64 ;; *) uname -m ;;
    esac
}

build_image() {
    local root=$WORK/image/rootfs oci=$WORK/image/oci a
    mkdir -p "$root"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,var/tmp} "$oci/blobs/sha256"
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 0700 "$root/root"
    cp "$BUSYBOX" "$root/bin/busybox"
    # Extra static programs a script needs in the image (BENCH_EXTRA_BINS, space-separated).
    for a in ${EXTRA_BINS:-}; do cp "$a" "$root/bin/"; done
    for a in $("$BUSYBOX" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/home:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$root/etc/group"

    # Reproducible tar: sorted names, root-owned, fixed mtime.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$root" -cf "$WORK/image/layer.tar" .
    local diff_id layer_digest layer_size config config_digest config_size manifest manifest_digest manifest_size
    diff_id=$(sha256sum "$WORK/image/layer.tar" | cut -d' ' -f1)
    gzip -n -c "$WORK/image/layer.tar" >"$WORK/image/layer.tar.gz"
    layer_digest=$(sha256sum "$WORK/image/layer.tar.gz" | cut -d' ' -f1)
    layer_size=$(stat -c %s "$WORK/image/layer.tar.gz")
    mv "$WORK/image/layer.tar.gz" "$oci/blobs/sha256/$layer_digest"

    config=$(printf '{"created":"1970-01-01T00:00:00Z","architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"skiff bench/run-latency: host /bin/busybox"}]}' \
        "$(go_arch)" "$diff_id")
    config_digest=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
    config_size=$(printf '%s' "$config" | wc -c)
    printf '%s' "$config" >"$oci/blobs/sha256/$config_digest"

    manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
        "$config_digest" "$config_size" "$layer_digest" "$layer_size")
    manifest_digest=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
    manifest_size=$(printf '%s' "$manifest" | wc -c)
    printf '%s' "$manifest" >"$oci/blobs/sha256/$manifest_digest"

    printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
        "$manifest_digest" "$manifest_size" >"$oci/index.json"

    # The floor runs on exactly the layer's files.
    tar -C "$WORK/rootfs" -xf "$WORK/image/layer.tar"
    rm -f "$WORK/image/layer.tar"
}

bench_build_image() {
    say "building a busybox image from $BUSYBOX"
    as_user bash -c "$(declare -f go_arch build_image); WORK='$WORK' BUSYBOX='$BUSYBOX' EXTRA_BINS='${BENCH_EXTRA_BINS:-}' build_image"
}

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

bench_start_registry() {
    local attempt port i
    for attempt in 1 2 3 4 5 6 7 8; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$port" && continue
        cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
        # Not through the as_user function: $! must be the registry itself.
        "${AS_USER[@]}" "${REGISTRY_BIN:-$(command -v docker-registry || echo /usr/bin/docker-registry)}" serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
        REGISTRY_PID=$!
        for i in $(seq 100); do
            if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
                REGISTRY_PORT=$port
                say "registry up on 127.0.0.1:$port (attempt $attempt, ${i}0 ms)"
                return 0
            fi
            kill -0 "$REGISTRY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
        REGISTRY_PID=
    done
    cat "$WORK/registry/log" >&2 || true
    die "could not start docker-registry on a free loopback port"
}

bench_push_image() {
    IMAGE=127.0.0.1:$REGISTRY_PORT/bench/busybox:latest
    # Both engines read the user's registries.conf: mark the local registry insecure.
    as_user tee "$WORK/home/.config/containers/registries.conf" >/dev/null <<EOF
unqualified-search-registries = []

[[registry]]
location = "127.0.0.1:$REGISTRY_PORT"
insecure = true
EOF
    say "pushing $IMAGE"
    as_user skopeo --insecure-policy copy -q --dest-tls-verify=false \
        "oci:$WORK/image/oci:latest" "docker://$IMAGE" >&2
}

bench_pull() {
    say "skiff: $SKIFF"
    say "skiff pull $IMAGE"
    as_user "$SKIFF" pull -q "$IMAGE" >&2 || die "skiff pull failed"
    if [ -n "$PODMAN" ]; then
        say "$("$PODMAN" --version)"
        say "podman pull $IMAGE"
        as_user "$PODMAN" "${PODMAN_GLOBAL[@]}" pull -q --tls-verify=false "$IMAGE" >&2 \
            || die "podman pull failed (rerun with --no-podman to skip podman)"
    fi
}

# How busy the CPUs are right now (percent over one second, from /proc/stat).
cpu_busy() {
    local a b
    a=$(head -n1 /proc/stat)
    sleep 1
    b=$(head -n1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        n = split(a, x); split(b, y); tot = 0
        for (i = 2; i <= n; i++) tot += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6])
        printf "%d", (tot > 0 ? 100 * (tot - idle) / tot : 0) }'
}

# Adds a gzip layer with $FILES small files (owned by 1000) and one $BIG-MiB file to $WORK/image/oci (config, manifest, index).
bench_add_bulk_layer() {
    local oci=$WORK/image/oci bulk=$WORK/image/bulk i
    mkdir -p "$bulk/data/small"
    for i in $(seq "$FILES"); do printf 'file %s\n' "$i" >"$bulk/data/small/f$i"; done
    head -c $((BIG * 1048576)) /dev/urandom >"$bulk/data/big"
    chown -R 1000:1000 "$bulk/data/small" 2>/dev/null || true
    tar --sort=name --numeric-owner --mtime=@0 --format=posix -C "$bulk" -cf "$WORK/image/bulk.tar" .
    local diff_id digest size
    diff_id=$(sha256sum "$WORK/image/bulk.tar" | cut -d' ' -f1)
    gzip -n -1 -c "$WORK/image/bulk.tar" >"$WORK/image/bulk.tar.gz"
    digest=$(sha256sum "$WORK/image/bulk.tar.gz" | cut -d' ' -f1)
    size=$(stat -c %s "$WORK/image/bulk.tar.gz")
    mv "$WORK/image/bulk.tar.gz" "$oci/blobs/sha256/$digest"
    rm -rf "$WORK/image/bulk.tar" "$bulk"
    python3 - "$oci" "$diff_id" "$digest" "$size" <<'EOF'
import hashlib, json, os, sys
oci, diff_id, digest, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
blob = lambda d: os.path.join(oci, "blobs", "sha256", d.split(":")[-1])
def put(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    d = hashlib.sha256(data).hexdigest()
    open(blob(d), "wb").write(data)
    return "sha256:" + d, len(data)
index = json.load(open(os.path.join(oci, "index.json")))
mdesc = index["manifests"][0]
manifest = json.load(open(blob(mdesc["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
config["rootfs"]["diff_ids"].append("sha256:" + diff_id)
config["history"].append({"created": "1970-01-01T00:00:00Z", "created_by": "bench/keepid bulk layer"})
cd, cs = put(config)
manifest["config"].update(digest=cd, size=cs)
manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": "sha256:" + digest, "size": size})
md, ms = put(manifest)
mdesc.update(digest=md, size=ms)
json.dump(index, open(os.path.join(oci, "index.json"), "w"))
EOF
}
