"""GPT-2's dimensions and its Hugging Face parameters (names and shapes), read from any of its configs."""

from __future__ import annotations

from dataclasses import asdict, dataclass


def _optional(value) -> str | None:
    return None if value in (None, "None", "") else value


@dataclass(frozen=True)
class ModelDims:
    vocab_size: int
    hidden: int
    heads: int
    layers: int
    positions: int
    inner: int
    eps: float
    activation: str
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def from_hf_config(cls, config: dict) -> ModelDims:
        """From a Hugging Face config.json (values typed) or a c-model config.ini [gpt] section (strings)."""
        hidden = int(config["n_embd"])
        inner = _optional(config.get("n_inner"))
        return cls(vocab_size=int(config["vocab_size"]), hidden=hidden, heads=int(config["n_head"]),
                   layers=int(config["n_layer"]), positions=int(config["n_positions"]),
                   inner=int(inner) if inner is not None else 4 * hidden,
                   eps=float(config.get("layer_norm_epsilon", 1e-5)),
                   activation=str(config.get("activation_function", "gelu_new")),
                   tied=str(config.get("tie_word_embeddings", True)) == "True")

    @classmethod
    def from_json(cls, obj: dict) -> ModelDims:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})

    def to_json(self) -> dict:
        return asdict(self)


def layer_shapes(dims: ModelDims) -> dict[str, tuple[int, ...]]:
    """HF shapes (Conv1D weights [in, out]) of the parameters inside `transformer.h.{i}.`."""
    h, i = dims.hidden, dims.inner
    return {
        "ln_1.weight": (h,), "ln_1.bias": (h,),
        "attn.c_attn.weight": (h, 3 * h), "attn.c_attn.bias": (3 * h,),
        "attn.c_proj.weight": (h, h), "attn.c_proj.bias": (h,),
        "ln_2.weight": (h,), "ln_2.bias": (h,),
        "mlp.c_fc.weight": (h, i), "mlp.c_fc.bias": (i,),
        "mlp.c_proj.weight": (i, h), "mlp.c_proj.bias": (h,),
    }


def global_shapes(dims: ModelDims) -> dict[str, tuple[int, ...]]:
    """HF shapes of the whole-model parameters (lm_head only where it is not tied to wte)."""
    shapes = {"transformer.wte.weight": (dims.vocab_size, dims.hidden),
              "transformer.wpe.weight": (dims.positions, dims.hidden),
              "transformer.ln_f.weight": (dims.hidden,), "transformer.ln_f.bias": (dims.hidden,)}
    if not dims.tied:
        shapes["lm_head.weight"] = (dims.vocab_size, dims.hidden)
    return shapes

