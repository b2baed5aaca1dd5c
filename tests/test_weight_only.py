"""Weight-only int8 (build.use_weight_only): TensorRT-LLM's quantization, and a runtime that computes exactly what
Hugging Face computes with the same quantized weights, at tp 1 and 2, on every decode path."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import validated
from test_runtime import HERE, PROMPTS, TINY_TOKEN_IDS, engine_flags
from trtflow.backends.torch.build import build
from trtflow.backends.torch.weight_only import quantize_int8
from trtflow.config import ConfigError
from trtflow.formats import cmodel
from trtflow.infra.launch import launch_command

WEIGHT_ONLY_PATHS = {  # the decode paths an int8 engine must run: name → flag overrides
    "int8-packed": {"use_weight_only": True},
    "int8-padded-paged": {"use_weight_only": True, "remove_input_padding": False, "paged_kv_cache": True},
    "int8-static-gemv": {"use_weight_only": True, "decode": "compile-gemv"},
}
LINEARS = {"attn.c_attn": "qkv", "attn.c_proj": "dense", "mlp.c_fc": "fc", "mlp.c_proj": "proj"}


def test_quantization_is_tensorrt_llms_symmetric_per_channel_int8():
    """cutlass_preprocessors.cpp symmetric_quantize: scale = max|w| / 128 per output channel, round half away from
    zero, clip to [-128, 127] (so the largest positive weight lands on 127), an all-zero channel gives zeros."""
    weight = torch.tensor([[1.0, -0.5, 0.25, 2.5 / 128, -2.5 / 128],
                           [-2.0, 1.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float16)
    q, scale = quantize_int8(weight)
    assert q.dtype == torch.int8 and scale.dtype == torch.float16
    assert q.tolist() == [[127, -64, 32, 3, -3], [-128, 64, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert scale.tolist() == [1 / 128, 2 / 128, 0.0]


def test_dequantized_weights_are_within_half_a_step(tiny_gpt2, tmp_path):
    from safetensors.torch import load_file

    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float16", progress=False)
    plain = load_file(build(source, tmp_path / "fp16", engine_flags(), "0" * 10, TINY_TOKEN_IDS) / "rank0.safetensors")
    int8 = load_file(build(source, tmp_path / "int8", engine_flags(use_weight_only=True), "1" * 10, TINY_TOKEN_IDS)
                     / "rank0.safetensors")
    quantized = sorted(k for k, v in int8.items() if v.dtype == torch.int8)
    assert quantized == sorted(f"layers.{i}.{n}.weight" for i in range(2) for n in LINEARS.values())
    assert {k for k in int8 if not k.endswith("per_channel_scale")} == set(plain)
    for name in quantized:
        scale = int8[name.replace("weight", "per_channel_scale")].float()
        weight = plain[name].float()
        error = (int8[name].float() * scale[:, None] - weight).abs()
        # half a step, but up to a whole one where w/s rounds to 128 and is clipped to 127 (a channel's largest
        # positive weights); the scale is stored in float16, which moves q·s by up to 128 × 2^-11 of a step
        steps = torch.where(weight / scale[:, None] > 127.5, 1.0, 0.5) + 128 * 2**-11
        assert (error <= steps * scale[:, None]).all(), name


def fake_quantized_hf(hf_dir: Path, ranks: list[dict[str, torch.Tensor]], heads: int) -> Path:
    """The HF checkpoint with every quantized linear replaced by the engine's q·s, recomposed from the ranks by the
    split rules written out here (QKV: each rank's Q|K|V rows of its heads; fc: output rows; dense, proj: input
    columns), so the engine's own tp code is not what checks it."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    tp = len(ranks)
    for layer, block in enumerate(model.transformer.h):
        for hf_name, engine_name in LINEARS.items():
            key = f"layers.{layer}.{engine_name}"
            parts = [r[f"{key}.weight"].float() * r[f"{key}.per_channel_scale"].float()[:, None] for r in ranks]
            if engine_name == "qkv":
                full = torch.cat([torch.cat([p.chunk(3)[i] for p in parts]) for i in range(3)])
            elif engine_name == "fc":
                full = torch.cat(parts)
            else:
                full = torch.cat(parts, dim=1)
            module = block.get_submodule(hf_name)
            with torch.no_grad():
                module.weight.copy_(full.t())  # Conv1D stores [in, out]
    out = hf_dir.parent / f"fake-quant-tp{tp}"
    model.save_pretrained(out)
    assert heads % tp == 0
    return out


@pytest.mark.parametrize("tp", [1, 2])
def test_int8_engine_computes_what_hf_computes_with_its_quantized_weights(tiny_gpt2, tmp_path, tp):
    from safetensors.torch import load_file
    from trtflow.hf_reference import HFGenerator

    source = cmodel.convert(tiny_gpt2, tmp_path / "c", tp, "float32", progress=False)
    engines = [str(build(source, tmp_path / name, engine_flags(**over), "0" * 10, TINY_TOKEN_IDS))
               for name, over in WEIGHT_ONLY_PATHS.items()]
    ranks = [load_file(Path(engines[0]) / f"rank{r}.safetensors") for r in range(tp)]
    hf = HFGenerator(fake_quantized_hf(tiny_gpt2, ranks, 4), torch.device("cpu"), TINY_TOKEN_IDS, "float32")
    plain = HFGenerator(tiny_gpt2, torch.device("cpu"), TINY_TOKEN_IDS, "float32")
    reference = hf.forward_logits(PROMPTS[0])
    assert (reference - plain.forward_logits(PROMPTS[0])).abs().max() > 1e-3  # the quantization is really there
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    out = tmp_path / "out.json"
    cmd = launch_command(tp, str(HERE / "tp_check.py"), [str(out), str(tmp_path / "prompts.json"), *engines])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tokens = [hf.generate([p], 32, ignore_eos=True).output_ids[0] for p in PROMPTS]
    for engine_dir, result in json.loads(out.read_text()).items():
        diff = (torch.tensor(result["logits"]) - reference).abs().max().item()
        assert diff < 1e-4, f"{Path(engine_dir).name} tp{tp}: max |logit − fake-quantized HF| = {diff}"
        assert result["single"] == tokens and result["batch"] == tokens, f"{Path(engine_dir).name} tp{tp}"


def test_int4_is_refused_for_the_torch_backend_before_any_job(tmp_path):
    import yaml
    from conftest import ROOT

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["build"].update(use_weight_only=True, weight_only_precision="int4")
    with pytest.raises(ConfigError, match=r"`build.weight_only_precision` = 'int4': the torch backend has no int4 "
                       r"weight-only matmul.*Fix: use weight_only_precision: int8, or build.backend: trtllm"):
        validated(config)
    trtllm = copy.deepcopy(config)
    trtllm["build"]["backend"] = "trtllm"
    validated(trtllm)  # TensorRT-LLM has an int4 weight-only plugin
