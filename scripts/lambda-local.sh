#!/usr/bin/env bash
# Run every function the way Lambda runs it (README, "Run the functions as Lambda runs them"):
#   1. installs podman (+ runc, debootstrap, slirp4netns, qemu-user-static) and SAM CLI when missing (apt needs root);
#   2. builds the Lambda-like base images from Debian packages (x86_64, and arm64 under qemu), cached in podman's
#      storage by a hash of their inputs;
#   3. `sam build` of the whole template through podman's Docker-compatible socket;
#   4. smoke-runs each function as deployed (scripts/lambda-local/smoke.py): `sam local invoke` for every file in
#      events/, `sam local start-api` with a real POST /analyze, the worker and the callback on that job; every
#      container as Lambda runs it: non-root, read-only root file system, only /tmp writable, MemorySize as its limit.
# Prints one line per function and exits non-zero on any failure. Options: --build-only (stop after step 3).
# Environment: VIDEO_AI_LAMBDA_CACHE (default /var/cache/video-ai-lambda as root, else ~/.cache/video-ai-lambda) keeps
# the debootstrapped root file systems' inputs and SAM CLI's venv between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HERE=$ROOT/scripts/lambda-local

SAM_VERSION=1.170.0
AWSLAMBDARIC_VERSION=4.2.2
BOTO3_VERSION=1.44.8
ARCHES=(x86_64 arm64)

say() { printf 'lambda-local: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
stamp() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$1" "$(stamp)"; }

BUILD_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --build-only) BUILD_ONLY=1 ;;
    *) die "unknown option $arg (usage: bash scripts/lambda-local.sh [--build-only])" ;;
  esac
done

# ---------------------------------------------------------------- the runtime version: one source, template.yaml
runtimes=$(grep -E '^\s+(Runtime|CompatibleRuntimes):' template.yaml | grep -oE 'python3\.[0-9]+' | sort -u)
[ "$(echo "$runtimes" | wc -l)" -eq 1 ] || die "template.yaml names several Python runtimes: $runtimes"
PYTHON_VERSION=${runtimes#python}
grep -q "^FROM public.ecr.aws/lambda/python:$PYTHON_VERSION\$" functions/worker/Dockerfile \
  || die "functions/worker/Dockerfile is not FROM public.ecr.aws/lambda/python:$PYTHON_VERSION (template.yaml's runtime)"
# The Debian release whose python3 is the runtime's version: the base images install Debian's interpreter.
case "$PYTHON_VERSION" in
  3.11) SUITE=bookworm ;;
  3.13) SUITE=trixie ;;
  *) die "no Debian release packages Python $PYTHON_VERSION (template.yaml's runtime): 3.11 (bookworm), 3.13 (trixie)" ;;
esac

# ---------------------------------------------------------------- tools
if [ "$(id -u)" = 0 ]; then CACHE=${VIDEO_AI_LAMBDA_CACHE:-/var/cache/video-ai-lambda}
else CACHE=${VIDEO_AI_LAMBDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/video-ai-lambda}; fi
mkdir -p "$CACHE"

need=()
for tool in podman runc debootstrap slirp4netns qemu-aarch64-static update-binfmts; do
  command -v "$tool" > /dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  packages="podman runc debootstrap slirp4netns qemu-user-static binfmt-support"
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them as root (apt-get install -y $packages), then run this again"
  t=$(stamp)
  say "installing $packages (apt-get, as root)"
  apt-get update -qq > /dev/null || die "apt-get update failed: cannot install podman"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages > "$CACHE/apt.log" 2>&1 \
    || die "apt-get install $packages failed (see $CACHE/apt.log): cannot install podman"
  say "installed in $(since "$t")"
fi

# arm64 (the API, ingest and callback functions' architecture) runs under qemu-user through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  if [ "$(id -u)" = 0 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2> /dev/null || true
    update-binfmts --enable qemu-aarch64 > /dev/null 2>&1 || true
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
    || die "arm64 emulation unavailable: binfmt_misc has no qemu-aarch64 entry (as root: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && update-binfmts --enable qemu-aarch64)"
