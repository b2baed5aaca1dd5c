"""c-model shards: the v0.8.0 hf_gpt_convert.py layout, recomposed exactly into the HF tensors."""

from __future__ import annotations

import filecmp
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from trtflow.formats import cmodel, trtllm_ckpt
from trtflow.formats.artifact import ArtifactError, verify_manifest, write_manifest
from trtflow.formats.hf import CheckpointError


def hf_params(folder) -> dict[str, torch.Tensor]:
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder)
    return {name: p.detach() for name, p in model.named_parameters()}


def expected_files(n_layer: int, tp: int, tied: bool = True) -> set[str]:
    files = {"config.ini", "MANIFEST.json", "model.wte.bin", "model.wpe.bin", "model.final_layernorm.weight.bin",
             "model.final_layernorm.bias.bin"}
    if not tied:
        files.add("model.lm_head.weight.bin")
    for i in range(n_layer):
        p = f"model.layers.{i}."
        for stem in ("input_layernorm.weight", "input_layernorm.bias", "attention.dense.bias",
                     "post_attention_layernorm.weight", "post_attention_layernorm.bias", "mlp.dense_4h_to_h.bias"):
            files.add(f"{p}{stem}.bin")
        for stem in ("attention.query_key_value.weight", "attention.query_key_value.bias", "attention.dense.weight",
                     "mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias", "mlp.dense_4h_to_h.weight"):
            files |= {f"{p}{stem}.{r}.bin" for r in range(tp)}
    return files


def raw(path, dtype, shape):
    np_dtype = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.int16}[dtype]
    tensor = torch.from_numpy(np.fromfile(path, dtype=np_dtype))
    if dtype == torch.bfloat16:
        tensor = tensor.view(torch.bfloat16)
    return tensor.reshape(shape)


