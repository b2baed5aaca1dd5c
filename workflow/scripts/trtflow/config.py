"""Config validation: the schema (filling defaults), then the cross-field rules.

`validate` runs when the workflow is parsed, before any job: the JSON schema (which also fills
defaults), then the cross-field flag rules of the seed recipe. Every rejection is a `ConfigError`
naming the key, the bad value and the fix.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import KnownError
from .flags import decode_path
from .tp import SplitError, check_divisible

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
# Matched with fullmatch: `$` alone would accept a name ending in a newline, which splits a job's command.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESULT_FILES = ("report.html",)  # what the workflow writes directly under results/ (paths.REPORT)
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


class ConfigError(KnownError, ValueError):
    """A config value that trtflow refuses, with the fix in the message."""


def _fail(key: str, value: Any, problem: str, fix: str) -> None:
    key = key.encode("unicode_escape").decode("ascii")  # a control character in a name stays on one line
    raise ConfigError(f"config key `{key}` = {value!r}: {problem}. Fix: {fix}")


# --------------------------------------------------------------------------- schema


def _fill_defaults(schema: dict, instance: Any) -> None:
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = json.loads(json.dumps(sub["default"]))
        if key in instance:
            _fill_defaults(sub, instance[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(extra, value)


def _schema_fix(error) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"remove or rename it; allowed keys here: {', '.join(allowed) or '(none)'}"
    if error.validator == "enum":
        return "use one of " + ", ".join(repr(v) for v in error.validator_value)
    if error.validator in ("minimum", "exclusiveMinimum"):
        return f"use a value >= {error.validator_value}"
    if error.validator in ("maximum", "exclusiveMaximum"):
        return f"use a value <= {error.validator_value}"
    if error.validator == "minItems":
        return f"list at least {error.validator_value} item(s)"
    if error.validator == "type":
        return f"use a value of type {error.validator_value}"
    if error.validator == "required":
        return "add the missing key"
    return "see config/README.md"


# --------------------------------------------------------------------------- command-line values

NULL_WORDS = ("null", "Null", "NULL", "~", "None")


def _allowed_types(schema: dict) -> set[str]:
    kinds = schema.get("type", [])
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    for value in schema.get("enum", []):
        kinds.add({type(None): "null", bool: "boolean", int: "integer", float: "number"}.get(type(value), "string"))
    return kinds


def _from_string(schema: dict, text: str):
    """`snakemake --config` hands nested values over as strings (YAML's base loader): give back the value the
    schema asks for. Strings the schema accepts as they are stay strings."""
    kinds = _allowed_types(schema)
    if "string" in kinds and ("enum" not in schema or text in schema["enum"]):
        return text
    if "null" in kinds and text in NULL_WORDS:
        return None
    if "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kinds & {"integer", "number"} and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if kinds & {"integer", "number"}:
        try:
            return float(text)  # refused below where only an integer will do
        except ValueError:
            pass
    return text


def coerce(schema: dict, value, key: str = ""):
    """The config with command-line strings turned into the schema's types; an integer written as a float
    (`tp: [1.0]`) is refused here, since JSON Schema would accept it and the paths would read `tp1.0`."""
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {k: coerce(properties.get(k, extra if isinstance(extra, dict) else {}), v, f"{key}.{k}".lstrip("."))
                for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items", {})
        return [coerce(items if isinstance(items, dict) else {}, v, key) for v in value]
    if isinstance(value, str):
        value = _from_string(schema, value)
    if isinstance(value, float) and _allowed_types(schema) == {"integer"}:
        _fail(key, value, "must be a whole number", f"write {int(value)}" if value.is_integer() else "use an integer")
    return value


def load_schema(schema_path: str | Path = SCHEMA) -> dict:
    return yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))


def check_schema(config: dict, schema_path: str | Path) -> None:
    import jsonschema

    schema = load_schema(schema_path)
    config.update(coerce(schema, dict(config)))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        value = error.instance
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            key = ".".join([*map(str, error.absolute_path), unknown[0]])
            value = error.instance[unknown[0]]
            _fail(key, value, "unknown key", _schema_fix(error))
        _fail(key, value, error.message, _schema_fix(error))
    _fill_defaults(schema, config)


# --------------------------------------------------------------------------- cross-field rules


def _check_models(config: dict) -> None:
    for name, spec in config["models"].items():
        if not SAFE_NAME.fullmatch(name) or ".." in name:
            _fail(f"models.{name}", name, "a model name becomes a folder name and must not contain "
                  "'/', '..', spaces, quotes or control characters", "use letters, digits, '.', '_' and '-' only")
        if name in RESULT_FILES:
            _fail(f"models.{name}", name, f"results/{name} is the workflow's own file, and a model's results "
                  "are the folder results/<model>/", "name the model otherwise")
        source = spec["source"]
        if source == "hf":
            if not spec.get("repo_id"):
                _fail(f"models.{name}.repo_id", None, "an `hf` model needs the hub repository",
                      "set repo_id, e.g. openai-community/gpt2-medium")
            if not REPO_ID.fullmatch(spec["repo_id"]) or ".." in spec["repo_id"]:
                _fail(f"models.{name}.repo_id", spec["repo_id"], "not a hub repository id",
                      "use `owner/name` with letters, digits, '.', '_' and '-'")
            revision = spec.get("revision", "main")
            if not SAFE_NAME.fullmatch(revision) or ".." in revision:
                _fail(f"models.{name}.revision", revision, "a revision must not contain '/', '..', spaces, "
                      "quotes or control characters", "use a branch, tag or commit sha such as `main`")
        if source == "local" and not spec.get("path"):
            _fail(f"models.{name}.path", None, "a `local` model needs the checkpoint folder",
                  "set path to a folder with config.json and the weights")
        if source != "demo" and spec.get("recipe"):
            _fail(f"models.{name}.recipe", spec["recipe"], "only `demo` models take a recipe", "remove it")
        if source == "demo":
            _check_recipe(name, spec.get("recipe") or {})
        if source == "local":
            _check_local_path(name, spec["path"])
    if not config["targets"]:
        _fail("targets", [], "no model to build by default", f"list one of {', '.join(config['models'])}")
    for index, target in enumerate(config["targets"]):
        if target not in config["models"]:
            _fail("targets", target, "not a model defined under `models`",
                  f"use one of {', '.join(config['models'])}")
        if target in config["targets"][:index]:
            _fail("targets", config["targets"], f"model `{target}` is listed twice", "list each model once")


SOURCE_KEYS = {"hf": {"repo_id", "revision", "include"}, "local": {"path"}, "demo": {"recipe"}}


def _check_source_keys(raw_models: dict) -> None:
    """A key of another source (a `path` on a hub model, a `repo_id` on a local one) would be silently ignored."""
    for name, spec in raw_models.items():
        if not isinstance(spec, dict) or spec.get("source") not in SOURCE_KEYS:
            continue
        own = SOURCE_KEYS[spec["source"]]
        for key in sorted(set(spec) - own - {"source"}):
            other = next(src for src, keys in SOURCE_KEYS.items() if key in keys)
            _fail(f"models.{name}.{key}", spec[key], f"only `{other}` models take `{key}`; this one has source "
                  f"`{spec['source']}`", f"remove {key}, or set source: {other}")


BYTE_LEVEL_TOKENS = 257  # the demo tokenizer's alphabet: every byte, and its end token
DEMO_TRAINING_BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments
DEMO_TRAINING_LIMIT = 4 * 2**30  # the demo model is a minute's training on a laptop, not a project


def _check_recipe(name: str, recipe: dict) -> None:
    from dataclasses import fields

    from .demo_recipe import DEVICES, DemoRecipe

    types = {f.name: f.type for f in fields(DemoRecipe)}
    for key in sorted(set(recipe) - set(types)):
        _fail(f"models.{name}.recipe.{key}", recipe[key], "not a demo recipe setting",
              f"use one of {', '.join(sorted(types))}")
    for key, value in recipe.items():
        if types[key] == "str":  # the device
            if value not in DEVICES:
                _fail(f"models.{name}.recipe.{key}", value, "not a training device", f"use one of {', '.join(DEVICES)}")
            continue
        wants_int = types[key] == "int"
        if isinstance(value, str):  # typed on the command line: "300" is the number it spells
            try:
                value = recipe[key] = int(value) if wants_int else float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int if wants_int else (int, float)):
            _fail(f"models.{name}.recipe.{key}", value, f"must be {'an integer' if wants_int else 'a number'}",
                  f"write a number such as {getattr(DemoRecipe, key)}")
        if value <= 0 and key != "seed":
            _fail(f"models.{name}.recipe.{key}", value, "must be positive", f"use e.g. {getattr(DemoRecipe, key)}")
    if not -(2**63) <= recipe.get("seed", 0) < 2**64:
        _fail(f"models.{name}.recipe.seed", recipe["seed"], "torch's generators take seeds from -2**63 to 2**64 - 1",
              "use a seed in that range, e.g. 0")
    if recipe.get("vocab_size", DemoRecipe.vocab_size) < BYTE_LEVEL_TOKENS:
        _fail(f"models.{name}.recipe.vocab_size", recipe["vocab_size"], f"the byte-level tokenizer holds at least "
              f"{BYTE_LEVEL_TOKENS} tokens (256 bytes and the end token), so a model of this vocabulary would get "
              "another size than asked", f"use at least {BYTE_LEVEL_TOKENS}, e.g. {DemoRecipe.vocab_size}")
    recipe = {**{k: getattr(DemoRecipe, k) for k in types}, **recipe}
    if recipe["n_embd"] % recipe["n_head"]:
        _fail(f"models.{name}.recipe.n_head", recipe["n_head"], f"n_embd {recipe['n_embd']} is not a multiple of "
              "n_head (each head needs the same width)", "pick n_head dividing n_embd")
    width, layers = recipe["n_embd"], recipe["n_layer"]
    params = (recipe["vocab_size"] + recipe["n_positions"]) * width + layers * (12 * width * width + 13 * width)
    training = params * DEMO_TRAINING_BYTES_PER_PARAM
    if training > DEMO_TRAINING_LIMIT:
        _fail(f"models.{name}.recipe", {k: recipe[k] for k in ("vocab_size", "n_embd", "n_layer", "n_positions")},
              f"makes a model of {params / 1e6:,.0f} M parameters, about {training / 2**30:,.0f} GiB to train "
              "(weights, gradients and AdamW's two moments in fp32); the demo is meant to train in a "
              "minute", f"keep it under {DEMO_TRAINING_LIMIT // 2**30} GiB (lower n_embd, n_layer or vocab_size), or "
              "use a real checkpoint (source: hf or local)")


# Where the workflow writes (relative to its working directory): a checkpoint kept there could be replaced or removed
# by a rerun (`--forcerun download_model` deletes the import's output).
WORKFLOW_OUTPUTS = ("resources", "results", ".snakemake")


def _check_local_path(name: str, path: str) -> None:
    folder = Path(path).expanduser()
    inside = next((top for top in WORKFLOW_OUTPUTS if folder.resolve().is_relative_to(Path(top).resolve())), None)
    if inside:
        _fail(f"models.{name}.path", path, f"is inside {inside}/, which the workflow writes (a rerun may replace or "
              "delete what is there, and it would be imported into itself)",
              f"keep your checkpoint outside {inside}/, e.g. ~/models/{name}, and point path there")
    if not folder.is_dir():
        _fail(f"models.{name}.path", path, "is a file, not a folder" if folder.exists() else "does not exist",
              "point it at a Hugging Face GPT-2 checkpoint folder (config.json and the weights)")
    if not (folder / "config.json").is_file():
        _fail(f"models.{name}.path", path, "has no config.json: not a Hugging Face checkpoint folder",
              "point it at the folder save_pretrained() wrote")


def _check_run_settings(config: dict) -> None:
    """What generate and summarize ask of the engine must fit the build limits, or the job fails late."""
    build = config["build"]
    for key, value, limit in (
            ("summarize.batch_size", config["summarize"]["batch_size"], "max_batch_size"),
            ("summarize.max_input_length", config["summarize"]["max_input_length"], "max_input_len"),
            ("summarize.output_len", config["summarize"]["output_len"], "max_output_len"),
            ("generate.max_output_len", config["generate"]["max_output_len"], "max_output_len")):
        if value > build[limit]:
            _fail(key, value, f"exceeds the engine's build.{limit} {build[limit]}",
                  f"lower {key} to {build[limit]} or raise build.{limit}")
    for index, text in enumerate(config["generate"]["input_text"]):
        if not text.strip():
            _fail(f"generate.input_text.{index}", text, "an empty prompt has no token to start from",
                  "write a prompt, or remove the entry")


def _check_tp(config: dict) -> None:
    seen = set()
    for tp in config["tp"]:
        if tp < 1:
            _fail("tp", tp, "the tensor-parallel degree must be at least 1", "use 1, 2, 4 …")
        if tp in seen:
            _fail("tp", config["tp"], f"tp {tp} is listed twice", "list each degree once")
        seen.add(tp)


def _check_build(build: dict, runs_build_py: bool) -> None:
    """Flag sets TensorRT-LLM refuses while building, refused before any job. `runs_build_py`: the engine is
    built by v0.8.0 examples/gpt/build.py (backend trtllm, flow 0.8), whose own asserts then apply too."""
    if build["backend"] == "torch" and build["use_weight_only"] and build["weight_only_precision"] == "int4":
        _fail("build.weight_only_precision", "int4", "the torch backend has no int4 weight-only matmul (torch's "
              "int4 kernels need a packed layout and a GPU this workflow does not assume)",
              "use weight_only_precision: int8, or build.backend: trtllm (TensorRT-LLM's int4 weight-only plugin)")
    if build["enable_context_fmha"] and build["enable_context_fmha_fp32_acc"]:
        _fail("build.enable_context_fmha_fp32_acc", True, "enable_context_fmha and "
              "enable_context_fmha_fp32_acc are mutually exclusive (build.py)",
              "turn one of them off (fp32_acc already enables FMHA with fp32 accumulation)")
    # context FMHA without the attention plugin: both tools accept it and build no FMHA; so does trtflow, with a
    # note in the build log (commands.py)
    fmha = build["enable_context_fmha"] or build["enable_context_fmha_fp32_acc"]
    plugin = build["use_gpt_attention_plugin"] or build["use_inflight_batching"]  # IFB turns the plugin on
    # TensorRT-LLM refuses these while building, after minutes of work (v0.8.0 layers/attention.py asserts both);
    # the torch backend follows the same contract, so one config means one thing for both backends.
    if build["remove_input_padding"] and not plugin:
        _fail("build.remove_input_padding", True, "packed input (no padding) needs the GPT attention plugin, "
              "which is off (TensorRT-LLM asserts it in layers/attention.py)",
              "set build.use_gpt_attention_plugin: float16, or build.remove_input_padding: false")
    if build["paged_kv_cache"] and not plugin:
        _fail("build.paged_kv_cache", True, "a paged KV cache needs the GPT attention plugin, which is off "
              "(TensorRT-LLM asserts it in layers/attention.py)",
              "set build.use_gpt_attention_plugin: float16, or build.paged_kv_cache: false")
    # tokens_per_block is a paged cache's: without one it is never passed to a tool (BuildFlags drops it)
    tpb, paged = build["tokens_per_block"], build["paged_kv_cache"] or build["use_inflight_batching"]
    if runs_build_py and paged and tpb & (tpb - 1):
        _fail("build.tokens_per_block", tpb, "must be a power of two (v0.8.0 build.py asserts it)",
              "use 32, 64, 128 …")
    if runs_build_py and fmha and tpb < 128 and paged:
        _fail("build.tokens_per_block", tpb, "must be >= 128 with context FMHA (v0.8.0 build.py asserts it; "
              "1.x and the torch backend do not)", "use 128 or more, or trtllm.flow: '1.2'")


OLDER_DECODE_KEYS = {"cuda_graphs": (False, True), "torch_compile": (False, True, "max-autotune", "gemv", "triton")}


def _older_value(key: str, value):
    """An older decode key's value as the config or `--config` gives it ("true" typed on the command line)."""
    value = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
    if value not in OLDER_DECODE_KEYS[key]:
        _fail(f"build.{key}", value, f"not one of {list(OLDER_DECODE_KEYS[key])}",
              "use build.decode: eager | cuda-graph | compile | compile-max-autotune | compile-gemv | kernels")
    return value


def decode_from_older_keys(build: dict, where: str = "build") -> str | None:
    """Rewrites `cuda_graphs` / `torch_compile` in `build` (the spellings before `build.decode`) as `decode`, which
    names the same engine; returns the one-line note that says so, or None where neither is given."""
    older = {k: build.pop(k) for k in OLDER_DECODE_KEYS if k in build}
    older = {k: _older_value(k, v) for k, v in older.items() if v is not None}
    if not older:
        return None
    path = decode_path(bool(older.get("cuda_graphs", False)), older.get("torch_compile", False))
    given = ", ".join(f"{k}: {str(v).lower()}" for k, v in older.items())
    if build.get("decode", path) != path:
        _fail(f"{where}.decode", build["decode"], f"it contradicts the older {where} keys ({given}), which mean "
              f"decode: {path}", f"keep {where}.decode alone and remove {', '.join(older)}")
    build["decode"] = path
    return f"note: {where} {given} is spelled {where}.decode: {path} now (the same engine, nothing is rebuilt)"


VARIANT_SECTIONS = ("convert", "build")
BASE_VARIANT = "base"  # how the report names the config itself beside its variants


def overlay(config: dict, overrides: dict) -> dict:
    """A deep copy of `config` with a variant's `convert` / `build` overrides applied, without `variants`."""
    import copy

    merged = copy.deepcopy({k: v for k, v in config.items() if k != "variants"})
    for section in VARIANT_SECTIONS:
        merged[section] = {**merged.get(section, {}), **(overrides.get(section) or {})}
    return merged


def variant_config(config: dict, name: str | None) -> dict:
    """The validated config a run of variant `name` is made with (`None`: the config itself)."""
    if name is None:
        return config
    return overlay(config, config["variants"][name])


def _check_variants(config: dict, schema_path: str | Path) -> None:
    """Each variant is validated as a whole config (base with its overrides), so it is refused before any job
    exactly where the base would be; its overrides are kept as the schema reads them (`--config` strings typed)."""
    for name, overrides in config["variants"].items():
        if not SAFE_NAME.fullmatch(name) or ".." in name or name == BASE_VARIANT:
            _fail(f"variants.{name}", name, "a variant name becomes a folder name" +
                  (f"; `{BASE_VARIANT}` names the config itself" if name == BASE_VARIANT else ""),
                  "use letters, digits, '.', '_' and '-' only, and not `base`")
        if "backend" in (overrides.get("build") or {}):
            _fail(f"variants.{name}.build.backend", overrides["build"]["backend"], "variants share the base "
                  "config's backend (its environment and container)", "remove it, or set build.backend itself")
        merged = overlay(config, overrides)
        try:
            check_schema(merged, schema_path)
            _check_engine_settings(merged)
        except ConfigError as err:
            raise ConfigError(f"variant `{name}` (variants.{name} over the base config): {err}") from None
        config["variants"][name] = {s: {k: merged[s][k] for k in overrides[s]} for s in VARIANT_SECTIONS
                                    if overrides.get(s)}


def _check_engine_settings(config: dict) -> None:
    """The rules a variant can break: its build flags, and what the runs ask of its engine."""
    _check_run_settings(config)
    _check_build(config["build"], config["build"]["backend"] == "trtllm" and config["trtllm"]["flow"] == "0.8")


def validate(config: dict, schema_path: str | Path = SCHEMA) -> dict:
    """Schema (filling defaults) and cross-field rules; returns the same dict, completed."""
    raw_models = json.loads(json.dumps(config.get("models") or {}, default=str))
    builds = [("build", config.get("build"))] + [(f"variants.{name}.build", (overrides or {}).get("build"))
                                                 for name, overrides in (config.get("variants") or {}).items()
                                                 if isinstance(overrides, dict)]
    for where, build in builds:
        if isinstance(build, dict) and (note := decode_from_older_keys(build, where)):
            print(note, file=sys.stderr)
    _check_scalars(config)
    _versions_as_text(config)
    check_schema(config, schema_path)
    _check_source_keys(raw_models)
    _check_models(config)
    _check_tp(config)
    _check_engine_settings(config)
    if config["variants"]:
        _check_variants(config, schema_path)
    return config


def _versions_as_text(config: dict) -> None:
    """`flow: 1.2` and `gpu_arch: 9.0` unquoted are YAML numbers; they mean the version they spell."""
    for parent, key in ((config.get("trtllm"), "flow"), (config, "gpu_arch")):
        if isinstance(parent, dict) and isinstance(parent.get(key), float):
            parent[key] = repr(parent[key])


def _check_scalars(node: Any, key: str = "") -> None:
    """Values no later check could hold: YAML's .nan and .inf pass a schema's minimum and maximum (then a NaN gate
    never fails and an infinite benchmark never ends), and a NUL character fits in no path or command line."""
    if isinstance(node, dict):
        for name, value in node.items():
            _check_scalars(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_scalars(value, f"{key}.{index}")
    elif isinstance(node, float) and not math.isfinite(node):
        _fail(key, node, "not a finite number", "write a number")
    elif isinstance(node, str) and "\x00" in node:
        _fail(key, node, "holds a NUL character, which no file name or command line can carry", "remove it")


def check_model_fits(config: dict, model: str, hf_config: dict, where: str = "config.json") -> None:
    """Rules that need the checkpoint's dimensions: tp divides heads, lengths fit positions."""
    for tp in config["tp"]:
        try:
            check_divisible(hf_config["n_head"], tp, f"model `{model}`")
        except SplitError as err:
            problem, fix = str(err).split("; ", 1)
            _fail("tp", tp, f"{problem} ({where})", fix)
    build = config["build"]
    total = build["max_input_len"] + build["max_output_len"]
    if total > hf_config["n_positions"]:
        _fail("build.max_input_len", build["max_input_len"], f"max_input_len + max_output_len = {total} "
              f"exceeds model `{model}`'s n_positions {hf_config['n_positions']} ({where}): positions past it have "
              "no embedding, so tokens there would be garbage (v0.8.0's build.py accepts it, 1.x only warns)",
              "lower build.max_input_len or build.max_output_len")