fi

# SAM CLI of a known version in a venv of its own: the smoke run starts it through its interpreter (lambda-local/sam.py).
SAM=$CACHE/sam-$SAM_VERSION/bin/sam
if [ ! -x "$SAM" ]; then
  t=$(stamp)
  say "installing SAM CLI $SAM_VERSION into $CACHE/sam-$SAM_VERSION"
  python3 -m venv "$CACHE/sam-$SAM_VERSION"
  "$CACHE/sam-$SAM_VERSION/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_VERSION" \
    > "$CACHE/sam-install.log" 2>&1 || { rm -rf "$CACHE/sam-$SAM_VERSION"; die "pip install aws-sam-cli==$SAM_VERSION failed (see $CACHE/sam-install.log)"; }
  say "installed in $(since "$t")"
fi
export SAM_CLI_TELEMETRY=0 SAM_CLI_CONTAINER_CONNECTION_TIMEOUT=60
SAM_PYTHON=$CACHE/sam-$SAM_VERSION/bin/python
RIE_DIR=$("$SAM_PYTHON" -c 'import pathlib, samcli; print(pathlib.Path(samcli.__file__).parent / "local/rapid")')

# `sam build` builds the zip functions' layer on the host with the runtime's interpreter (layers/shared/Makefile).
# A real interpreter, not a version manager's shim: sam build runs it from the PATH it is given.
HOST_PYTHON=
candidates=("python$PYTHON_VERSION")
if command -v pyenv > /dev/null; then
  for version in $(pyenv versions --bare 2> /dev/null | grep -E "^$PYTHON_VERSION(\.|$)" | sort -V -r); do
    candidates+=("$(pyenv root)/versions/$version/bin/python$PYTHON_VERSION")
  done
fi
for candidate in "${candidates[@]}"; do
  HOST_PYTHON=$("$candidate" -c "import sys; assert sys.version.startswith('$PYTHON_VERSION.'); print(sys.executable)" \
    2> /dev/null) && break
done
[ -n "$HOST_PYTHON" ] || die "sam build needs python$PYTHON_VERSION on PATH (template.yaml's runtime) to build the layer"

# ---------------------------------------------------------------- podman: runc, Lambda's constraints, a Docker API
RUN=$(mktemp -d /tmp/video-ai-lambda-local.XXXXXX)
# podman runs the OCI runtime below for every container operation: a plain interpreter, not a version manager's shim.
SYSTEM_PYTHON=/usr/bin/python3
[ -x "$SYSTEM_PYTHON" ] || SYSTEM_PYTHON=$(python3 -c 'import sys; print(sys.executable)')
chmod 755 "$RUN"
mkdir -m 1777 "$RUN/lambda-tmp"
# The OCI runtime and podman's config live in $CACHE, not in this run's folder: podman needs the runtime again to stop
# or remove a container later, even one a killed run left behind.
cp "$HERE/oci-lambda.py" "$CACHE/oci-lambda.py"
cat > "$CACHE/oci-lambda.json" << EOF
{"runc": "$(command -v runc)", "tmp_dir": "$RUN/lambda-tmp", "log": "$RUN/containers.jsonl", "env": {}}
EOF
ln -sf "$CACHE/oci-lambda.json" "$RUN/oci-lambda.json"
cat > "$CACHE/oci-lambda" << EOF
#!/bin/sh
VAI_LAMBDA_CONFIG=$CACHE/oci-lambda.json exec $SYSTEM_PYTHON $CACHE/oci-lambda.py "\$@"
EOF
chmod 755 "$CACHE/oci-lambda"
# runc: crun cannot run here (cgroups in hybrid mode). Root may not raise rlimits here, so give containers ones it
# may set. Networking: scripts/lambda-local/sam.py.
cat > "$CACHE/containers.conf" << EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "lambda"
runtime_supports_json = ["runc", "lambda"]

