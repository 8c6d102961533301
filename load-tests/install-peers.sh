#!/usr/bin/env bash
# Installs the peers compare.sh measures beside floopy-gateway when they are
# there, into ~/.cache/floopy/peers (FLOOPY_PEERS_DIR), from the package
# registries only, in about 2 minutes; idempotent:
#   - LiteLLM's proxy: PyPI litellm[proxy], in a venv (python3 -m venv);
#   - Portkey's open-source gateway: npm @portkey-ai/gateway (node and npm).
set -euo pipefail
dir="${FLOOPY_PEERS_DIR:-$HOME/.cache/floopy/peers}"
mkdir -p "$dir"
if [[ ! -x "$dir/litellm-venv/bin/litellm" ]]; then
    echo "install-peers: LiteLLM into $dir/litellm-venv"
    python3 -m venv "$dir/litellm-venv"
    "$dir/litellm-venv/bin/pip" install --quiet --disable-pip-version-check 'litellm[proxy]'
fi
if [[ ! -f "$dir/portkey/node_modules/@portkey-ai/gateway/build/start-server.js" ]]; then
    command -v npm >/dev/null || { echo "install-peers: npm is missing (apt-get install -y nodejs npm)" >&2; exit 1; }
    echo "install-peers: Portkey's gateway into $dir/portkey"
    mkdir -p "$dir/portkey"
    (
        cd "$dir/portkey"
        [[ -f package.json ]] || npm init -y >/dev/null
        npm install --silent @portkey-ai/gateway
    )
fi
litellm=$("$dir/litellm-venv/bin/pip" show litellm | awk '/^Version/ {print $2}')
portkey=$(cd "$dir/portkey" && node -p "require('@portkey-ai/gateway/package.json').version")
echo "install-peers: litellm $litellm, @portkey-ai/gateway $portkey in $dir"
