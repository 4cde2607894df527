#!/usr/bin/env bash
# On the GPU machine, from a folder made by pack.sh: registers NVIDIA's OpenCL driver with the ICD loader, runs the
# OpenCL kernel tests (JUnit, LIGHTMESH_REQUIRE_OPENCL=1), then KernelBench and the PyTorch figures.
# Writes logs under $OUT (or /tmp/lightmesh-out).
# Usage: bash .runtime/tools/run-gpu.sh [tests] [bench] [sampler] [engine] [torch] [peer] [peer-summary] [fixtures-bf16] [shards]
#        [model] [serve] [pool]
#   shards: ShardDecodeBench, from a pack made by pack-shards.sh;
#   model, serve, pool (a pack made by pack-mesh.sh: the whole embedded mesh with its Kafka broker):
#     model: a synthetic checkpoint written once into MODEL_DIR (default /tmp/lightmesh-model; MODEL_ARGS, default
#     "--shape 1b --dtype bf16": the 1.25B M1 shape); serve: bench-serve on it (SERVE_ARGS, e.g. "--backend opencl
#     --experts 2 --concurrency 16"), appended to serve.txt; pool: bench-pool (POOL_ARGS), appended to pool.txt;
#   peer: HF transformers' MiniMaxForCausalLM bf16 eager on the 1.25B M1 shape (hf_peer_bench.py, PEER_ARGS);
#   peer-summary: the side-by-side table of this call's enginebench.txt and hfpeer.txt;
#   fixtures-bf16: HF's own bf16 error on the engine's reference fixtures (the tensor-core path's tolerance)
set -uo pipefail
R="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$R/rt.tar.xz" ]; then   # packed with --xz (pack.sh, pack-shards.sh, pack-mesh.sh); unpacked once per pack
  RT="${LIGHTMESH_RT:-/tmp/lightmesh-rt}"   # where to unpack (another folder for a smoke run beside others' on one box)
  stamp=$(stat -c '%s %Y' "$R/rt.tar.xz")
  if [ "$(cat "$RT/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$RT" && mkdir -p "$RT" && tar -C "$RT" -xJf "$R/rt.tar.xz" && echo "$stamp" > "$RT/.stamp"
  fi
  rm -rf "$RT/tools" && cp -r "$R/tools" "$RT/"
  R="$RT"
fi
OUT="${OUT:-/tmp/lightmesh-out}"
mkdir -p "$OUT"
steps=("$@"); [ ${#steps[@]} -eq 0 ] && steps=(tests bench torch)
BENCH_ARGS="${BENCH_ARGS:-}"   # KernelBench's arguments; JAVA_OPTS: extra JVM options for bench and engine

# NVIDIA's OpenCL is installed but not registered: an ICD file naming its library, and the loader pointed at it.
# (Elsewhere, e.g. a CPU machine with PoCL, the system's ICDs are left alone.)
if ldconfig -p 2>/dev/null | grep -q libnvidia-opencl.so.1 || ls /usr/local/nvidia/lib64/libnvidia-opencl.so.1 \
    /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1 >/dev/null 2>&1; then
  ICD=/tmp/lightmesh-icd
  mkdir -p "$ICD"
  echo libnvidia-opencl.so.1 > "$ICD/nvidia.icd"
  export OCL_ICD_VENDORS="$ICD"
  [ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libOpenCL.so.1'; then
  cuda_cl=$(ls /usr/local/cuda*/lib64/libOpenCL.so.1 /usr/local/cuda*/targets/x86_64-linux/lib/libOpenCL.so.1 2>/dev/null | head -1)
  if [ -n "$cuda_cl" ]; then export LD_LIBRARY_PATH="$(dirname "$cuda_cl"):${LD_LIBRARY_PATH:-}"
  else export LD_LIBRARY_PATH="$R/native:${LD_LIBRARY_PATH:-}"; fi
fi
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; \
  echo "OCL_ICD_VENDORS=${OCL_ICD_VENDORS:-} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"; ls -l /usr/local/nvidia/lib64/libnvidia-opencl* /usr/lib/x86_64-linux-gnu/libnvidia-opencl* 2>/dev/null; ldconfig -p | grep -i opencl; } 2>&1 | tee "$OUT/env.txt"

# Signal chaining: the OpenCL compilers (NVIDIA's, PoCL's LLVM) install their own SIGSEGV handlers over the JVM's,
# which uses SIGSEGV for safepoint polls and implicit null checks; without libjsig the JVM can die silently (no hs_err).
[ -f "$R/jdk/lib/libjsig.so" ] && export LD_PRELOAD="$R/jdk/lib/libjsig.so${LD_PRELOAD:+:$LD_PRELOAD}"
JAVA=("$R/jdk/bin/java" --enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector)
CP=$(ls "$R"/lib/*.jar | tr '\n' ':')
rc=0
for step in "${steps[@]}"; do
  case "$step" in
    tests)
      TCP="$CP$(ls "$R"/test-lib/lightmesh-engine-tests.jar)"
      select=()
      # TEST_CLASSES="a.B c.D": only these classes (default: every OpenCL test class the pack lists)
      if [ -n "${TEST_CLASSES:-}" ]; then for c in $TEST_CLASSES; do select+=(--select-class "$c"); done
      else while read -r c; do select+=(--select-class "$c"); done < "$R/test-lib/opencl-test-classes.txt"; fi
      # from engine/ when the checkout is here: the fixture tests read src/test/resources/fixtures and ../models/demo
      tdir=.; [ -d engine/src/test/resources/fixtures ] && tdir=engine
      (cd "$tdir" && LIGHTMESH_REQUIRE_OPENCL=1 "${JAVA[@]}" ${JAVA_OPTS:-} -Xmx16g -jar "$R"/test-lib/junit-platform-console-standalone-*.jar \
        execute --class-path "$TCP" "${select[@]}" --details=tree --disable-banner \
        --reports-dir "$OUT/junit") 2>&1 | grep --line-buffered -v '^WARNING' | tee "$OUT/tests.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    bench)
      "${JAVA[@]}" ${JAVA_OPTS:-} -Xmx64g -XX:ErrorFile="$OUT/hs_err_%p.log" -cp "$CP" io.lightmesh.engine.bench.KernelBench $BENCH_ARGS 2>&1 | grep --line-buffered -v '^WARNING' \
        | tee "$OUT/kernelbench.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    sampler)  # SamplerBench: a sampled token on the host against the plain sort, and a step's rows in parallel
      "${JAVA[@]}" ${JAVA_OPTS:-} -Xmx8g -cp "$CP" io.lightmesh.engine.bench.SamplerBench ${SAMPLER_ARGS:-} 2>&1 \
        | grep --line-buffered -v '^WARNING' | tee "$OUT/samplerbench.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    engine)   # the whole engine (EngineBench) on the OpenCL backend; ENGINE_ARGS picks the model and prompts
      "${JAVA[@]}" ${JAVA_OPTS:-} -Xmx96g -XX:ErrorFile="$OUT/hs_err_%p.log" -cp "$CP" io.lightmesh.engine.bench.EngineBench \
        --backend opencl ${ENGINE_ARGS:-} 2>&1 | grep --line-buffered -v '^WARNING' | tee -a "$OUT/enginebench.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    torch)
      PYTHONUNBUFFERED=1 python3 "$R/tools/torch_bench.py" 2>&1 | tee "$OUT/torchbench.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    shards)   # ShardDecodeBench: experts on loopback gRPC shards vs in-process (a pack made by pack-shards.sh)
      timeout "${SHARDS_TIMEOUT:-400}" "${JAVA[@]}" ${JAVA_OPTS:-} -Xmx48g -XX:ErrorFile="$OUT/hs_err_%p.log" -cp "$CP" \
        io.lightmesh.launcher.ShardDecodeBench ${SHARDS_ARGS:-} 2>&1 | grep --line-buffered -v '^WARNING' | tee -a "$OUT/shardbench.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    model)    # SyntheticModelWriter: the checkpoint the serve steps share (kept when MODEL_DIR has one)
      "${JAVA[@]}" -Xmx48g -cp "$CP" io.lightmesh.launcher.SyntheticModelWriter ${MODEL_ARGS:---shape 1b --dtype bf16} \
        "${MODEL_DIR:-/tmp/lightmesh-model}" 2>&1 | grep --line-buffered -v '^WARNING' | tee -a "$OUT/serve.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    serve)    # bench-serve: the mesh (Kafka broker child process, router, workers, shards) and the in-process engine
      echo "== serve: BenchServe --model ${MODEL_DIR:-/tmp/lightmesh-model} ${SERVE_ARGS:-}" | tee -a "$OUT/serve.txt"
      timeout "${SERVE_TIMEOUT:-300}" "${JAVA[@]}" ${JAVA_OPTS:-} -Xmx48g -XX:ErrorFile="$OUT/hs_err_%p.log" -cp "$CP" \
        io.lightmesh.launcher.BenchServe --model "${MODEL_DIR:-/tmp/lightmesh-model}" ${SERVE_ARGS:-} 2>&1 | grep --line-buffered -v '^WARNING' \
        | tee -a "$OUT/serve.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    pool)     # bench-pool: static vs balanced placement of a skewed router's experts over 4 shards (CPU)
      echo "== pool: ExpertPoolBench ${POOL_ARGS:-} ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/pool.txt"
      timeout "${POOL_TIMEOUT:-400}" "${JAVA[@]}" ${JAVA_OPTS:-} -Xmx16g -XX:ErrorFile="$OUT/hs_err_%p.log" -cp "$CP" \
        io.lightmesh.launcher.ExpertPoolBench ${POOL_ARGS:-} 2>&1 | grep --line-buffered -v '^WARNING' | tee -a "$OUT/pool.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
      echo "== pool: done, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/pool.txt" ;;
    peer)
      PYTHONUNBUFFERED=1 python3 "$R/tools/hf_peer_bench.py" ${PEER_ARGS:-} --json "$OUT/hfpeer.json" 2>&1 | tee -a "$OUT/hfpeer.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    peer-summary)
      python3 "$R/tools/peer_summary.py" "$OUT/enginebench.txt" "$OUT/hfpeer.txt" 2>&1 | tee "$OUT/peer-summary.txt" ;;
    fixtures-bf16)
      PYTHONUNBUFFERED=1 python3 "$R/tools/hf_fixture_bf16.py" --reference "$R/tools/reference" 2>&1 | tee "$OUT/hf-fixtures-bf16.txt"
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    *) echo "unknown step $step (tests, bench, sampler, engine, torch, peer, peer-summary, fixtures-bf16, shards, model, serve, pool)"; rc=2 ;;
  esac
done
exit $rc
