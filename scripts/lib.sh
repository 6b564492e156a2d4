# Shared by scripts/test, scripts/demo and bench/throughput (sourced, not run).

step() {
    printf '\n==> %s\n' "$*"
}

require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "$0: must run as root (network namespaces, veth pairs and TUN devices need it)" >&2
        exit 1
    fi
}

__apt_updated=no
apt_install() {
    if [[ $__apt_updated == no ]]; then
        apt-get update -q
        __apt_updated=yes
    fi
    apt-get install -y -q --no-install-recommends "$@"
}

# ensure_commands CMD:PACKAGE... installs the packages whose command is missing, in one go.
ensure_commands() {
    local missing=() pair
    for pair in "$@"; do
        if ! command -v "${pair%%:*}" >/dev/null 2>&1 && [[ ! -x /usr/sbin/${pair%%:*} ]]; then
            missing+=("${pair#*:}")
        fi
    done
    if ((${#missing[@]})); then
        step "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

# ensure_python_module MODULE PACKAGE: for /usr/bin/python3, which is what the tests use
# (a python3 earlier in PATH may be a different interpreter without Debian's modules).
ensure_python_module() {
    if ! /usr/bin/python3 -c "import $1" >/dev/null 2>&1; then
        step "installing $2"
        apt_install "$2"
    fi
}

ensure_rust_components() {
    local component installed
    installed=$(rustup component list --installed 2>/dev/null || true)
    for component in "$@"; do
        if ! grep -q "^$component" <<<"$installed"; then
            step "rustup component add $component"
            rustup component add "$component"
        fi
    done
}
