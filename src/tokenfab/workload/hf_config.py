"""Read a Hugging Face `config.json` into a `ModelSpec`.

One parser per architecture family, chosen by the config's `model_type` through a
registry: a new family is one function and one `@register_family` line.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tokenfab.errors import DataFileError, InvalidInputError, UnknownNameError
from tokenfab.registry import Registry
from tokenfab.workload.spec import AttentionSpec, FFNSpec, LayerGroup, ModelSpec
from tokenfab.workload.weight_format import format_of_quantization_config

CONFIG_DIR = Path(__file__).parent / "configs"

Parser = Callable[[str, dict[str, Any]], ModelSpec]
_FAMILIES: Registry[Parser] = Registry("model family (model_type)")
register_family = _FAMILIES.register
"""Register a parser for one or more Hugging Face `model_type`s (twice raises)."""


def supported_families() -> list[str]:
    return _FAMILIES.names()


def model_names() -> list[str]:
    """Bundled model names (kebab-case)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


@functools.lru_cache(maxsize=128)
def load_model(name: str) -> ModelSpec:
    """A bundled model by name (e.g. 'llama-3.1-8b') or a path to a config.json."""
    if name.endswith(".json") or "/" in name or "\\" in name:
        path = Path(name)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise DataFileError(f"model config {name} does not exist")
        label = path.parent.name if path.name == "config.json" else path.stem
    else:
        path = CONFIG_DIR / f"{name}.json"
        if not path.exists():
            raise UnknownNameError("model", name, model_names())
        label = name
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFileError(f"malformed config.json {path}: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(config, dict):
        raise DataFileError(f"{path} must hold a JSON object")
    return parse_config(config, name=label, source=str(path))


def parse_config(config: dict[str, Any], name: str, source: str = "") -> ModelSpec:
    """Dispatch on `model_type` and validate the result."""
    if "text_config" in config and "hidden_size" not in config:
        config = {**config["text_config"], "model_type": config["text_config"].get("model_type", config.get("model_type"))}
    model_type = config.get("model_type")
    if not model_type:
        raise DataFileError(f"config {source or name} has no model_type")
    if not isinstance(model_type, str):
        raise DataFileError(f"config {source or name}: model_type must be a string, got {model_type!r}")
    parser = _FAMILIES.get(model_type)
    try:
        spec = parser(name, config)
    except KeyError as exc:
        raise DataFileError(f"config {source or name} ({model_type}) lacks field {exc.args[0]!r}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise DataFileError(f"config {source or name}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, OverflowError) as exc:
        # a field of the wrong kind (a string for a count, a list for a mapping) in a user's file
        raise DataFileError(f"config {source or name}: {type(exc).__name__}: {exc}") from None
    quant = config.get("quantization_config")
    spec = _unconverted_attention(spec, quant)
    return spec.model_copy(update={"source": source or spec.source, "weight_format": format_of_quantization_config(quant)})


def _unconverted_attention(spec: ModelSpec, quant: Any) -> ModelSpec:
    """Mark attention unquantised where the checkpoint's quantization_config lists self_attn among the modules
    it leaves unconverted: modules_to_not_convert (transformers; GPT-OSS's MXFP4 checkpoint quantises only the
    MoE experts), ignore or exclude_modules (ModelOpt)."""
    skipped: list[Any] = []
    if isinstance(quant, dict):
        for key in ("modules_to_not_convert", "ignore", "exclude_modules"):
            if isinstance(quant.get(key), list):
                skipped += quant[key]
    if not any(isinstance(m, str) and "self_attn" in m for m in skipped):
        return spec
    groups = tuple(g.model_copy(update={"attention": g.attention.model_copy(update={"weights_quantized": False})})
                   for g in spec.layers)
    return spec.model_copy(update={"layers": groups})


def _int(config: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for key in keys:
        value = config.get(key)
        if value is not None:
            if not isinstance(value, int | float) or value < 0:
                raise InvalidInputError(f"config field {key} must be a non-negative number, got {value!r}")
            return int(value)
    if default is None:
        raise KeyError(keys[0])
    return default


def _mha(config: dict[str, Any], *, qkv_bias: bool = False, out_bias: bool = False) -> AttentionSpec:
    hidden = _int(config, "hidden_size", "n_embd")
    heads = _int(config, "num_attention_heads", "n_head")
    head_dim = _int(config, "head_dim", default=hidden // heads)
    window = config.get("sliding_window") if config.get("use_sliding_window", True) else None
    partial = float(config.get("partial_rotary_factor", 1.0))
    return AttentionSpec(
        kind="mha",
        num_heads=heads,
        num_kv_heads=_int(config, "num_key_value_heads", default=heads),
        head_dim=head_dim,
        v_head_dim=head_dim,
        qkv_bias=qkv_bias,
        out_bias=out_bias,
        sliding_window_tokens=window if isinstance(window, int) and window > 0 else None,
        rotary_dim=_int(config, "rotary_dim", default=int(head_dim * partial)),
    )


def _dense_ffn(config: dict[str, Any], size: int | None = None, *, gated: bool = True, bias: bool = False) -> FFNSpec:
    return FFNSpec(
        kind="dense",
        gated=gated,
        activation=str(config.get("hidden_act", config.get("activation_function", "silu"))),
        intermediate_size=size if size is not None else _int(config, "intermediate_size"),
        mlp_bias=bias,
    )


def _common(name: str, config: dict[str, Any], layers: tuple[LayerGroup, ...], **extra: Any) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=config["model_type"],
        hidden_size=_int(config, "hidden_size", "n_embd"),
        vocab_size=_int(config, "vocab_size"),
        max_position_embeddings=_int(config, "max_position_embeddings", "n_positions", default=4096),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        layers=layers,
        num_mtp_layers=_int(config, "num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules", default=0),
        **extra,
    )


@register_family("llama", "mistral", "qwen2", "qwen3", "internlm", "internlm2")
def _parse_llama_like(name: str, config: dict[str, Any]) -> ModelSpec:
    """Llama, Mistral, Qwen2/2.5 (q/k/v bias), Qwen3 (head_dim from config), InternLM."""
    qkv_bias = bool(config.get("attention_bias", config.get("bias", config["model_type"] == "qwen2")))
    attn = _mha(config, qkv_bias=qkv_bias, out_bias=bool(config.get("attention_bias", False)) and config["model_type"] != "qwen2")
    ffn = _dense_ffn(config, bias=bool(config.get("mlp_bias", False)))
    return _common(name, config, (LayerGroup(num_layers=_int(config, "num_hidden_layers"), attention=attn, ffn=ffn),))


@register_family("gptj")
def _parse_gptj(name: str, config: dict[str, Any]) -> ModelSpec:
    """GPT-J: parallel attention and MLP, LayerNorm, GELU MLP with bias, untied head with bias."""
    hidden = _int(config, "n_embd", "hidden_size")
    attn = _mha(config)
    ffn = FFNSpec(
        kind="dense", gated=False, activation=str(config.get("activation_function", "gelu_new")),
        intermediate_size=_int(config, "n_inner", default=4 * hidden), mlp_bias=True,
    )
    group = LayerGroup(num_layers=_int(config, "n_layer", "num_hidden_layers"), attention=attn, ffn=ffn, parallel_attn_mlp=True)
    return _common(name, config, (group,), norm="layernorm", lm_head_bias=True)


def _moe_ffn(config: dict[str, Any], *, experts_key: str, shared: int = 0, shared_size: int = 0, expert_size: int | None = None) -> FFNSpec:
    return FFNSpec(
        kind="moe",
        gated=True,
        activation=str(config.get("hidden_act", "silu")),
        intermediate_size=0,
        num_experts=_int(config, experts_key),
        num_experts_per_token=_int(config, "num_experts_per_tok", "experts_per_token"),
        expert_intermediate_size=expert_size if expert_size is not None else _int(config, "moe_intermediate_size", "intermediate_size"),
        num_shared_experts=shared,
        shared_expert_intermediate_size=shared_size,
    )


@register_family("mixtral")
def _parse_mixtral(name: str, config: dict[str, Any]) -> ModelSpec:
    ffn = _moe_ffn(config, experts_key="num_local_experts", expert_size=_int(config, "intermediate_size"))
    return _common(name, config, (LayerGroup(num_layers=_int(config, "num_hidden_layers"), attention=_mha(config), ffn=ffn),))


@register_family("qwen3_moe", "qwen2_moe")
def _parse_qwen_moe(name: str, config: dict[str, Any]) -> ModelSpec:
    shared_size = _int(config, "shared_expert_intermediate_size", default=0)
    ffn = _moe_ffn(config, experts_key="num_experts", shared=1 if shared_size else 0, shared_size=shared_size)
    attn = _mha(config, qkv_bias=config["model_type"] == "qwen2_moe")
    step = _int(config, "decoder_sparse_step", default=1)
    if step != 1 or config.get("mlp_only_layers"):
        raise InvalidInputError("Qwen MoE configs with dense layers interleaved (decoder_sparse_step != 1) are not supported yet")
    return _common(name, config, (LayerGroup(num_layers=_int(config, "num_hidden_layers"), attention=attn, ffn=ffn),))


@register_family("gpt_oss")
def _parse_gpt_oss(name: str, config: dict[str, Any]) -> ModelSpec:
    """gpt-oss: MoE every layer, alternating sliding-window (128) and full attention layers."""
    ffn = _moe_ffn(config, experts_key="num_local_experts", expert_size=_int(config, "intermediate_size"))
    n = _int(config, "num_hidden_layers")
    kinds = config.get("layer_types") or ["full_attention"] * n
    num_sliding = sum(1 for k in kinds if k == "sliding_attention")
    full = _mha({**config, "sliding_window": None}, qkv_bias=True, out_bias=True)
    groups = [LayerGroup(num_layers=n - num_sliding, attention=full, ffn=ffn)]
    if num_sliding:
        groups.append(LayerGroup(num_layers=num_sliding, attention=_mha(config, qkv_bias=True, out_bias=True), ffn=ffn))
    return _common(name, config, tuple(groups))


@register_family("deepseek_v2", "deepseek_v3", "kimi_k2")
def _parse_deepseek(name: str, config: dict[str, Any]) -> ModelSpec:
    """DeepSeek-V2/V3 (and Kimi-K2): MLA attention, first k layers dense, then shared + routed experts."""
    heads = _int(config, "num_attention_heads")
    nope, rope = _int(config, "qk_nope_head_dim"), _int(config, "qk_rope_head_dim")
    q_lora = config.get("q_lora_rank")
    attn = AttentionSpec(
        kind="mla", num_heads=heads, num_kv_heads=heads, head_dim=nope + rope, v_head_dim=_int(config, "v_head_dim"),
        rotary_dim=rope, q_lora_rank=int(q_lora) if q_lora else None, kv_lora_rank=_int(config, "kv_lora_rank"),
        qk_nope_head_dim=nope, qk_rope_head_dim=rope,
    )
    n = _int(config, "num_hidden_layers")
    k_dense = min(_int(config, "first_k_dense_replace", default=0), n)
    if _int(config, "moe_layer_freq", default=1) != 1:
        raise InvalidInputError("DeepSeek configs with moe_layer_freq != 1 are not supported yet")
    moe_size = _int(config, "moe_intermediate_size")
    num_shared = _int(config, "n_shared_experts", default=0)
    moe = _moe_ffn(config, experts_key="n_routed_experts", shared=num_shared, shared_size=moe_size * num_shared if num_shared else 0)
    groups = []
    if k_dense:
        groups.append(LayerGroup(num_layers=k_dense, attention=attn, ffn=_dense_ffn(config)))
    if n - k_dense:
        groups.append(LayerGroup(num_layers=n - k_dense, attention=attn, ffn=moe))
    return _common(name, config, tuple(groups))


@register_family("llama4_text", "llama4")
def _parse_llama4(name: str, config: dict[str, Any]) -> ModelSpec:
    """Llama 4 text model: MoE layers every `interleave_moe_layer_step`, one shared expert."""
    n = _int(config, "num_hidden_layers")
    step = _int(config, "interleave_moe_layer_step", default=1)
    num_moe = n // step
    moe = _moe_ffn(config, experts_key="num_local_experts", shared=1, shared_size=_int(config, "intermediate_size"),
                   expert_size=_int(config, "intermediate_size"))
    attn = _mha(config)
    groups = [LayerGroup(num_layers=num_moe, attention=attn, ffn=moe)]
    if n - num_moe:
        groups.append(LayerGroup(num_layers=n - num_moe, attention=attn, ffn=_dense_ffn(config, _int(config, "intermediate_size_mlp"))))
    return _common(name, config, tuple(groups))


def _layer_kinds(config: dict[str, Any], n: int, default: list[str], supported: tuple[str, ...]) -> list[str]:
    """Per-layer attention kinds from `layer_types`, else `default`; an unknown kind names the field."""
    kinds = config.get("layer_types") or default
    if len(kinds) != n:
        raise InvalidInputError(f"config field layer_types has {len(kinds)} entries for {n} layers")
    bad = sorted({k for k in kinds if k not in supported})
    if bad:
        raise InvalidInputError(f"config field layer_types: unsupported layer type {bad[0]!r} (supported: {', '.join(supported)})")
    return list(kinds)


def _groups_by_kind(kinds: list[str], make: dict[str, Callable[[], LayerGroup]]) -> tuple[LayerGroup, ...]:
    """One LayerGroup per distinct layer kind, in order of first appearance (counts, not positions,
    decide the cost; a pipeline stage gets each kind in proportion)."""
    order = list(dict.fromkeys(kinds))
    return tuple(make[k]().model_copy(update={"num_layers": kinds.count(k)}) for k in order)


@register_family("glm4_moe")
def _parse_glm4_moe(name: str, config: dict[str, Any]) -> ModelSpec:
    """GLM-4.5 / 4.6 / 4.7 and GLM-4.5-Air: GQA with q/k/v bias (no o bias), half-rotary heads, the first
    `first_k_dense_replace` layers dense, then one shared + routed experts (DeepSeek-V3-style routing)."""
    attn = _mha(config, qkv_bias=bool(config.get("attention_bias", False)))
    n = _int(config, "num_hidden_layers")
    k_dense = min(_int(config, "first_k_dense_replace", default=0), n)
    size = _int(config, "moe_intermediate_size")
    shared = _int(config, "n_shared_experts", default=0)
    moe = _moe_ffn(config, experts_key="n_routed_experts", shared=shared, shared_size=size * shared)
    groups = [LayerGroup(num_layers=k_dense, attention=attn, ffn=_dense_ffn(config))] if k_dense else []
    groups.append(LayerGroup(num_layers=n - k_dense, attention=attn, ffn=moe))
    return _common(name, config, tuple(groups))


@register_family("minimax_m2")
def _parse_minimax_m2(name: str, config: dict[str, Any]) -> ModelSpec:
    """MiniMax-M2 / M2.5: full GQA attention on every layer, partial rotary (rotary_dim), per-layer
    q/k norms, MoE every layer (num_local_experts of width intermediate_size, no shared expert)."""
    if config.get("attn_type_list") and any(t != 1 for t in config["attn_type_list"]):
        raise InvalidInputError("config field attn_type_list: only full attention (1) layers are supported (MiniMax-M1 lightning layers are not)")
    if _int(config, "shared_intermediate_size", default=0):
        raise InvalidInputError("config field shared_intermediate_size: MiniMax shared experts are not supported")
    ffn = _moe_ffn(config, experts_key="num_local_experts", expert_size=_int(config, "intermediate_size"))
    attn = _mha(config)
    spec = _common(name, config, (LayerGroup(num_layers=_int(config, "num_hidden_layers"), attention=attn, ffn=ffn),))
    mtp = _int(config, "num_mtp_modules", default=0) if config.get("use_mtp", True) else 0
    return spec.model_copy(update={"num_mtp_layers": mtp})


def _gated_deltanet(config: dict[str, Any]) -> AttentionSpec:
    return AttentionSpec(
        kind="linear", num_heads=_int(config, "linear_num_value_heads"), num_kv_heads=_int(config, "linear_num_key_heads"),
        head_dim=_int(config, "linear_key_head_dim"), v_head_dim=_int(config, "linear_value_head_dim"), rotary_dim=0,
        conv_kernel_size=_int(config, "linear_conv_kernel_dim", default=4),
    )


@register_family("qwen3_next", "qwen3_5_moe_text", "qwen3_5_moe")
def _parse_qwen3_next(name: str, config: dict[str, Any]) -> ModelSpec:
    """Qwen3-Next and Qwen3.5 (MoE): every `full_attention_interval`-th layer is gated full attention
    (q_proj also yields an output gate), the rest Gated DeltaNet linear attention; MoE with one
    shared expert on every layer."""
    rope = config.get("rope_parameters") or {}
    partial = float(rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 0.25)))
    n = _int(config, "num_hidden_layers")
    interval = _int(config, "full_attention_interval", default=4)
    default = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n)]
    kinds = _layer_kinds(config, n, default, ("linear_attention", "full_attention"))
    if config.get("mlp_only_layers") or _int(config, "decoder_sparse_step", default=1) != 1:
        raise InvalidInputError("config fields mlp_only_layers / decoder_sparse_step: dense layers between MoE layers are not supported")
    shared_size = _int(config, "shared_expert_intermediate_size", default=0)
    ffn = _moe_ffn(config, experts_key="num_experts", shared=1 if shared_size else 0, shared_size=shared_size)
    full = _mha({**config, "partial_rotary_factor": partial}).model_copy(
        update={"output_gate": bool(config.get("attn_output_gate", True))})
    make = {"full_attention": lambda: LayerGroup(num_layers=1, attention=full, ffn=ffn),
            "linear_attention": lambda: LayerGroup(num_layers=1, attention=_gated_deltanet(config), ffn=ffn)}
    return _common(name, config, _groups_by_kind(kinds, make))


