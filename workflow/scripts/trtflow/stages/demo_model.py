"""The `demo` model: a small GPT-2 and a byte-level BPE tokenizer, trained here on the demo corpus.

Trained offline in about a minute (63 s measured) on 2 CPU cores, or on the GPU where the jobs have one
(recipe.device), with fixed seeds, a fixed thread count and torch's deterministic mode, so two runs on one machine
write byte-identical files. The training text is the summarize.py prompt
(`article TL;DR:`) followed by the reference summary and end-of-text, so greedy generation with the
seed's prompt produces a summary and stops.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

from ..demo_recipe import DemoRecipe
from ..errors import run_stage
from ..evaluation.prompts import summarize_prompt
from ..formats.artifact import atomic_dir, verify_checksum

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                            show_progress=False)
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS,
                                  unk_token=EOS)
    return tokenizer


def _encode_examples(tokenizer, rows: list[dict], max_len: int):
    """Token ids and per-token loss weights (summary tokens weigh more than article tokens)."""
    encoded = []
    eos_id = tokenizer.eos_token_id
    for row in rows:
        prompt = tokenizer.encode(summarize_prompt(row["article"]))
        target = tokenizer.encode(" " + row["highlights"]) + [eos_id]
        ids = (prompt + target)[-max_len:]
        n_target = min(len(target), len(ids))
        encoded.append((ids, len(ids) - n_target))
    return encoded


def training_device(recipe: DemoRecipe, log=print):
    """The torch device the recipe trains on, said in the log. On a GPU, cuBLAS is given the fixed workspace that
    torch's deterministic mode requires of it."""
    import torch

    if recipe.device == "cpu":
        log(f"training on the CPU, {recipe.threads} threads")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("the recipe trains on cuda, but torch sees no GPU in this job; fix: run it where the "
                           "planner found one, or set the model's recipe.device to cpu")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    log(f"training on the GPU: {torch.cuda.get_device_name()}")
    return torch.device("cuda")


def train(rows: list[dict], recipe: DemoRecipe, log=print):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    device = training_device(recipe, log)
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)

    texts = [summarize_prompt(r["article"]) + " " + r["highlights"] for r in rows]
    tokenizer = train_tokenizer(texts, recipe.vocab_size)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=recipe.n_positions, n_embd=recipe.n_embd,
        n_layer=recipe.n_layer, n_head=recipe.n_head, bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    if device.type == "cuda":  # eager attention: SDPA's backward kernels on a GPU are not all deterministic
        config._attn_implementation = "eager"
    model = GPT2LMHeadModel(config).to(device)
    examples = _encode_examples(tokenizer, rows, max_len=512)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(recipe.seed)
    warmup = max(1, recipe.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return recipe.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, recipe.steps - warmup)
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))

    from tqdm import tqdm

    model.train()
    started = time.perf_counter()
    bar = tqdm(range(recipe.steps), desc="train demo model", unit="step", mininterval=2.0)
    for step in bar:
        picks = torch.randint(len(examples), (recipe.batch_size,), generator=generator).tolist()
        batch = [examples[i] for i in picks]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.eos_token_id, dtype=torch.long)
        weights = torch.zeros((len(batch), width))
        for row, (ids, target_start) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            weights[row, : len(ids)] = 1.0
            weights[row, target_start: len(ids)] = recipe.summary_weight
        input_ids, weights = input_ids.to(device), weights.to(device)
        logits = model(input_ids=input_ids).logits[:, :-1]
        token_loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), input_ids[:, 1:].reshape(-1), reduction="none"
        )
        w = weights[:, 1:].reshape(-1)
        loss = (token_loss * w).sum() / w.sum()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    log(f"trained {recipe.steps} steps in {time.perf_counter() - started:.1f} s, final loss {loss.item():.4f}")
    model.eval()
    return model.cpu(), tokenizer


def read_jsonl(path: str | Path) -> list[dict]:
    with open(verify_checksum(path), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_demo_model(train_file: str | Path, out_dir: str | Path, recipe: DemoRecipe,
                     weights_format: str = "safetensors") -> None:
    rows = read_jsonl(train_file)
    model, tokenizer = train(rows, recipe)
    meta = {"source": "demo", "revision": "demo", "recipe": asdict(recipe), "train_file": str(train_file)}
    with atomic_dir(out_dir, meta) as tmp:
        model.save_pretrained(tmp, safe_serialization=(weights_format == "safetensors"))
        tokenizer.save_pretrained(tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the demo GPT-2 and its tokenizer.")
    parser.add_argument("--train-file", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--recipe", default="{}", help="JSON overrides of DemoRecipe fields")
    parser.add_argument("--weights-format", choices=["safetensors", "bin"], default="safetensors")
    args = parser.parse_args(argv)
    recipe = DemoRecipe(**json.loads(args.recipe))
    build_demo_model(args.train_file, args.out_dir, recipe, args.weights_format)


if __name__ == "__main__":
    run_stage(main)
