#!/usr/bin/env bash
# Builds the pinned Kubernetes test binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok, and kustomize for the deploy/ tests) from the Go module proxy, fetches
# the Liqo and Capsule CRD manifests the tests install (the FLUIDOS ones are written in
# tests/harness/fluidos_crds.py), and links the result to .build/k8s in the repository root.
#
# The binaries are cached outside the checkout, by version, in
#   ${FLARE_K8S_DIR:-${FLARE_CACHE:-$HOME/.cache/flare}/k8s-<versions>}
# (kustomize in its own ${FLARE_CACHE:-$HOME/.cache/flare}/kustomize-<version>, linked into bin/)
# so a second run only checks the cache and takes seconds.
set -euo pipefail

KUBERNETES_VERSION=v1.35.4
ETCD_VERSION=v3.5.35
KWOK_VERSION=v0.8.0
LIQO_VERSION=v1.0.1
CAPSULE_VERSION=v0.5.0
KUSTOMIZE_VERSION=v5.8.2  # v5.8.3 needs Go 1.27

export GOTOOLCHAIN=local
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
templates_dir="$repo_root/scripts/k8s-tools"
cache_root=${FLARE_CACHE:-$HOME/.cache/flare}
tools_name="k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}"
tools_dir=${FLARE_K8S_DIR:-$cache_root/$tools_name}
bin_dir="$tools_dir/bin"
src_dir="$tools_dir/src"
crd_dir="$tools_dir/crds"
started=$SECONDS