@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("storage", ["float32", "float16", "bfloat16"])
def test_shards_recompose_to_hf_tensors(tiny_gpt2, tmp_path, tp, storage):
    out = cmodel.convert(tiny_gpt2, tmp_path / "c", tp, storage, processes=2, progress=False)
    assert out == tmp_path / "c" / f"{tp}-gpu"
    assert {p.name for p in out.iterdir()} == expected_files(2, tp)
    dtype = cmodel.TORCH_DTYPES[storage]
    params = {k: v.to(dtype) for k, v in hf_params(tiny_gpt2).items()}
    H, inner = 64, 256
    assert torch.equal(raw(out / "model.wte.bin", dtype, (1000, H)), params["transformer.wte.weight"])
    assert torch.equal(raw(out / "model.wpe.bin", dtype, (128, H)), params["transformer.wpe.weight"])
    assert torch.equal(raw(out / "model.final_layernorm.weight.bin", dtype, (H,)), params["transformer.ln_f.weight"])
    assert torch.equal(raw(out / "model.final_layernorm.bias.bin", dtype, (H,)), params["transformer.ln_f.bias"])
    for i in range(2):
        hf, c = f"transformer.h.{i}.", out / f"model.layers.{i}."
        qkv = torch.cat([raw(f"{c}attention.query_key_value.weight.{r}.bin", dtype, (H, 3, H // tp))
                         for r in range(tp)], dim=-1)
        assert torch.equal(qkv.reshape(H, 3 * H), params[hf + "attn.c_attn.weight"])
        qkv_b = torch.cat([raw(f"{c}attention.query_key_value.bias.{r}.bin", dtype, (3, H // tp)) for r in range(tp)], -1)
        assert torch.equal(qkv_b.reshape(3 * H), params[hf + "attn.c_attn.bias"])
        dense = torch.cat([raw(f"{c}attention.dense.weight.{r}.bin", dtype, (H // tp, H)) for r in range(tp)], 0)
        assert torch.equal(dense, params[hf + "attn.c_proj.weight"])
        assert torch.equal(raw(f"{c}attention.dense.bias.bin", dtype, (H,)), params[hf + "attn.c_proj.bias"])
        fc = torch.cat([raw(f"{c}mlp.dense_h_to_4h.weight.{r}.bin", dtype, (H, inner // tp)) for r in range(tp)], -1)
        assert torch.equal(fc, params[hf + "mlp.c_fc.weight"])
        fc_b = torch.cat([raw(f"{c}mlp.dense_h_to_4h.bias.{r}.bin", dtype, (inner // tp,)) for r in range(tp)])
        assert torch.equal(fc_b, params[hf + "mlp.c_fc.bias"])
        proj = torch.cat([raw(f"{c}mlp.dense_4h_to_h.weight.{r}.bin", dtype, (inner // tp, H)) for r in range(tp)], 0)
        assert torch.equal(proj, params[hf + "mlp.c_proj.weight"])
        assert torch.equal(raw(f"{c}mlp.dense_4h_to_h.bias.bin", dtype, (H,)), params[hf + "mlp.c_proj.bias"])
        for c_name, hf_name in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            for part in ("weight", "bias"):
                assert torch.equal(raw(f"{c}{c_name}.{part}.bin", dtype, (H,)), params[f"{hf}{hf_name}.{part}"])
    compared = 2 + 2 + 2 * 12  # wte, wpe, ln_f ×2, and twelve files a layer: every file written
    assert len({p.name for p in out.iterdir()} - {"config.ini", "MANIFEST.json"}) == compared + 2 * 6 * (tp - 1)


def test_qkv_rank_slices_are_per_projection(tiny_gpt2, tmp_path):
    """Rank r holds columns [j·H + r·H/tp, j·H + (r+1)·H/tp) of Q, K and V, stored [H, 3, H/tp]."""
    out = cmodel.convert(tiny_gpt2, tmp_path / "c", 2, "float32", progress=False)
    weight = hf_params(tiny_gpt2)["transformer.h.0.attn.c_attn.weight"]
    rank1 = raw(out / "model.layers.0.attention.query_key_value.weight.1.bin", torch.float32, (64, 3, 32))
    for j in range(3):
        assert torch.equal(rank1[:, j], weight[:, j * 64 + 32: j * 64 + 64])


def test_bf16_is_raw_two_byte_words(tiny_gpt2, tmp_path):
    out = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "bfloat16", progress=False)
    wpe = hf_params(tiny_gpt2)["transformer.wpe.weight"]
    data = (out / "model.wpe.bin").read_bytes()
    assert len(data) == wpe.numel() * 2
    assert data == wpe.to(torch.bfloat16).view(torch.int16).numpy().tobytes()


def test_three_way_split_of_a_six_head_model(six_head_gpt2, tmp_path):
    out = cmodel.convert(six_head_gpt2, tmp_path / "c", 3, "float32", progress=False)
    assert {p.name for p in out.iterdir()} == expected_files(2, 3)
    weight = hf_params(six_head_gpt2)["transformer.h.1.mlp.c_proj.weight"]
    parts = [raw(out / f"model.layers.1.mlp.dense_4h_to_h.weight.{r}.bin", torch.float32, (128, 96)) for r in range(3)]
    assert torch.equal(torch.cat(parts), weight)


def test_safetensors_and_bin_inputs_give_identical_bytes(tiny_gpt2, tiny_gpt2_bin, tmp_path):
    assert sorted(p.name for p in tiny_gpt2_bin.glob("*.bin")) == ["pytorch_model.bin"]
    assert not list(tiny_gpt2_bin.glob("*.safetensors"))
    a = cmodel.convert(tiny_gpt2, tmp_path / "a", 2, "float16", progress=False)
    b = cmodel.convert(tiny_gpt2_bin, tmp_path / "b", 2, "float16", progress=False)
    names = sorted(p.name for p in a.iterdir() if p.suffix == ".bin")
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(names)


def test_rerun_is_byte_identical(tiny_gpt2, tmp_path):
    a = cmodel.convert(tiny_gpt2, tmp_path / "run", 2, "float16", progress=False)
    first = {p.name: p.read_bytes() for p in a.iterdir()}
    b = cmodel.convert(tiny_gpt2, tmp_path / "run", 2, "float16", progress=False)
    assert {p.name: p.read_bytes() for p in b.iterdir()} == first


def test_config_ini_has_what_build_py_reads(tiny_gpt2, tmp_path):
    out = cmodel.convert(tiny_gpt2, tmp_path / "c", 2, "float16", progress=False)
    settings = cmodel.load_cmodel(out).settings
    keys = list(settings)
    assert keys[:11] == ["out_dir", "in_file", "tensor_parallelism", "processes", "calibrate_kv_cache", "smoothquant",
                         "model", "storage_type", "dataset_cache_dir", "load_model_on_cpu", "convert_model_on_cpu"]
    assert keys[-2:] == ["storage_dtype", "multi_query_mode"]
    for key, value in {"n_embd": "64", "n_head": "4", "n_layer": "2", "n_positions": "128", "vocab_size": "1000",
                       "activation_function": "gelu_new", "storage_dtype": "float16", "tensor_parallelism": "2",
                       "multi_query_mode": "False"}.items():
        assert settings[key] == value


def test_load_cmodel_detects_a_truncated_shard(tiny_gpt2, tmp_path):
    out = cmodel.convert(tiny_gpt2, tmp_path / "c", 2, "float16", progress=False)
    shard = out / "model.layers.1.mlp.dense_h_to_4h.weight.1.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="truncated or modified"):
        cmodel.load_cmodel(out)


def test_untied_lm_head_is_written(tmp_path):
    from conftest import make_gpt2

    folder = make_gpt2(tmp_path / "untied", tied=False)
    out = cmodel.convert(folder, tmp_path / "c", 1, "float32", progress=False)
    assert {p.name for p in out.iterdir()} == expected_files(2, 1, tied=False)


def test_non_gpt2_checkpoint_is_refused(tiny_gpt2, tmp_path):
    import shutil

    bad = tmp_path / "llama"
    shutil.copytree(tiny_gpt2, bad)
    config = json.loads((bad / "config.json").read_text())
    config["model_type"] = "llama"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'llama'"):
        cmodel.convert(bad, tmp_path / "c", 1, progress=False)


def test_truncated_safetensors_is_refused(tiny_gpt2, tmp_path):
    import shutil

    bad = tmp_path / "trunc"
    shutil.copytree(tiny_gpt2, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        cmodel.convert(bad, tmp_path / "c", 1, progress=False)
    assert not (tmp_path / "c" / "1-gpu").exists()


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_trtllm_checkpoint_names_shapes_values(tiny_gpt2, tmp_path, tp):
    out = trtllm_ckpt.convert(tiny_gpt2, tmp_path / "ck", tp, "float32")
    verify_manifest(out)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "GPT2LMHeadModel" and config["rotary_pct"] == 1.0 and config["mapping"]["tp_size"] == tp
    params = hf_params(tiny_gpt2)
    H = 64
    ranks = [load_file(out / f"rank{r}.safetensors") for r in range(tp)]
    assert ranks[0]["transformer.layers.0.attention.qkv.weight"].shape == (3 * H // tp, H)
    qkv = torch.cat([r["transformer.layers.1.attention.qkv.weight"].reshape(3, H // tp, H) for r in ranks], dim=1)
    assert torch.equal(qkv.reshape(3 * H, H), params["transformer.h.1.attn.c_attn.weight"].t())
    dense = torch.cat([r["transformer.layers.0.attention.dense.weight"] for r in ranks], dim=1)
    assert torch.equal(dense, params["transformer.h.0.attn.c_proj.weight"].t())
    fc = torch.cat([r["transformer.layers.0.mlp.fc.weight"] for r in ranks], dim=0)
    assert torch.equal(fc, params["transformer.h.0.mlp.c_fc.weight"].t())
    proj = torch.cat([r["transformer.layers.0.mlp.proj.weight"] for r in ranks], dim=1)
    assert torch.equal(proj, params["transformer.h.0.mlp.c_proj.weight"].t())
    lm_head = torch.cat([r["lm_head.weight"] for r in ranks])
    assert torch.equal(lm_head[:1000], params["transformer.wte.weight"])
    assert torch.equal(ranks[-1]["transformer.vocab_embedding.weight"], params["transformer.wte.weight"])
    assert set(ranks[0]) >= {"transformer.position_embedding.weight", "transformer.ln_f.weight",
                             "transformer.layers.0.input_layernorm.bias", "transformer.layers.0.post_layernorm.weight",
                             "transformer.layers.0.attention.qkv.bias", "transformer.layers.0.mlp.proj.bias"}


def test_a_weight_only_trtllm_checkpoint_names_its_algorithm_and_keeps_the_weights(tiny_gpt2, tmp_path):
    """convert_checkpoint.py --use_weight_only: the quantization block says W8A16 (trtllm-build quantizes the
    linears as it loads them, for its GPU); the tensors are the unquantized checkpoint's, byte for byte."""
    from trtflow.stages.convert_trtllm_checkpoint import main

    hf = tmp_path / "hf"
    shutil.copytree(tiny_gpt2, hf)
    write_manifest(hf, {"kind": "hf-checkpoint"})
    plain = trtllm_ckpt.convert(hf, tmp_path / "plain", 2, "float16")
    main(["--model_dir", str(hf), "--output_dir", str(tmp_path / "int8"), "--tp_size", "2", "--dtype", "float16",
          "--use_weight_only", "--weight_only_precision", "int8"])
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    assert config["quantization"]["quant_algo"] == "W8A16"
    assert {**config, "quantization": None} == {**json.loads((plain / "config.json").read_text()), "quantization": None}
    for rank in (0, 1):
        assert (tmp_path / "int8" / f"rank{rank}.safetensors").read_bytes() == (plain / f"rank{rank}.safetensors"
                                                                                 ).read_bytes()
