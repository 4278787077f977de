#!/usr/bin/env bash
# Memory after a burst, per allocator: the `embedrt` binary built on glibc's malloc, on glibc
# with a thread calling malloc_trim every second, on mimalloc and on jemalloc (the features of
# embedrt-api), each with ONNX Runtime's CPU arena off (the default) and on, serving
# all-MiniLM-L6-v2 on onnx. benches/memory_burst.py measures each: resident memory idle, after
# steady traffic, at the peak of one request of 2,048 inputs, and for 30 s after it. Prints a
# Markdown table; JSON goes to target/bench-results/memory/.
# Usage: benches/memory.sh [ALLOCATOR...]   (default: glibc glibc-trim mimalloc jemalloc)
# PROFILE=dev measures the test build's profile instead of release.
source "$(dirname "$0")/lib.sh"
results="$results/memory"
mkdir -p "$results"
profile="${PROFILE:-release}"
out_dir="$root/target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
allocators=("$@")
[ ${#allocators[@]} -eq 0 ] && allocators=(glibc glibc-trim mimalloc jemalloc)

scripts/setup.sh
cargo build --profile "$profile" -p embedrt-plugin-onnx
files=()
for allocator in "${allocators[@]}"; do
    features=()
    [ "$allocator" != glibc ] && features=(--features "$allocator")
    cargo build --profile "$profile" -p embedrt-api --no-default-features "${features[@]}"
    mkdir -p "$results/$allocator"
    cp "$out_dir/embedrt" "$results/$allocator/embedrt"
    for arena in false true; do
        label="$allocator-arena-$([ "$arena" = true ] && echo on || echo off)"
        config="$results/$label.toml"
        {
            printf '[server]\nplugin_dirs = ["%s"]\n\n' "$out_dir"
            ENGINE_OPTIONS="{ cpu_arena = $arena }" model_table onnx
        } > "$config"
        EMBEDRT_BIN="$results/$allocator/embedrt" start_server "$results/$label.log" \
            --config "$config"
        python3 benches/memory_burst.py "$SERVER_URL" "$SERVER_PID" "$label" \
            "$results/$label.json"
        files+=("$results/$label.json")
        stop_background "$SERVER_PID"
    done
done

python3 - "${files[@]}" <<'PY'
import json, sys
print("| allocator, ORT arena | idle MB | steady MB | peak MB | 1 s after | 10 s after "
      "| 30 s after | back within 25% of steady |")
print("|---|---|---|---|---|---|---|---|")
for file in sys.argv[1:]:
    s = json.load(open(file))
    back = "never (30 s)" if s["seconds_to_within_25pct"] is None else f"{s['seconds_to_within_25pct']} s"
    print(f"| {s['label']} | {s['idle_rss_mb']:.0f} | {s['steady_rss_mb']:.0f} | {s['peak_rss_mb']:.0f} "
          f"| {s['rss_after_1s_mb']:.0f} | {s['rss_after_10s_mb']:.0f} | {s['rss_after_30s_mb']:.0f} | {back} |")
PY