log() {
    printf '%s [k8s-tools] %s\n' "$(date '+%H:%M:%S')" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# Prints the local path of a module's go.mod (downloading it if needed).
module_gomod() {
    go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

# Prints the local directory of a module's extracted source (downloading it if needed).
module_dir() {
    go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# Prints the `go` directive of a go.mod file.
go_directive() {
    sed -n 's/^go \([0-9.]*\)$/\1/p' "$1"
}

# Writes the wrapper module that builds k8s.io/kubernetes commands: k8s.io/kubernetes requires
# its staging modules at v0.0.0, so every one of them is replaced by its published v0.N.P.
write_kubernetes_module() {
    local dir=$1 gomod staging_version
    gomod=$(module_gomod "k8s.io/kubernetes@$KUBERNETES_VERSION")
    [[ -f $gomod ]] || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION"
    staging_version="v0.${KUBERNETES_VERSION#v1.}"
    mkdir -p "$dir"
    {
        echo "module flare.test/k8s-tools/kubernetes"
        echo
        echo "go $(go_directive "$gomod")"
        echo
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        echo
        echo "replace ("
        awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// { print $1 }' "$gomod" | sort -u |
            while read -r module; do
                printf '\t%s => %s %s\n' "$module" "$module" "$staging_version"
            done
        echo ")"
    } >"$dir/go.mod"
}

# Linker flags stamping the Kubernetes version into the binaries (what /version reports).
kubernetes_ldflags() {
    local minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    local flags="-s -w"
    local pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION"
        flags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
    done
    echo "$flags"
}

build_kubernetes() {
    local missing=() cmd
    for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
        [[ -x $bin_dir/$cmd ]] || missing+=("$cmd")
    done
    if ((${#missing[@]} == 0)); then
        log "kubernetes $KUBERNETES_VERSION: cached"
        return
    fi
    local module_dir="$src_dir/kubernetes" out="$src_dir/kubernetes/out"
    log "kubernetes $KUBERNETES_VERSION: writing wrapper module"
    write_kubernetes_module "$module_dir"
    local packages=()
    for cmd in "${missing[@]}"; do
        packages+=("k8s.io/kubernetes/cmd/$cmd")
    done
    log "kubernetes $KUBERNETES_VERSION: building ${missing[*]} (the first build takes many minutes)"
    rm -rf "$out"
    mkdir -p "$out"
    (cd "$module_dir" && go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out/" "${packages[@]}")
    mv "$out"/* "$bin_dir/"
    log "kubernetes $KUBERNETES_VERSION: built"
}

build_etcd() {
    if [[ -x $bin_dir/etcd ]]; then
        log "etcd $ETCD_VERSION: cached"
        return
    fi
    local module_dir="$src_dir/etcd"
    log "etcd $ETCD_VERSION: building"
    rm -rf "$module_dir"
    mkdir -p "$module_dir"
    cp "$templates_dir/etcd/main.go" "$module_dir/"
    (
        cd "$module_dir"
        go mod init flare.test/k8s-tools/etcd >/dev/null 2>&1
        go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null ||
            die "cannot fetch go.etcd.io/etcd/server/v3@$ETCD_VERSION"
        go build -trimpath -ldflags "-s -w" -o "$module_dir/etcd" .
    )
    mv "$module_dir/etcd" "$bin_dir/etcd"
    log "etcd $ETCD_VERSION: built"
}

build_kwok() {
    if [[ -x $bin_dir/kwok ]]; then
        log "kwok $KWOK_VERSION: cached"
        return
    fi
    local out="$src_dir/kwok"
    log "kwok $KWOK_VERSION: building"
    rm -rf "$out"
    mkdir -p "$out"
    GOBIN="$out" GOFLAGS='' go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    mv "$out/kwok" "$bin_dir/kwok"
    log "kwok $KWOK_VERSION: built"
}

# kustomize renders deploy/'s overlays in the tests. It has its own versioned cache directory,
# so that changing its version rebuilds only it, and is linked into bin/ beside the others.
build_kustomize() {
    local dir="$cache_root/kustomize-$KUSTOMIZE_VERSION"
    if [[ -x $dir/kustomize ]]; then
        log "kustomize $KUSTOMIZE_VERSION: cached"
    else
        log "kustomize $KUSTOMIZE_VERSION: building"
        rm -rf "$dir.new"
        mkdir -p "$dir.new"
        GOBIN="$dir.new" GOFLAGS='' go install -trimpath -ldflags "-s -w" \
            "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
        rm -rf "$dir"
        mv "$dir.new" "$dir"
        log "kustomize $KUSTOMIZE_VERSION: built"
    fi
    [[ $(readlink "$bin_dir/kustomize" 2>/dev/null) == "$dir/kustomize" ]] ||
        ln -sfn "$dir/kustomize" "$bin_dir/kustomize"
}

# Copies the named CRD manifests of a directory into crds/<group>/.
copy_crds() {
    local group=$1 dir=$2
    shift 2
    [[ -d $dir ]] || die "missing CRD directory $dir"
    mkdir -p "$crd_dir.new/$group"
    local name
    for name in "$@"; do
        [[ -f $dir/$name ]] || die "missing CRD manifest $dir/$name"
        cp "$dir/$name" "$crd_dir.new/$group/$name"
        chmod u+w "$crd_dir.new/$group/$name"
    done
}

# Prints the directory of a module's source, downloading it from the module proxy if needed.
module_source() {
    local dir
    dir=$(module_dir "$1")
    [[ -d $dir ]] || die "cannot download $1"
    echo "$dir"
}

fetch_crds() {
    log "crds: liqo $LIQO_VERSION, capsule $CAPSULE_VERSION"
    rm -rf "$crd_dir.new"
    local liqo capsule
    liqo=$(module_source "github.com/liqotech/liqo@$LIQO_VERSION")
    capsule=$(module_source "github.com/projectcapsule/capsule@$CAPSULE_VERSION")
    copy_crds liqo "$liqo/deployments/liqo/charts/liqo-crds/crds" \
        offloading.liqo.io_namespaceoffloadings.yaml \
        offloading.liqo.io_virtualnodes.yaml
    copy_crds capsule "$capsule/config/crd/bases" \
        capsule.clastix.io_tenants.yaml
    rm -rf "$crd_dir"
    mv "$crd_dir.new" "$crd_dir"
    log "crds: $(find "$crd_dir" -name '*.yaml' | wc -l) manifests in $crd_dir"
}

link_build_dir() {
    local link="$repo_root/.build/k8s"
    mkdir -p "$repo_root/.build"
    if [[ -L $link || -e $link ]]; then
        [[ $(readlink -f "$link") == "$(readlink -f "$tools_dir")" ]] && return
        rm -rf "$link"
    fi
    ln -s "$tools_dir" "$link"
    log "linked .build/k8s -> $tools_dir"
}

main() {
    command -v go >/dev/null || die "go is not installed"
    log "go $(go env GOVERSION), tools in $tools_dir"
    mkdir -p "$bin_dir" "$src_dir"
    fetch_crds
    build_etcd
    build_kwok
    build_kustomize
    build_kubernetes
    link_build_dir
    log "done in $((SECONDS - started))s"
}

main "$@"
