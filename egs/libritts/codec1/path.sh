# Environment for the recipe: the project root on PYTHONPATH and its virtualenv's python.
DUET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
export PYTHONPATH="$DUET_ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -x "$DUET_ROOT/.venv/bin/python" ]; then
  export PATH="$DUET_ROOT/.venv/bin:$PATH"
fi
export PYTHONUNBUFFERED=1
