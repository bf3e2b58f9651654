#!/usr/bin/env bash
# Install the BIDS validator for the BIDS App's tests: the schema-based validator that the
# npm package `bids-validator` bundles (dist/validator/bids-validator.js) and the Deno
# runtime it needs (npm packages `deno` / `@deno/<platform>`, a binary shipped inside a
# registry package).  Three `npm pack` tarballs (about 60 MB), no dependency tree, no
# postinstall scripts.  Idempotent.  Installs into
#   ${XDG_CACHE_HOME:-~/.cache}/metasrgan/bids-validator/bin/bids-validator
# where tests/test_bids_validator.py looks (or set METASRGAN_BIDS_VALIDATOR).
set -euo pipefail

VALIDATOR_VERSION=1.15.0
DENO_VERSION=2.9.6
ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/metasrgan/bids-validator"
WRAPPER="$ROOT/bin/bids-validator"

if [[ -x "$WRAPPER" && -f "$ROOT/.installed-$VALIDATOR_VERSION-$DENO_VERSION" ]]; then
    echo "install_bids_validator: already installed ($WRAPPER)"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install_bids_validator: npm not found; the BIDS validator test skips locally" \
        "and fails in CI without it" >&2
    exit 0
fi
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) PLATFORM=linux-x64-glibc ;;
    Linux-aarch64) PLATFORM=linux-arm64-glibc ;;
    Darwin-x86_64) PLATFORM=darwin-x64 ;;
    Darwin-arm64) PLATFORM=darwin-arm64 ;;
    *) echo "install_bids_validator: no Deno package for $(uname -sm); skipping" >&2; exit 0 ;;
esac
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "install_bids_validator: npm pack bids-validator@$VALIDATOR_VERSION @deno/$PLATFORM@$DENO_VERSION"
if ! (cd "$TMP" && npm pack --silent "bids-validator@$VALIDATOR_VERSION" \
        "@deno/$PLATFORM@$DENO_VERSION" >/dev/null); then
    echo "install_bids_validator: npm pack failed; the BIDS validator test skips locally" \
        "and fails in CI without it" >&2
    exit 0
fi
rm -rf "$ROOT"
mkdir -p "$ROOT/validator" "$ROOT/deno" "$ROOT/bin" "$ROOT/cache"
tar xzf "$TMP"/bids-validator-*.tgz -C "$ROOT/validator" --strip-components=1 package/dist/validator
tar xzf "$TMP"/deno-*.tgz -C "$ROOT/deno" --strip-components=1
cat > "$WRAPPER" <<WRAP
#!/usr/bin/env bash
# bids-validator $VALIDATOR_VERSION (schema-based, bundled for Deno) on Deno $DENO_VERSION
export DENO_DIR="\${DENO_DIR:-$ROOT/cache}" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
exec "$ROOT/deno/deno" run --allow-read --allow-env --allow-sys --allow-write="\$DENO_DIR" \\
    --no-config --no-prompt "$ROOT/validator/dist/validator/bids-validator.js" "\$@"
WRAP
chmod +x "$WRAPPER" "$ROOT/deno/deno"
touch "$ROOT/.installed-$VALIDATOR_VERSION-$DENO_VERSION"
echo "install_bids_validator: installed $WRAPPER ($("$WRAPPER" --version 2>/dev/null | tail -1))"