[engine.runtimes]
lambda = ["$CACHE/oci-lambda"]
EOF
export CONTAINERS_CONF=$CACHE/containers.conf
# Function containers a killed run left behind (SAM labels its own).
remove_function_containers() {
  podman ps -aq --filter label=sam.cli.container.type=lambda | xargs -r podman rm -f -t 2 > /dev/null 2>&1 || true
}
remove_function_containers
podman system service --time=0 "unix://$RUN/podman.sock" > "$RUN/podman-service.log" 2>&1 &
PODMAN_SERVICE=$!
cleanup() {
  remove_function_containers
  kill "$PODMAN_SERVICE" 2> /dev/null || true
  wait "$PODMAN_SERVICE" 2> /dev/null || true
  [ -n "${KEEP_RUN_DIR:-}" ] || rm -rf "$RUN"
}
trap cleanup EXIT
export DOCKER_HOST=unix://$RUN/podman.sock
for _ in $(seq 100); do [ -S "$RUN/podman.sock" ] && break; sleep 0.1; done
[ -S "$RUN/podman.sock" ] || die "podman system service did not start (see $RUN/podman-service.log)"

# ---------------------------------------------------------------- base images
debian_arch() { case "$1" in x86_64) echo amd64 ;; arm64) echo arm64 ;; esac; }
mirror() {
  # The Debian mirror apt already uses here (deb822 or one-line sources), else Debian's own.
  local url
  url=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2> /dev/null \
    | grep -oE 'https?://[^ ]+' | head -1 || true)
  echo "${url:-http://deb.debian.org/debian}"
}

