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
cat > "$AAM_WORK/aam-bench.yaml" <<EOF
apiVersion: access.envisionai.dev/v1
kind: Provider
metadata: { name: mock }
spec: { type: openai-compatible, baseUrl: "http://127.0.0.1:${MOCK_PORT}/v1" }
---
apiVersion: access.envisionai.dev/v1
kind: Model
metadata: { name: gpt-4o-mini }
spec: { targets: [ { provider: mock, model: gpt-4o-mini } ] }
---
apiVersion: access.envisionai.dev/v1
kind: Agent
metadata: { name: bench-agent }
spec: { workload: spiffe://bench/agent/bench, team: bench, environment: dev }
---
apiVersion: access.envisionai.dev/v1
kind: AgentPolicy
metadata: { name: bench-policy }
spec: { identity: { workload: spiffe://bench/agent/bench }, models: { allow: [gpt-4o-mini] } }
EOF
# `aam keys create` prints the new key as its last stdout line.
TARGET_KEY="$(cd "$AAM_REPO" && "$NODE_BIN" src/cli/main.ts keys create --agent bench-agent \
  --config "$AAM_WORK/aam-bench.yaml" --data "$AAM_WORK/data" | tail -1)"
case "$TARGET_KEY" in aam_*) ;; *) echo "aam keys create did not print a key (got: $TARGET_KEY)" >&2;; esac
TARGET_URL="http://127.0.0.1:${AAM_PORT}/v1"
TARGET_HEADERS=()
TARGET_MODEL="gpt-4o-mini"
TARGET_READY_URL="http://127.0.0.1:${AAM_PORT}/readyz"
TARGET_CMD=("$NODE_BIN" "$AAM_REPO/src/cli/main.ts" serve --config "$AAM_WORK/aam-bench.yaml" \
  --port "$AAM_PORT" --data "$AAM_WORK/data")
