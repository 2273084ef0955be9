#!/usr/bin/env bash
# Proves binder/ on this machine as far as it can: a fresh virtual environment gets exactly
# what binder/ says (requirements.txt, then postBuild, as repo2docker runs them, in a clean
# copy of the committed tree, as Binder builds from a commit), then the quickstart notebook
# runs in it and its checked outputs (# NBVAL_CHECK_OUTPUT) must match the stored ones.
#
#   bash binder/check.sh            # from the repository root; 5-7.5 min measured on the shared
#                                   # 2-core box (pip install dominates: 240-400 s)
#   KEEP=1 bash binder/check.sh     # keep the work folder for a look afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
work=$(mktemp -d /tmp/leafx-binder.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
echo "binder check in $work"

# 1. the tree Binder would see: committed files only (no node_modules, no built static/)
if git rev-parse --git-dir >/dev/null 2>&1; then
  git archive --format=tar HEAD | tar -x -C "$work" --one-top-level=repo
else
  mkdir "$work/repo" && tar -c --exclude=node_modules --exclude=.venv --exclude=leafx_widgets/static . | tar -x -C "$work/repo"
fi
cd "$work/repo"

# 2. a fresh venv from the Python runtime.txt asks for
want=$(sed -n 's/^python-\([0-9.]*\).*/\1/p' binder/runtime.txt)
python=$(command -v "python$want" || command -v python3)
"$python" -c "import sys; v='$want'; assert sys.version.startswith(v), f'runtime.txt wants {v}, have {sys.version}'"
"$python" -m venv "$work/venv"
source "$work/venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
export PIP_RETRIES=0  # fail fast on an index this machine cannot reach (the CPU torch index; torch comes from disk)

# 3. exactly what binder/ says, in repo2docker's order
python -m pip install -q -r binder/requirements.txt
bash binder/postBuild
echo "installed in $((SECONDS - started)) s"
python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.version.cuda, f"a CUDA build of torch was installed ({torch.version.cuda}): binder pulls GBs"
import leafx_widgets.widget  # noqa: F401  (the built bundle is importable)
from leafx_widgets.widget import STATIC
assert (STATIC / "widget.js").stat().st_size > 10_000, "the JavaScript bundle was not built"
PY

# 4. the quickstart, in a kernel of this venv (JUPYTER_PATH puts its kernelspec first)
python -m ipykernel install --sys-prefix --name python3 >/dev/null
export JUPYTER_PATH="$work/venv/share/jupyter"
jupyter kernelspec list --json | python -c "
import json, sys; spec = json.load(sys.stdin)['kernelspecs']['python3']
assert spec['resource_dir'].startswith('$work/venv'), spec['resource_dir']"
cd notebooks
timeout 600 jupyter nbconvert --to notebook --execute quickstart.ipynb --output "$work/quickstart.out.ipynb" \
  --ExecutePreprocessor.timeout=300 --ExecutePreprocessor.kernel_name=python3
python - "$work/quickstart.out.ipynb" <<'PY'
import sys
import nbformat

stored = nbformat.read("quickstart.ipynb", as_version=4)
ran = nbformat.read(sys.argv[1], as_version=4)
text = lambda cell: "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
checked = 0
for want, got in zip(stored.cells, ran.cells):
    if want.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in want.source:
        assert text(want) == text(got), f"checked output differs:\n--- stored\n{text(want)}\n--- binder venv\n{text(got)}"
        checked += 1
errors = [o for c in ran.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
assert not errors, errors
assert checked, "no checked cells in the quickstart"
print(f"quickstart ran in the binder venv; {checked} checked outputs match")
PY
echo "binder check passed in $((SECONDS - started)) s"