build_base() {
  local arch=$1 darch tag rootfs_tag inputs ctx t
  darch=$(debian_arch "$arch")
  tag=public.ecr.aws/lambda/python:$PYTHON_VERSION-$arch
  ctx=$RUN/base-$arch
  mkdir -p "$ctx/local-ca"
  cp "$HERE"/base/* "$ctx/"
  cp "$RIE_DIR/aws-lambda-rie-$arch" "$ctx/aws-lambda-rie"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/local-ca/" 2> /dev/null || true
  local packages="ca-certificates,python$PYTHON_VERSION,python$PYTHON_VERSION-venv"
  rootfs_tag=localhost/video-ai/debian-$SUITE-rootfs:$arch-$(echo "$SUITE $packages" | sha256sum | cut -c1-12)
  inputs=$( (cd "$ctx" && find . -type f | sort | xargs sha256sum; echo "$rootfs_tag $AWSLAMBDARIC_VERSION $BOTO3_VERSION") \
    | sha256sum | cut -c1-16)
  if [ "$(podman image inspect "$tag" --format '{{ index .Labels "video-ai.inputs" }}' 2> /dev/null)" = "$inputs" ]; then
    say "base $tag: cached ($inputs)"
    return
  fi
  if ! podman image exists "$rootfs_tag"; then
    t=$(stamp)
    say "debootstrap $SUITE ($darch) for $tag"
    rm -rf "$RUN/rootfs-$arch"
    debootstrap --variant=minbase --arch="$darch" --include="$packages" "$SUITE" "$RUN/rootfs-$arch" "$(mirror)" \
      > "$RUN/debootstrap-$arch.log" 2>&1 || { tail -5 "$RUN/debootstrap-$arch.log" >&2; die "debootstrap $SUITE ($darch) failed"; }
    rm -rf "$RUN/rootfs-$arch"/var/cache/apt/archives/*.deb "$RUN/rootfs-$arch"/var/lib/apt/lists/*
    tar -C "$RUN/rootfs-$arch" -c . | podman import --quiet --arch "$darch" - "$rootfs_tag" > /dev/null
    rm -rf "$RUN/rootfs-$arch"
    say "root file system $rootfs_tag in $(since "$t")"
  fi
  t=$(stamp)
  podman build --quiet --arch "$darch" --network host -f "$ctx/Containerfile" \
    --build-arg ROOTFS="$rootfs_tag" --build-arg PYTHON_VERSION="$PYTHON_VERSION" \
    --build-arg AWSLAMBDARIC_VERSION="$AWSLAMBDARIC_VERSION" --build-arg BOTO3_VERSION="$BOTO3_VERSION" \
    --label video-ai.inputs="$inputs" -t "$tag" "$ctx" > "$RUN/base-$arch.log" 2>&1 \
    || { tail -20 "$RUN/base-$arch.log" >&2; die "base image $tag failed to build"; }
  say "base $tag built in $(since "$t")"
}

for arch in "${ARCHES[@]}"; do build_base "$arch"; done
# The Dockerfiles name the runtime's image without an architecture: AWS's tag is x86_64 then.
podman tag "public.ecr.aws/lambda/python:$PYTHON_VERSION-x86_64" "public.ecr.aws/lambda/python:$PYTHON_VERSION"

# ---------------------------------------------------------------- sam build
# As deployed (zip functions on arm64), and a native variant with the zip functions on x86_64 for the timed smoke run
# (scripts/lambda-local/variants.py says why); each build with its own cache, since SAM's does not key on architecture.
sam_build() {
  local what=$1; shift
  t=$(stamp)
  PATH="$(dirname "$HOST_PYTHON"):$PATH" "$SAM" build --skip-pull-image "$@" > "$RUN/sam-build-$what.log" 2>&1 \
    || { tail -30 "$RUN/sam-build-$what.log" >&2; die "sam build ($what) failed"; }
  say "sam build ($what) in $(since "$t")"
}
sam_build as-deployed --cache-dir .aws-sam/cache
python3 "$HERE/variants.py" native template.yaml "$RUN/template-x86_64.yaml"
export PLATFORMS="manylinux2014_x86_64 manylinux_2_28_x86_64 manylinux_2_34_x86_64"  # layers/shared/Makefile's
sam_build x86_64 -t "$RUN/template-x86_64.yaml" -b .aws-sam/build-x86_64 --cache-dir .aws-sam/cache-x86_64
unset PLATFORMS
python3 "$HERE/variants.py" emulated .aws-sam/build/template.yaml .aws-sam/build/template-emulated.yaml

# Every function as an image named video-ai/<function>:local: the worker's image (also the search function's), and
# for each zip function the arm64 base with the layer in /opt and the code in /var/task, as Lambda assembles them.
worker_image=$(grep -oE 'ImageUri: \S+' .aws-sam/build/template.yaml | head -1 | cut -d' ' -f2)
podman tag "$worker_image" video-ai/worker:local video-ai/search:local
for fn in Api Ingest Callback; do
  printf 'FROM public.ecr.aws/lambda/python:%s-arm64\nCOPY SharedLayer/ /opt/\nCOPY %sFunction/ /var/task/\nCMD ["handler.handler"]\n' \
    "$PYTHON_VERSION" "$fn" > "$RUN/Containerfile.$fn"
  podman build --quiet --arch arm64 -f "$RUN/Containerfile.$fn" -t "video-ai/$(echo "$fn" | tr 'A-Z' 'a-z'):local" \
    .aws-sam/build > /dev/null || die "image video-ai/$fn:local failed to build"
done

if [ "$BUILD_ONLY" = 1 ]; then exit 0; fi

# ---------------------------------------------------------------- smoke runs
if ! .venv/bin/python -c "import moto, standardwebhooks, av" 2> /dev/null; then
  . scripts/venv.sh local
fi
# SAM CLI through scripts/lambda-local/sam.py: its containers reach the host's loopback (that file says why).
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$SAM_PYTHON" "$HERE/sam.py" > "$RUN/sam"
chmod 755 "$RUN/sam"
.venv/bin/python "$HERE/smoke.py" --sam "$RUN/sam" --run-dir "$RUN" \
  --template .aws-sam/build-x86_64/template.yaml --emulated-template .aws-sam/build/template-emulated.yaml
