#!/usr/bin/env bash
# decode_tc.cl through clang 15 (nvptx) and ptxas for sm_90, without a GPU: the registers, stack frame and spills of each
# kernel (ptxas -v), as a check that the fragments stay in registers. NVIDIA's own OpenCL compiler is another compiler
# (its counts differ); this only catches what any compiler must do (asm syntax, arrays left in local memory).
# The few resident.cl helpers the kernels use are taken from it; the work-item functions, barrier, exp, sin, cos and
# the atomics are stubbed with NVVM builtins (the stubbed atomics are not atomic: for compiling only).
# Usage: bash tools/gpu/ptx-decode-tc.sh   (needs clang-15 and ptxas on PATH)
set -eu
R="$(cd "$(dirname "$0")/../.." && pwd)/engine/src/main/resources/io/lightmesh/engine/backend/opencl"
T=$(mktemp -d); trap 'rm -rf $T' EXIT
python3 - "$R/resident.cl" > $T/pre.cl <<'PY'
import sys
r = open(sys.argv[1]).read().split("\n")
def grab(prefix):
    i = next(k for k, l in enumerate(r) if l.startswith(prefix))
    out = []
    for l in r[i:]:
        if not l.strip(): break
        out.append(l)
    return "\n".join(out)
i = next(k for k, l in enumerate(r) if l.startswith("#ifdef LM_NVIDIA"))
j = next(k for k, l in enumerate(r) if l.startswith("inline int arrive"))
print('''
size_t __attribute__((overloadable)) get_local_id(uint d) { return __nvvm_read_ptx_sreg_tid_x(); }
size_t __attribute__((overloadable)) get_group_id(uint d) { return __nvvm_read_ptx_sreg_ctaid_x(); }
size_t __attribute__((overloadable)) get_num_groups(uint d) { return __nvvm_read_ptx_sreg_nctaid_x(); }
void __attribute__((overloadable)) barrier(cl_mem_fence_flags f) { __nvvm_bar_sync(0); }
float __attribute__((overloadable)) exp(float x) { return __nvvm_ex2_approx_f(x * 1.4426950f); }
float __attribute__((overloadable)) cos(float x) { return __nvvm_cos_approx_f(x); }
float __attribute__((overloadable)) sin(float x) { return __nvvm_sin_approx_f(x); }
int __attribute__((overloadable)) atomic_inc(volatile __global int* p) { int o = *p; *p = o + 1; return o; }
int __attribute__((overloadable)) atomic_xchg(volatile __global int* p, int v) { int o = *p; *p = v; return o; }
#define NT 256
#define MAXN 8''')
for part in [grab("inline int pairs_of"), grab("inline int pick("), "\n".join(r[i:j]), grab("inline int arrive"),
             grab("inline void rope_pair"), grab("#define PROJ_ROW"), grab("#define PROJ_ROPE_TAIL")]:
    print(part)
PY
cat $T/pre.cl "$R/decode_tc.cl" > $T/dtc.cl
clang-15 -x cl -cl-std=CL1.2 -target nvptx64-nvidia-nvcl -Xclang -finclude-default-header -fgnu-keywords -Dasm=__asm__ \
  '-Dinline=__attribute__((always_inline)) inline' -D LM_NVIDIA=1 -O3 -S -o $T/dtc.ptx $T/dtc.cl 2>&1 | grep -E "error" || true
sed -i 's/^\.target sm_[0-9]*.*/.target sm_90/; s/^\.version [0-9.]*/.version 7.8/' $T/dtc.ptx
ptxas -arch sm_90 -v $T/dtc.ptx -o $T/dtc.cubin 2>&1 | grep -E "Compiling|registers|spill|error|fatal" | paste - - - \
  | sed -E 's/ptxas info +: //g; s/Compiling entry function //; s/ for .sm_90.//'
