# One kernel parameter taking a pointer or a host TensorDescriptor: on Triton's interpreter (TRITON_INTERPRET=1,
# both against torch) and compiled for sm_90 (argument: the parameter's type, '*fp16' or 'tensordesc<fp16[32, 64]>').
import torch, triton, triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget

@triton.jit
def _strip(w, rows, k0, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, K: tl.constexpr):
    if isinstance(w, tl.core.tensor_descriptor_base):
        strip = w.load([tl.program_id(0) * BLOCK_N, k0])
    else:
        cols = k0 + tl.arange(0, BLOCK_K)
        strip = tl.load(w + rows[:, None] * K + cols[None, :])
    return strip

@triton.jit
def mm(x_ptr, w, y_ptr, N, K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([16, BLOCK_N], dtype=tl.float32)
    for k0 in tl.range(0, K, BLOCK_K):
        xs = tl.load(x_ptr + tl.arange(0, 16)[:, None] * K + k0 + tl.arange(0, BLOCK_K)[None, :])
        acc = tl.dot(xs, tl.trans(_strip(w, rows, k0, BLOCK_N, BLOCK_K, K)), acc)
    tl.store(y_ptr + tl.arange(0, 16)[:, None] * N + rows[None, :], acc.to(tl.float16))

import os, sys
if os.environ.get("TRITON_INTERPRET") == "1":
    x = torch.randn(16, 128).half(); w = torch.randn(64, 128).half()
    for arg in (w, TensorDescriptor.from_tensor(w, [32, 64])):
        y = torch.empty(16, 64).half()
        mm[(2,)](x, arg, y, 64, K=128, BLOCK_N=32, BLOCK_K=64)
        print(type(arg).__name__, (y.float() - x.float() @ w.float().T).abs().max().item())
else:
    for wty in sys.argv[1:]:
        sig = {"x_ptr": "*fp16", "w": wty, "y_ptr": "*fp16", "N": "i32", "K": "constexpr", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr"}
        k = triton.compile(ASTSource(mm, sig, {"K": 1024, "BLOCK_N": 32, "BLOCK_K": 64}), target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        print(wty, "bulk.tensor", k.asm["ptx"].count("cp.async.bulk.tensor"))
