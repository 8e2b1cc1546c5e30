#!/usr/bin/env python3
"""PyTorch's side of `nanochat bench train`: times training steps of nanochat's own model and
optimizer, imported from a nanochat checkout (nothing of nanochat is copied here).

    python scripts/bench_torch.py --nanochat DIR [--depth 4] [--seq-len 1024] [--batch-size 1]
        [--vocab 65536] [--steps 10] [--compile]

DIR is a checkout of github.com/karpathy/nanochat: HEAD (92d63d4, `GPT.setup_optimizer`, one
MuonAdamW) or v1 (16788ee, `GPT.setup_optimizers`, AdamW + Muon). The model is built as each
version's scripts/base_train.py builds it (HEAD: n_embd = depth x 64 rounded up to 128-dim heads,
window pattern SSSL; v1: n_embd = 64 x depth, 128-dim heads) on the CPU in float32, with random
tokens, one warm-up step (two with --compile), then the median of --steps timed steps. It prints
one JSON object with the same keys as `nanochat bench train --json` (`tokens_per_s`,
`step_seconds`, `forward_seconds`, `backward_seconds`, `optimizer_seconds`, `final_loss`).
"""

import argparse
import json
import os
import statistics
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nanochat", required=True, help="a nanochat checkout (HEAD or v1)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--vocab", type=int, default=65536)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = p.parse_args()
    os.environ.setdefault("NANOCHAT_DTYPE", "float32")
    sys.path.insert(0, os.path.abspath(a.nanochat))
    import torch
    from nanochat.gpt import GPT, GPTConfig

    head = hasattr(GPT, "setup_optimizer")
    if head:
        dim = (a.depth * 64 + 127) // 128 * 128
        config = GPTConfig(sequence_len=a.seq_len, vocab_size=a.vocab, n_layer=a.depth,
                           n_head=dim // 128, n_kv_head=dim // 128, n_embd=dim,
                           window_pattern="SSSL")
    else:
        dim = 64 * a.depth
        config = GPTConfig(sequence_len=a.seq_len, vocab_size=a.vocab, n_layer=a.depth,
                           n_head=max(1, dim // 128), n_kv_head=max(1, dim // 128), n_embd=dim)
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device="cpu")
    model.init_weights()
    if head:
        opt = model.setup_optimizer(unembedding_lr=0.008, embedding_lr=0.3, matrix_lr=0.02,
                                    weight_decay=0.28, scalar_lr=0.5)
        optimizers = [opt]
    else:
        optimizers = model.setup_optimizers()
    run = torch.compile(model, dynamic=False) if a.compile else model
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, a.vocab, (a.batch_size, a.seq_len), generator=g)
    y = torch.randint(0, a.vocab, (a.batch_size, a.seq_len), generator=g)
    times, loss = [], None
    for step in range(a.steps + (2 if a.compile else 1)):
        t0 = time.perf_counter()
        loss = run(x, y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        for o in optimizers:
            o.step()
        model.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if step >= (2 if a.compile else 1):
            times.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2))
    med = [statistics.median(t[i] for t in times) for i in range(4)]
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}" + (" compile" if a.compile else " eager"),
        "recipe": "head" if head else "v1", "depth": a.depth, "n_embd": dim,
        "vocab_size": a.vocab, "batch_size": a.batch_size, "seq_len": a.seq_len,
        "threads": torch.get_num_threads(), "steps": a.steps,
        "step_seconds": med[0], "forward_seconds": med[1], "backward_seconds": med[2],
        "optimizer_seconds": med[3], "final_loss": loss.item(),
        "tokens_per_s": a.batch_size * a.seq_len / med[0],
    }))


if __name__ == "__main__":
    main()
