"""TEST DOUBLE for TensorRT-LLM v0.8.0 `examples/gpt/build.py` (tag v0.8.0, commit 5955b8af; read from the
public mirror WhiteD2125/TensorRT-LLM). It builds nothing. It parses the real argument list with
`parse_args`, applies the same argument rewriting and makes the same checks, in the same order, that
build.py, `tensorrt_llm/_common.py` (check_max_num_tokens) and `tensorrt_llm/layers/attention.py` make
before TensorRT runs, failing where they fail with their messages. Then it writes the files build.py
writes: one engine per rank, config.json (builder_config + plugin_config) and the timing cache. It
records its argv and the effective settings into $TRTFLOW_DOUBLE_RECORD.
"""

import argparse
import configparser
import json
import math
import os
import sys
import time
from pathlib import Path

PLUGIN_DTYPES = ["float16", "float32", "bfloat16"]
LORA_MODULES = ["attn_qkv", "attn_q", "attn_k", "attn_v", "attn_dense", "mlp_h_to_4h", "mlp_gate", "mlp_4h_to_h"]


def optional_plugin(parser, name):
    # nargs='?' with const None: given bare, the plugin takes the engine dtype later
    parser.add_argument(name, nargs="?", const=None, type=str, default=False, choices=PLUGIN_DTYPES)


def switch(parser, *names):
    parser.add_argument(*names, default=False, action="store_true")


def parser_v080():
    p = argparse.ArgumentParser()
    p.add_argument("--world_size", type=int, default=1)
    p.add_argument("--model_dir", type=str, default=None)
    p.add_argument("--dtype", type=str, default="float16", choices=PLUGIN_DTYPES)
    p.add_argument("--logits_dtype", type=str, default="float32", choices=["float16", "float32"])
    p.add_argument("--timing_cache", type=str, default="model.cache")
    p.add_argument("--profiling_verbosity", type=str, default="layer_names_only",
                   choices=["layer_names_only", "detailed", "none"])
    p.add_argument("--log_level", type=str, default="info")
    for name, default in (("--vocab_size", 51200), ("--n_layer", 24), ("--n_positions", 1024), ("--n_embd", 1024),
                          ("--n_head", 16)):
        p.add_argument(name, type=int, default=default)
    p.add_argument("--hidden_act", type=str, default="gelu")
    p.add_argument("--rotary_base", type=float, default=10000.0)
    p.add_argument("--rotary_scaling", nargs=2, type=str, default=None)
    p.add_argument("--rotary_pct", type=float, default=0.0)
    p.add_argument("--inter_size", type=int, default=None)
    p.add_argument("--no_bias", action="store_false")
    for name, default in (("--max_batch_size", 256), ("--max_input_len", 200), ("--max_output_len", 200),
                          ("--max_beam_width", 1)):
        p.add_argument(name, type=int, default=default)
    optional_plugin(p, "--use_gpt_attention_plugin")
    optional_plugin(p, "--use_gemm_plugin")
    switch(p, "--parallel_build")
    switch(p, "--enable_context_fmha")
    switch(p, "--enable_context_fmha_fp32_acc")
    switch(p, "--multi_block_mode")
    p.add_argument("--gpus_per_node", type=int, default=8)
    p.add_argument("--builder_opt", type=int, default=None)
    p.add_argument("--output_dir", type=Path, default="engine_outputs")
    switch(p, "--multi_query_mode", "-mq")
    switch(p, "--remove_input_padding")
    switch(p, "--use_smooth_quant")
    switch(p, "--use_weight_only")
    p.add_argument("--weight_only_precision", const="int8", type=str, nargs="?", default="int8",
                   choices=["int8", "int4"])
    switch(p, "--per_channel")
    switch(p, "--per_token")
    switch(p, "--int8_kv_cache")
    p.add_argument("--random_seed", type=int, default=None)
    switch(p, "--paged_kv_cache")
    p.add_argument("--tokens_per_block", type=int, default=128)
    p.add_argument("--max_prompt_embedding_table_size", type=int, default=0)
    switch(p, "--use_inflight_batching")
    switch(p, "--use_parallel_embedding")
    p.add_argument("--embedding_sharding_dim", type=int, default=0, choices=[0, 1])
    switch(p, "--use_embedding_sharing")
    p.add_argument("--use_lookup_plugin", nargs="?", const=None, default=False, choices=PLUGIN_DTYPES)
    switch(p, "--gather_all_token_logits")
    switch(p, "--gather_context_logits")
    switch(p, "--gather_generation_logits")
    switch(p, "--enable_fp8")
    switch(p, "--fp8_kv_cache")
    p.add_argument("--max_num_tokens", type=int, default=None)
    switch(p, "--strongly_typed")
    p.add_argument("--use_custom_all_reduce", action="store_true")
    p.add_argument("--use_lora_plugin", nargs="?", const=None, default=False, choices=PLUGIN_DTYPES)
    p.add_argument("--max_draft_len", type=int, default=0)
    p.add_argument("--use_paged_context_fmha", action="store_true")
    p.add_argument("--use_context_fmha_for_generation", action="store_true")
    p.add_argument("--lora_target_modules", nargs="+", default=None, choices=LORA_MODULES)
    p.add_argument("--max_lora_rank", type=int, default=64)
    p.add_argument("--moe_num_experts", default=0, type=int)
    p.add_argument("--moe_top_k", default=0, type=int)
    p.add_argument("--moe_tp_mode", default=2, type=int)  # MoeConfig.ParallelismMode.TENSOR_PARALLEL
    p.add_argument("--moe_renorm_mode", default=1, type=int)  # MoeConfig.ExpertScaleNormalizationMode.RENORMALIZE
    return p


