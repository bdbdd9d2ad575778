# The whole stack on loopback for Veil's campaign scripts (sourced, not run): a key
# broker with a dev configuration on a fixed port, an owner key, SmolLM2 sealed with its
# key registered, an API key, and helpers to write serve.toml and start `veil serve` on
# the simulated TEE. Needs: ROOT, VEIL, PY, GGUF set, scripts/lib/setup.sh sourced.
# Sets: WORK (removed on exit), KBS, KBS_PORT, KBS_PID, CA, ADMIN, API_KEY, CHAT, and
# (from start_runtime/runtime_listening) RT_PID, RT_PORT, RT_CERT.

WORK=$(mktemp -d /var/tmp/veil-stack.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
export NO_COLOR=1

wait_line() { # FILE PREFIX [unused] [TENTHS]: the rest of the first line of FILE starting with PREFIX
    for _ in $(seq "${4:-600}"); do
        if l=$(grep -m1 "^$2" "$1" 2>/dev/null); then echo "${l#"$2"}"; return 0; fi
        sleep 0.1
    done
    return 1
}
free_port() { "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

start_broker() { # starts the broker on $WORK/kbs/kbs.toml; sets KBS_PID
    env -u RUST_BACKTRACE RUST_LOG=warn "$VEIL" kbs serve --config "$WORK/kbs/kbs.toml" \
        >"$WORK/kbs.out" 2>>"$WORK/kbs.log" &
    KBS_PID=$!
    PIDS+=("$KBS_PID")
    wait_line "$WORK/kbs.out" "kbs: " >/dev/null || die "the broker did not start: $(tail -3 "$WORK/kbs.log")"
}

write_config() { # STATE_DIR KBS_URL: $WORK/serve.toml
    cat >"$WORK/serve.toml" <<TOML
state_dir = "$1"
reattest_secs = 86400
[kbs]
url = "$2"
ca_cert = "$CA"
[tee]
kind = "sim"
danger_simulated = true
[api]
key_hashes = ["sha256:$KEY_HASH"]
[api.rate_limit]
requests_per_sec = ${RT_RATE:-1000.0}
burst = ${RT_BURST:-1000.0}
[[model]]
name = "smollm2"
kind = "chat"
bundle = "$WORK/smollm2.veil"
signer = "$WORK/owner.pub"
TOML
}

start_runtime() { # [ENV...]: starts `veil serve` in the background; sets RT_PID
    rm -f "$WORK/serve.out"
    : >"$WORK/serve.log"
    mkdir -p "$WORK/tmp"
    env RUST_LOG=info TMPDIR="$WORK/tmp" "$@" "$VEIL" serve --config "$WORK/serve.toml" \
        >"$WORK/serve.out" 2>"$WORK/serve.log" &
    RT_PID=$!
    PIDS+=("$RT_PID")
}

runtime_listening() { # [TENTHS]: sets RT_PORT and RT_CERT once `veil serve` listens
    local url
    url=$(wait_line "$WORK/serve.out" "runtime: " "" "${1:-600}") || return 1
    RT_PORT=${url##*:}
    RT_CERT=$(wait_line "$WORK/serve.out" "tls-cert: ")
}

stack_setup() {
    mkdir -p "$WORK/kbs" "$WORK/tmp"
    env -u RUST_BACKTRACE RUST_LOG=warn "$VEIL" kbs serve --dev "$WORK/kbs" >"$WORK/kbs.out" 2>"$WORK/kbs.log" &
    KBS_PID=$!
    PIDS+=("$KBS_PID")
    wait_line "$WORK/kbs.out" "kbs: " >/dev/null || die "the broker did not start"
    kill "$KBS_PID" 2>/dev/null || true; wait "$KBS_PID" 2>/dev/null || true
    # A fixed port, so a runtime can be pointed at it before the broker runs.
    KBS_PORT=$(free_port)
    sed -i "s/^listen = .*/listen = \"127.0.0.1:$KBS_PORT\"/" "$WORK/kbs/kbs.toml"
    # The load campaign measures the broker itself, not its per-address rate limit.
    [ -n "${KBS_UNLIMITED:-}" ] && printf 'rate_limit_per_sec = 1000000.0\nrate_limit_burst = 1000000.0\n' >>"$WORK/kbs/kbs.toml"
    start_broker
    KBS="https://127.0.0.1:$KBS_PORT"
    ADMIN="$WORK/kbs/admin.key"
    CA="$WORK/kbs/tls.crt"
    "$PY" -c "
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization as s
k = ec.generate_private_key(ec.SECP256R1())
open('$WORK/owner.pem','wb').write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open('$WORK/owner.pub','wb').write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))"
    mkdir -p "$WORK/smollm2"
    cp "$GGUF" "$WORK/smollm2/"
    cp models/cards/SmolLM2-135M-Instruct.md "$WORK/smollm2/README.md"
    "$VEIL" seal "$WORK/smollm2" --signing-key "$WORK/owner.pem" --out "$WORK/smollm2.veil" \
        --kbs "$KBS" --admin-key "$ADMIN" --ca-cert "$CA" >"$WORK/seal.out"
    rm -rf "$WORK/smollm2" # from here on, plaintext weights on disk under $WORK are a leak
    API_KEY="stack-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    KEY_HASH=$(printf '%s' "$API_KEY" | sha256sum | cut -d' ' -f1)
    CHAT='{"model":"smollm2","messages":[{"role":"user","content":"Say hello."}],"max_tokens":4}'
}
