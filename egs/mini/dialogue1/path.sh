# Source from the recipe directory: puts the repository on PYTHONPATH and its venv first on PATH.
DUET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export PYTHONPATH=$DUET_ROOT${PYTHONPATH:+:$PYTHONPATH}
[ -x "$DUET_ROOT/.venv/bin/python" ] && export PATH=$DUET_ROOT/.venv/bin:$PATH
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # the mini recipe runs beside other work on small CPUs