def read_ini(model_dir):
    ini = configparser.ConfigParser()
    ini.read(Path(model_dir) / "config.ini")
    gpt = ini["gpt"]  # weight.py parse_ft_config: these keys and fallbacks
    n_embd = gpt.getint("n_embd")
    return {"n_embd": n_embd, "n_head": gpt.getint("n_head"), "n_layer": gpt.getint("n_layer"),
            "n_positions": gpt.getint("n_positions"), "vocab_size": gpt.getint("vocab_size"),
            "hidden_act": gpt.get("activation_function"), "bias": gpt.getboolean("bias", fallback=True),
            "dtype": gpt.get("storage_dtype", fallback="float32"),
            "inter_size": gpt.getint("intermediate_size", fallback=None) or 4 * n_embd,
            "multi_query_mode": gpt.getboolean("multi_query_mode", fallback=False)}


def check_max_num_tokens(args):
    """_common.check_max_num_tokens: only meaningful with packed input; clamped, never refused."""
    if not args.remove_input_padding:
        return args.max_num_tokens
    tokens = args.max_num_tokens or args.max_input_len * args.max_batch_size
    tokens = min(tokens, args.max_input_len * args.max_batch_size)
    if tokens < args.max_input_len and not args.enable_context_fmha:
        tokens = args.max_input_len
    elif tokens < args.tokens_per_block and args.enable_context_fmha:
        tokens = args.tokens_per_block
    return tokens


def effective_args(argv):
    """parse_arguments() of v0.8.0, step by step."""
    args = parser_v080().parse_args(argv)
    args.bias = not args.no_bias
    if args.inter_size is None:
        args.inter_size = 4 * args.n_embd
    if args.model_dir is not None:  # config.ini wins over the command line
        ini = read_ini(args.model_dir)
        args.n_embd, args.n_head, args.n_layer = ini["n_embd"], ini["n_head"], ini["n_layer"]
        args.n_positions, args.vocab_size, args.hidden_act = ini["n_positions"], ini["vocab_size"], ini["hidden_act"]
        args.bias, args.dtype, args.multi_query_mode = ini["bias"], ini["dtype"], ini["multi_query_mode"]
        args.inter_size = ini["inter_size"]
    for plugin in ("use_gpt_attention_plugin", "use_gemm_plugin", "use_lookup_plugin", "use_lora_plugin"):
        if getattr(args, plugin) is None:
            setattr(args, plugin, args.dtype)
    assert not (args.use_smooth_quant and args.use_weight_only), \
        "You cannot enable both SmoothQuant and INT8 weight-only together."
    if args.use_inflight_batching:
        args.use_gpt_attention_plugin = args.use_gpt_attention_plugin or "float16"
        args.remove_input_padding = True
        args.paged_kv_cache = True
    assert math.log2(args.tokens_per_block).is_integer(), "tokens_per_block must be power of 2"
    if args.enable_context_fmha or args.enable_context_fmha_fp32_acc:
        assert args.tokens_per_block >= 128, "Context fMHA requires >= 128 tokens per block"
    if args.fp8_kv_cache:
        assert args.use_gpt_attention_plugin or args.use_inflight_batching, \
            "You have to use GPT attention plugin when fp8 KV cache is set"
    if args.rotary_scaling is not None:
        assert args.use_gpt_attention_plugin, "RoPE scaling is only supported through GPT attention plugin."
    args.max_num_tokens = check_max_num_tokens(args)
    if args.gather_all_token_logits:
        args.gather_context_logits = args.gather_generation_logits = True
    return args


