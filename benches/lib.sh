# What the benchmark scripts share beyond scripts/lib.sh (which this sources): where results go,
# and the config of the default model on one engine. Source it first thing:
#     source "$(dirname "$0")/lib.sh"

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

# Where every benchmark writes its JSON, logs and configs.
results="$root/target/bench-results"
mkdir -p "$results"

# engine_keys ENGINE: the model-table keys for ENGINE, written BACKEND[-DTYPE][-xN]: `backend`,
# `dtype = "DTYPE"` with -int8, -bf16, -f16 or -f32, and `replicas = N` with -xN (e.g.
# onnx-int8-x2, openvino-bf16).
engine_keys() {
    local name="$1" replicas=1
    if [[ "$name" =~ -x([0-9]+)$ ]]; then
        replicas="${BASH_REMATCH[1]}"
        name="${name%-x*}"
    fi
    if [[ "$name" =~ ^(.*)-(int8|bf16|f16|f32)$ ]]; then
        echo "backend = \"${BASH_REMATCH[1]}\""
        echo "dtype = \"${BASH_REMATCH[2]}\""
    else
        echo "backend = \"$name\""
    fi
    echo "replicas = $replicas"
}

# model_table ENGINE [NAME PATH]: the [[models]] table of the model NAME at PATH (default:
# all-MiniLM-L6-v2, as configs/default.toml serves it) on ENGINE (see engine_keys), with the
# backend's default options or ENGINE_OPTIONS (e.g. '{ intra_threads = 1 }'), and
# BATCH_ROWS rows a batch at most (default 64, the CPU default).
model_table() {
    cat <<TOML
[[models]]
name = "${2:-all-MiniLM-L6-v2}"
path = "${3:-$root/.assets/models/all-MiniLM-L6-v2}"
$(engine_keys "$1")
options = ${ENGINE_OPTIONS:-{\}}
batching = { max_batch_tokens = 16384, max_batch_requests = ${BATCH_ROWS:-64}, max_wait_ms = 0, max_queued_inputs = 4096 }
TOML
}

# write_passages OUT: writes passages of ~60 words (benches/data/sentences.txt's sentences joined
# in order) to OUT, one a line, for the benchmarks' longer inputs.
write_passages() {
    awk '{ line = line (line ? " " : "") $0; words += NF }
         words >= 60 { print line; line = ""; words = 0 }' "$root/benches/data/sentences.txt" > "$1"
}

# start_infinity LOG FOLDER NAME ENGINE: Infinity (benches/peers/infinity.sh) serving the model
# FOLDER as NAME with its ENGINE (torch, optimum) on a free port, in the background, logging to
# LOG; sets INFINITY_URL once it is ready. Returns 1, with the log's tail, when it does not start.
start_infinity() {
    local log="$1" folder="$2" name="$3" engine="$4" port
    port="$(free_port)"
    start_background "$log" env MODEL_DIR="$folder" MODEL_NAME="$name" PORT="$port" \
        benches/peers/infinity.sh --engine "$engine"
    INFINITY_URL="http://127.0.0.1:$port"
    if ! wait_ready "$INFINITY_URL/health" "$BACKGROUND_PID" 600; then
        echo "Infinity did not start; the tail of $log:" >&2
        tail -20 "$log" >&2
        stop_background
        return 1
    fi
}

# record_peak_memory PID FILE...: adds `peak_rss_mb`, the peak resident memory so far of the
# process PID and its descendants (the sum of their VmHWM), to each embedrt-bench JSON FILE.
record_peak_memory() {
    python3 - "$@" <<'PY'
import json, os, sys
pid, files = int(sys.argv[1]), sys.argv[2:]
parents = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
tree, todo = [], [pid]
while todo:
    tree.append(todo.pop())
    todo += parents.get(tree[-1], [])
def peak_kb(p):
    try:
        return next(int(l.split()[1]) for l in open(f"/proc/{p}/status") if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0
mb = sum(peak_kb(p) for p in tree) / 1024
for file in files:
    summary = json.load(open(file))
    summary["peak_rss_mb"] = mb
    json.dump(summary, open(file, "w"), indent=2)
PY
}

# table COLUMN... -- FILE...: the Markdown table of embedrt-bench JSON files (benches/table.py).
table() {
    python3 "$root/benches/table.py" "$@"
}
