#!/usr/bin/env bash
# Render the chart with its defaults into k8s/mnist-train.yaml for people who
# use `kubectl apply -k k8s/` instead of Helm. tests/chart/test_k8s_dir.py
# keeps the file identical to this command's output.
#
# Usage: bash scripts/render_k8s.sh          # (re)write k8s/mnist-train.yaml
#        bash scripts/render_k8s.sh --check  # exit 1 if it is stale
# Env:   HELM (default .tools/bin/helm, else helm on PATH); see
#        scripts/install_k8s_tools.sh.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RELEASE="mnist-train"
NAMESPACE="mnist-train"
# Placeholder image: replace it (kustomize `images:`) with your build.
IMAGE_REPOSITORY="ghcr.io/example/mnist-train"
OUT="$REPO_ROOT/k8s/mnist-train.yaml"

HELM="${HELM:-}"
if [[ -z "$HELM" ]]; then
    if [[ -x "$REPO_ROOT/.tools/bin/helm" ]]; then
        HELM="$REPO_ROOT/.tools/bin/helm"
    elif command -v helm >/dev/null 2>&1; then
        HELM="$(command -v helm)"
    else
        echo "render_k8s: helm not found; run: bash scripts/install_k8s_tools.sh" >&2
        exit 1
    fi
fi

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
"$HELM" template "$RELEASE" "$REPO_ROOT/charts/mnist-train" \
    --namespace "$NAMESPACE" --skip-tests \
    --set "image.repository=$IMAGE_REPOSITORY" >"$rendered"

if [[ "${1:-}" == "--check" ]]; then
    if ! cmp -s "$rendered" "$OUT"; then
        echo "render_k8s: k8s/mnist-train.yaml is stale; run: bash scripts/render_k8s.sh" >&2
        diff -u "$OUT" "$rendered" | head -n 40 >&2 || true
        exit 1
    fi
    echo "render_k8s: k8s/mnist-train.yaml is up to date" >&2
    exit 0
fi
cp "$rendered" "$OUT"
echo "render_k8s: wrote k8s/mnist-train.yaml" >&2
