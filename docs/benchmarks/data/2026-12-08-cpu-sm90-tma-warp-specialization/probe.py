# The 64-row tl.dot loop as kernels/linear.py writes it (pointer loads with masks) and with TMA tensor descriptors,
# each with and without warp_specialize, compiled for sm_90 here (no GPU): what the PTX holds and the registers; and
# one row's loop (a reduction, no tl.dot) through a tensor descriptor, with and without warp_specialize.
import subprocess, tempfile, os
import triton, triton.language as tl
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget

@triton.jit
def dot_ptr(x_ptr, w_ptr, y_ptr, M, N, K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, WS: tl.constexpr, TMA: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    batch = tl.arange(0, BLOCK_M)
    batch_ok = batch < M
    first = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if TMA:
        wd = tl.make_tensor_descriptor(w_ptr, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K])
        xd = tl.make_tensor_descriptor(x_ptr, shape=[M, K], strides=[K, 1], block_shape=[BLOCK_M, BLOCK_K])
        for k0 in tl.range(0, K, BLOCK_K, warp_specialize=WS, num_stages=4):
            acc = tl.dot(xd.load([0, k0]), tl.trans(wd.load([tl.program_id(0) * BLOCK_N, k0])), acc)
    else:
        for k0 in tl.range(0, K, BLOCK_K, warp_specialize=WS, num_stages=4):
            cols = k0 + first
            x = tl.load(x_ptr + batch[:, None] * K + cols[None, :], mask=batch_ok[:, None], other=0.0)
            w = tl.load(w_ptr + rows[:, None] * K + cols[None, :], mask=row_ok[:, None], other=0.0)
            acc = tl.dot(x, tl.trans(w), acc)
    tl.store(y_ptr + batch[:, None] * N + rows[None, :], acc.to(tl.float16), mask=batch_ok[:, None] & row_ok[None, :])

@triton.jit
def row_tma(w_ptr, x_ptr, y_ptr, N, K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, WS: tl.constexpr):
    pid = tl.program_id(0)
    desc = tl.make_tensor_descriptor(w_ptr, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K])
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k in tl.range(0, K, BLOCK_K, warp_specialize=WS, num_stages=4):
        x = tl.load(x_ptr + k + tl.arange(0, BLOCK_K)).to(tl.float32)
        acc += tl.sum(desc.load([pid * BLOCK_N, k]).to(tl.float32) * x[None, :], axis=1)
    tl.store(y_ptr + pid * BLOCK_N + tl.arange(0, BLOCK_N), acc.to(tl.float16))


cuobj = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
sig = {"x_ptr": "*fp16", "w_ptr": "*fp16", "y_ptr": "*fp16", "M": "i32", "N": "i32", **{k: "constexpr" for k in ("K", "BLOCK_M", "BLOCK_N", "BLOCK_K", "WS", "TMA")}}
for tma in (False, True):
    for ws in (False, True):
        for bn, bk, w in ((32, 128, 4), (64, 64, 4), (64, 128, 8)):
            const = {"K": 1024, "BLOCK_M": 64, "BLOCK_N": bn, "BLOCK_K": bk, "WS": ws, "TMA": tma}
            src = ASTSource(dot_ptr, sig, const, attrs={(i,): [["tt.divisibility", 16]] for i in range(3)})
            name = f"tma={tma:d} ws={ws:d} {bn}x{bk} w{w}"
            try:
                k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": w})
            except Exception as e:
                print(name, "FAILED", str(e).splitlines()[0][:200]); continue
            ptx = k.asm["ptx"]
            f = tempfile.NamedTemporaryFile(suffix=".cubin", delete=False); f.write(k.asm["cubin"]); f.close()
            res = subprocess.run([cuobj, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
            reg = [l.split()[0] for l in res.splitlines() if "REG:" in l for l in [l.strip().split("REG:")[1]]]
            print(name, {x: ptx.count(x) for x in ("cp.async.bulk.tensor", "cp.async.cg", "setmaxnreg", "wgmma.mma_async", "ld.global")}, "smem", k.metadata.shared, "reg", reg[:1])

row_sig = {"w_ptr": "*fp16", "x_ptr": "*fp16", "y_ptr": "*fp16", "N": "i32", **{k: "constexpr" for k in ("K", "BLOCK_N", "BLOCK_K", "WS")}}
for ws in (False, True):
    src = ASTSource(row_tma, row_sig, {"K": 1024, "BLOCK_N": 16, "BLOCK_K": 128, "WS": ws},
                    attrs={(i,): [["tt.divisibility", 16]] for i in range(3)})
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    ptx = k.asm["ptx"]
    print(f"row ws={ws:d} 16x128 w4", {x: ptx.count(x) for x in ("cp.async.bulk.tensor", "setmaxnreg", "mbarrier.try_wait")},
          "smem", k.metadata.shared)