@register_family("deepseek_v32", "glm_moe_dsa")
def _parse_deepseek_v32(name: str, config: dict[str, Any]) -> ModelSpec:
    """DeepSeek-V3.2 and GLM-5: DeepSeek-V3-style MLA + MoE plus DSA, a lightning indexer that picks
    `index_topk` cached tokens for each query (the MLA core attends only those). GLM-5.x indexer
    sharing between layers (indexer_types 'shared') is not modelled: every layer runs its indexer."""
    if any(t not in ("full", "shared") for t in config.get("indexer_types") or []):
        raise InvalidInputError("config field indexer_types: only 'full' and 'shared' indexers are supported")
    spec = _parse_deepseek(name, config)
    dsa = {"index_num_heads": _int(config, "index_n_heads"), "index_head_dim": _int(config, "index_head_dim"),
           "index_topk_tokens": _int(config, "index_topk")}
    groups = tuple(g.model_copy(update={"attention": g.attention.model_copy(update=dsa)}) for g in spec.layers)
    return spec.model_copy(update={"layers": groups})


# transformers Gemma3TextConfig defaults: the published Gemma 3 configs leave these out.
_GEMMA3_DEFAULTS = {"vocab_size": 262208, "max_position_embeddings": 131072, "sliding_window": 4096,
                    "sliding_window_pattern": 6, "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
                    "head_dim": 256, "num_key_value_heads": 4}