def check_network(args):
    """The asserts build_rank_engine and the attention layer reach before TensorRT builds anything."""
    assert not (args.enable_context_fmha and args.enable_context_fmha_fp32_acc)
    if args.use_paged_context_fmha or args.max_draft_len > 0:
        assert args.enable_context_fmha or args.enable_context_fmha_fp32_acc, "context fmha must be enabled"
    if args.use_context_fmha_for_generation:
        assert args.use_gpt_attention_plugin and args.paged_kv_cache and args.use_paged_context_fmha, \
            "use_context_fmha_for_generation must be used with paged KV cache and attention."
    assert args.n_head % args.world_size == 0, "num_attention_heads must be divisible by tp_size"
    if not args.use_gpt_attention_plugin:
        # AttentionParams.is_valid() is False for packed input without the plugin; plain TensorRT
        # attention then asserts that the KV cache is not paged.
        assert not args.remove_input_padding
        assert args.paged_kv_cache is False


def builder_config(args):
    return {"precision": args.dtype, "tensor_parallel": args.world_size, "use_refit": False, "int8": False,
            "strongly_typed": args.strongly_typed, "name": "gpt", "parallel_build": args.parallel_build,
            "num_layers": args.n_layer, "num_heads": args.n_head,
            "num_kv_heads": 1 if args.multi_query_mode else args.n_head, "hidden_size": args.n_embd,
            "vocab_size": args.vocab_size, "hidden_act": args.hidden_act,
            "max_position_embeddings": args.n_positions, "apply_query_key_layer_scaling": False,
            "max_batch_size": args.max_batch_size, "max_beam_width": args.max_beam_width,
            "max_input_len": args.max_input_len, "max_output_len": args.max_output_len,
            "max_num_tokens": args.max_num_tokens, "max_draft_len": args.max_draft_len,
            "max_prompt_embedding_table_size": args.max_prompt_embedding_table_size,
            "gather_context_logits": args.gather_context_logits,
            "gather_generation_logits": args.gather_generation_logits, "quant_mode": 0,
            "use_parallel_embedding": args.use_parallel_embedding,
            "lora_target_modules": args.lora_target_modules, "max_lora_rank": args.max_lora_rank}


def plugin_config(args):
    """to_legacy_setting() (everything off), then what the flags turn on."""
    return {"bert_attention_plugin": None, "gpt_attention_plugin": args.use_gpt_attention_plugin or None,
            "gemm_plugin": args.use_gemm_plugin or None, "smooth_quant_gemm_plugin": None, "identity_plugin": None,
            "layernorm_quantization_plugin": None, "rmsnorm_quantization_plugin": None,
            "nccl_plugin": args.dtype if args.world_size > 1 else None, "lookup_plugin": None,
            "lora_plugin": args.use_lora_plugin or None, "weight_only_groupwise_quant_matmul_plugin": None,
            "weight_only_quant_matmul_plugin": args.dtype if args.use_weight_only else None,
            "quantize_per_token_plugin": False, "quantize_tensor_plugin": False,
            "context_fmha": args.enable_context_fmha or args.enable_context_fmha_fp32_acc,
            "context_fmha_fp32_acc": args.enable_context_fmha_fp32_acc, "paged_kv_cache": args.paged_kv_cache,
            "remove_input_padding": args.remove_input_padding, "use_custom_all_reduce": args.use_custom_all_reduce,
            "multi_block_mode": args.multi_block_mode, "enable_xqa": False, "attention_qk_half_accumulation": False,
            "tokens_per_block": args.tokens_per_block, "use_paged_context_fmha": args.use_paged_context_fmha,
            "use_context_fmha_for_generation": args.use_context_fmha_for_generation}


def main():
    args = effective_args(sys.argv[1:])
    check_network(args)
    folder = os.environ.get("TRTFLOW_DOUBLE_RECORD")
    if folder:
        record = {"argv": sys.argv, "cwd": os.getcwd(), "plugin_config": plugin_config(args),
                  "timing_cache_read": Path(args.timing_cache).is_file()}  # read where it exists, else ignored
        Path(folder, f"build_py-{time.monotonic_ns()}.json").write_text(json.dumps(record))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(args.world_size):
        (args.output_dir / f"gpt_{args.dtype}_tp{args.world_size}_rank{rank}.engine").write_bytes(b"test double")
    config = {"builder_config": builder_config(args), "plugin_config": plugin_config(args)}
    (args.output_dir / "config.json").write_text(json.dumps(config, indent=4))
    Path(args.timing_cache).write_bytes(b"timing cache")


if __name__ == "__main__":
    main()
