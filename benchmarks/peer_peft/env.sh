# Sourced by run.sh and conll04.sh: makes the peer environment once ($peer: the project's torch
# version, transformers 4.57, peft 0.17, seqeval; the newest pair where PEFT prefix-tunes BERT)
# and sets $here, $repo, $python (the project's) and $peer.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
peer="$here/.venv"
if [[ ! -x "$peer/bin/python" ]]; then
    torch_version="$("$python" -c 'import torch; print(torch.__version__.split("+")[0])')"
    echo "making the peer environment $peer (torch $torch_version, transformers 4.57, peft 0.17)"
    "$python" -m venv "$peer"
    "$peer/bin/pip" install -q "torch==$torch_version" "transformers==4.57.*" "peft==0.17.*" \
        seqeval
fi
if ! "$peer/bin/python" -c "import seqeval" 2>/dev/null; then  # environments made before
    "$peer/bin/pip" install -q seqeval
fi
export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
