#!/usr/bin/env bash
# Proves the pure core stays pure: the engine and risk crates' normal
# dependency trees hold no async runtime or I/O framework (ARCHITECTURE.md,
# principle 1). Fails loudly, naming the offending crate.
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0
for crate in brokerx-engine brokerx-risk; do
    tree=$(cargo tree --offline -p "$crate" -e normal --prefix none --format '{p}' 2>/dev/null \
        || cargo tree -p "$crate" -e normal --prefix none --format '{p}')
    for banned in tokio mio async-std smol futures hyper; do
        if echo "$tree" | grep -qE "^${banned} "; then
            echo "FAIL: $crate depends on $banned:"
            cargo tree -p "$crate" -e normal -i "$banned" || true
            status=1
        fi
    done
    echo "$crate normal dependencies:"
    echo "$tree" | sed 's/^/  /' | sort -u
done
if [ "$status" -eq 0 ]; then
    echo "core dependency check: ok (no tokio, mio, async runtime or HTTP stack)"
fi
exit "$status"
