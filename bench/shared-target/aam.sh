# Target "aam" for the shared gateway harness (../shared/bench). Copy this file to
# <harness>/targets/aam.sh and run e.g. `ROUNDS=2 ./bench-all.sh direct portkey@node24 aam@node24`.
# bench-all.sh sources it in a subshell (with BENCH_DIR, MOCK_PORT, NODE_BIN set) once per round,
# so the config and a fresh virtual key are made here, before the gateway is started.
#   AAM_REPO   checkout of aam (default /work/main)
#   AAM_PORT   port aam listens on (default 18090)
AAM_REPO="${AAM_REPO:-/work/main}"
AAM_PORT="${AAM_PORT:-18090}"
AAM_WORK="$BENCH_DIR/results/aam-target"
mkdir -p "$AAM_WORK/data"
# The one bench config (bench/aam-bench.yaml), pointed at this harness's mock.
sed "s/127\.0\.0\.1:18080/127.0.0.1:${MOCK_PORT}/g" "$AAM_REPO/bench/aam-bench.yaml" > "$AAM_WORK/aam-bench.yaml"
# `aam keys create` prints the new key as its last stdout line.
# Run aam as `npm start` does: built JavaScript (dist/, rebuilt now so it matches src/) through
# bin/aam.js, with the environment and node flags of package.json's start script.
(cd "$AAM_REPO" && "$NODE_BIN" --disable-warning=ExperimentalWarning scripts/build.ts >/dev/null)
read -r -a AAM_START <<< "$(cd "$AAM_REPO" && "$NODE_BIN" -p "require('./package.json').scripts.start")"
for i in "${!AAM_START[@]}"; do
  case "${AAM_START[$i]}" in node) AAM_START[$i]="$NODE_BIN";; bin/aam.js) AAM_START[$i]="$AAM_REPO/bin/aam.js";; esac
done
TARGET_KEY="$(cd "$AAM_REPO" && "$NODE_BIN" bin/aam.js keys create --agent bench-agent \
  --config "$AAM_WORK/aam-bench.yaml" --data "$AAM_WORK/data" | tail -1)"
case "$TARGET_KEY" in aam_*) ;; *) echo "aam keys create did not print a key (got: $TARGET_KEY)" >&2;; esac
TARGET_URL="http://127.0.0.1:${AAM_PORT}/v1"
TARGET_HEADERS=()
TARGET_MODEL="gpt-4o-mini"
TARGET_READY_URL="http://127.0.0.1:${AAM_PORT}/readyz"
TARGET_CMD=(env "${AAM_START[@]}" --config "$AAM_WORK/aam-bench.yaml" \
  --port "$AAM_PORT" --data "$AAM_WORK/data")
