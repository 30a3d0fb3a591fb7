"""Which batch sizes of 3x3 matrices torch.linalg.eigh solves on this GPU in one call
(initializer.EIGH_CHUNK keeps below the first that fails)."""
import torch
for n in (4800, 8192, 16384, 32768, 65536, 153600):
    A = torch.randn(n, 3, 3, device="cuda"); A = A @ A.transpose(1, 2)
    try:
        torch.linalg.eigh(A); torch.cuda.synchronize(); print("eigh batch", n, "ok")
    except RuntimeError as e:
        print("eigh batch", n, "FAILED", str(e)[:60])