@register_family("gemma3_text", "gemma3")
def _parse_gemma3(name: str, config: dict[str, Any]) -> ModelSpec:
    """Gemma 3: GeGLU MLP, tied embeddings, 5 sliding-window (local) layers for every global layer."""
    config = {**_GEMMA3_DEFAULTS, **config}
    n = _int(config, "num_hidden_layers")
    pattern = _int(config, "sliding_window_pattern")
    default = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)]
    kinds = _layer_kinds(config, n, default, ("sliding_attention", "full_attention"))
    ffn = _dense_ffn({**config, "hidden_act": config["hidden_activation"]})
    full = _mha({**config, "sliding_window": None})
    local = _mha(config)
    make = {"full_attention": lambda: LayerGroup(num_layers=1, attention=full, ffn=ffn),
            "sliding_attention": lambda: LayerGroup(num_layers=1, attention=local, ffn=ffn)}
    return _common(name, {**config, "model_type": "gemma3_text"}, _groups_by_kind(kinds, make))


@register_family("baichuan")
def _parse_baichuan(name: str, config: dict[str, Any]) -> ModelSpec:
    """Baichuan / Baichuan 2: Llama-shaped (fused W_pack q/k/v, no bias, SwiGLU, untied head). The 13B
    models give their context as model_max_length. They use ALiBi instead of RoPE, which the config
    does not say; it changes only the small rotary elementwise cost, costed here as RoPE."""
    cfg = dict(config)
    if cfg.get("max_position_embeddings") is None:
        cfg["max_position_embeddings"] = cfg.get("model_max_length")
    attn = _mha(cfg)
    return _common(name, cfg, (LayerGroup(num_layers=_int(cfg, "num_hidden_layers"), attention=attn, ffn=_dense_ffn(cfg)),))
