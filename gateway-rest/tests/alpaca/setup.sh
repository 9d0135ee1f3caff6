#!/usr/bin/env bash
# Creates (once) a Python venv under target/alpaca-venv with the real
# alpaca-py SDK from PyPI, for gateway-rest/tests/alpaca.rs. Re-running is
# cheap: an existing venv with alpaca-py importable is kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="$root/target/alpaca-venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import alpaca.trading" 2>/dev/null; then
    echo "alpaca-py venv ready at $venv"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "alpaca-py>=0.30,<1"
"$venv/bin/python" -c "import alpaca, alpaca.trading; print('alpaca-py', getattr(alpaca, '__version__', '?'), 'installed in $venv')"
