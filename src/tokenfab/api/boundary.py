"""Checking every public API call's arguments in one place, before any work is done.

Every function of `tokenfab.api` is wrapped by `@validated`: its arguments are checked against
their type hints and against `BOUNDS`, one table of limits keyed by parameter name (the same name
means the same quantity everywhere, so `tp` or `slo_ttft_ms` is bounded identically in predict,
simulate and search). NaN and infinity are refused for every float. A failure is one
`InvalidInputError` line naming the parameter, the value and the rule, which the CLI prints and
exits 2 on and the HTTP server returns as a 422.

Bounds are physical or definitional (a count is >= 1, a fraction lies in (0, 1], a time is > 0);
the few upper bounds keep a single call from running for days and are documented here, not tuned.
A parameter without an entry gets its type check only; add one line here for a new parameter.

Options that conflict, or that the chosen mode would ignore, are refused by per-function rules
(`conflicts=`) that see the arguments which differ from their defaults.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError, create_model

from tokenfab.errors import InvalidInputError

_COUNT = {"ge": 1, "le": 1 << 20}  # devices, parallel degrees, replicas, heads
_TOKENS = {"ge": 1, "le": 100_000_000}  # lengths and dimensions, tokens or elements
_NONNEG_TOKENS = {"ge": 0, "le": 100_000_000}
_POSITIVE = {"gt": 0}
_FRACTION = {"gt": 0, "le": 1}

BOUNDS: dict[str, dict[str, float]] = {
    # deployment
    "devices": _COUNT, "tp": _COUNT, "pp": _COUNT, "ep": _COUNT, "dp": _COUNT, "moe_tp": _COUNT,
    "prefill_tp": _COUNT, "decode_tp": _COUNT, "replicas": _COUNT, "num_redundant_experts": {"ge": 0, "le": 1 << 16},
    "prefill_replicas": {"ge": 0, "le": 1 << 20}, "decode_replicas": {"ge": 0, "le": 1 << 20},
    "memory_utilization_frac": _FRACTION, "kv_free_memory_frac": _FRACTION, "runtime_reserved_bytes": {"ge": 0, "le": 1e15},
    "held_before_sizing_bytes": {"ge": 0, "le": 1e15},
    # static batch, step and operators
    "batch": {"ge": 1, "le": 10_000_000}, "input_len": _TOKENS, "output_len": _TOKENS, "context_len": _TOKENS,
    "new_tokens": _TOKENS, "m": _TOKENS, "n": _TOKENS, "k": _TOKENS, "q_len": _TOKENS, "kv_len": _TOKENS,
    "heads": _COUNT, "kv_heads": _COUNT, "head_dim": {"ge": 1, "le": 65536}, "bytes": {"gt": 0, "le": 1e15},
    "tokens": _TOKENS, "hidden": _TOKENS, "intermediate": _TOKENS, "topk": _COUNT, "experts": _COUNT,
    # serving workload
    "rate": _POSITIVE, "concurrency": {"ge": 1, "le": 10_000_000}, "num_requests": {"ge": 1, "le": 10_000_000},
    "rate_scale": _POSITIVE, "trace_start_s": {"ge": 0}, "trace_duration_s": _POSITIVE, "burstiness": _POSITIVE,
    "think_time_ms": {"ge": 0}, "request_latency_ms": {"ge": 0, "le": 3_600_000}, "shared_prefix_tokens": _NONNEG_TOKENS, "seed": {"ge": 0, "le": (1 << 63) - 1},
    "slo_ttft_ms": _POSITIVE, "slo_tpot_ms": _POSITIVE, "slo_percentile": {"gt": 0, "le": 100},
    "timeseries_interval_s": _POSITIVE, "adp_timeout_iters": {"ge": 0, "le": 1_000_000},
    "adp_batching_wait_iters": {"ge": 0, "le": 1_000_000}, "warmup_requests": {"ge": 0, "le": 10_000_000},
    "batch_wait_timeout_iters": {"ge": 0, "le": 1_000_000}, "batch_wait_max_tokens_ratio": {"ge": 0, "le": 1},
    "static_memory_frac": {"ge": 0, "lt": 1},
    # scheduler
    "max_num_seqs": {"ge": 1, "le": 1 << 20}, "cuda_graph_max_batch": {"ge": 1, "le": 1 << 20},
    "prefill_max_num_seqs": {"ge": 1, "le": 1 << 20}, "max_batched_tokens": _TOKENS, "block_size": {"ge": 1, "le": 1 << 16},
    # search
    "max_devices": _COUNT, "top": {"ge": 0, "le": 100_000}, "workers": {"ge": 1, "le": 4096}, "budget_cny": _POSITIVE,
    # band_level is checked by the bands module itself (its message names --band-level and the valid range)
    # sweeps
    "points": {"ge": 1, "le": 10_000_000},
    # speculative decoding
    "spec_tokens": {"ge": 1, "le": 64}, "spec_acceptance": {"ge": 0, "le": 1},
}

_CONFIG = ConfigDict(allow_inf_nan=False, arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())
_NUMBERS = (int, float)


def _bounded(annotation: Any, limits: dict[str, float] | None) -> Any:
    """`annotation` with `limits` applied to its numeric members (inside `X | None` too)."""
    if not limits:
        return annotation
    if annotation in _NUMBERS:
        return Annotated[annotation, Field(**limits)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [_bounded(a, limits) if a in _NUMBERS else a for a in typing.get_args(annotation)]
        return functools.reduce(lambda x, y: x | y, members) if origin is types.UnionType else typing.Union[tuple(members)]
    return annotation


_RELATIONS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
              "less_than_equal": ("le", "<=")}


def _message(fn_name: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or fn_name
    got = err.get("input")
    shown = repr(got) if len(repr(got)) < 60 else type(got).__name__
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        return f"{fn_name}() got an unknown argument '{where}'{more}"
    if err["type"] in _RELATIONS:
        key, symbol = _RELATIONS[err["type"]]
        return f"{where} must be {symbol} {err['ctx'][key]}, got {shown}{more}"
    if err["type"] in ("finite_number", "float_parsing") and isinstance(got, float):
        return f"{where} must be a finite number, got {shown}{more}"
    return f"bad {where}={shown}: {err['msg'][0].lower()}{err['msg'][1:]}{more}"


Rule = Callable[[dict[str, Any], dict[str, Any]], str | None]

_LIMIT_TESTS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
PlainRule = tuple[frozenset, tuple]


def _plain_rule(annotation: Any, limits: dict[str, float] | None) -> PlainRule | None:
    """(exact types, limit tests) under which pydantic passes a value of a parameter unchanged, for annotations
    made only of int, float, str, bool and None; None for any other (those arguments always go through pydantic)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    if not all(m is type(None) or m in (int, float, str, bool) for m in members):
        return None
    return frozenset(members), tuple((_LIMIT_TESTS[k], v) for k, v in (limits or {}).items())


def _passes_plain(given: dict[str, Any], rules: dict[str, PlainRule | None]) -> bool:
    """Whether pydantic would pass every argument unchanged, decided without it: a value of an exact type its
    annotation names (no conversion: an int for a float is converted, so it goes through pydantic), a float
    finite, a number within its BOUNDS. A property test checks this against pydantic's own verdict."""
    for name, value in given.items():
        rule = rules.get(name)
        if rule is None:
            return False
        allowed, tests = rule
        kind = type(value)
        if kind not in allowed or (kind is float and not math.isfinite(value)):
            return False
        if tests and (kind is int or kind is float):
            for test, bound in tests:  # a loop, not all() over a generator: every new argument list comes here
                if not test(value, bound):
                    return False
    return True

MEMO_SIZE = 4096  # argument lists remembered per function as already checked (then forgotten all at once)


def _memo_key(args: tuple, kwargs: dict[str, Any]) -> tuple:
    """The key an argument list is remembered under once it checked to itself (see `_rememberable`). Checking is
    a pure function of the arguments, so such a list passes again: the API is called in loops (a sweep, a
    decode step per context), and validating through pydantic costs more than a cached decode-step prediction.
    The types are part of the key, as 1, 1.0 and True are equal but not the same argument, by id: the key is one
    flat tuple of plain values, which the garbage collector stops tracking at its first pass (a tuple holding a type,
    or a nested tuple, would survive into the oldest generation and drive full collections; see
    `tokenfab.execution.step.PartRecord`). Its length, 1 + 2 x positional + 3 x keyword arguments, says how it splits.
    An id names one live object, and the plain types live as long as the interpreter, so a remembered key (plain
    types only) never equals the key of a list of other types."""
    return (len(args), *args, *kwargs, *kwargs.values(), *[id(type(a)) for a in args],
            *[id(type(v)) for v in kwargs.values()])


_PLAIN_IDS = frozenset(map(id, (str, int, float, bool, type(None))))
_FLOAT_ID = id(float)


def _rememberable(key: tuple) -> bool:
    """Only lists of plain scalars are remembered: equal values of one such type are interchangeable, but for
    0.0 and -0.0 (lists with a float zero are not remembered) and for containers (not hashable, or mutable)."""
    num_args = key[0]
    num_kwargs = (len(key) - 1 - 2 * num_args) // 3
    args = key[1:1 + num_args]
    kwarg_values = key[1 + num_args + num_kwargs:1 + num_args + 2 * num_kwargs]
    types = key[1 + num_args + 2 * num_kwargs:]
    if not _PLAIN_IDS.issuperset(types):
        return False
    return not (_FLOAT_ID in types and (0.0 in args or any(v == 0.0 for v in kwarg_values if type(v) is float)))


def _known(key: tuple, passed: set[tuple]) -> bool:
    try:
        return key in passed
    except TypeError:  # an unhashable argument (a list): never remembered
        return False


def validated(fn: Callable | None = None, *, conflicts: tuple[Rule, ...] = ()) -> Callable:
    """Wrap `fn` so that its arguments are checked (types, `BOUNDS`, finiteness, `conflicts`) first.

    Each rule gets (arguments, defaults) and returns a one-line reason to refuse, or None."""
    if fn is None:
        return lambda f: validated(f, conflicts=conflicts)
    target = inspect.unwrap(fn)
    signature = inspect.signature(target)
    hints = typing.get_type_hints(target, include_extras=True)
    fields = {}
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[name] = (_bounded(hints.get(name, Any), BOUNDS.get(name)), default)
    model = create_model(f"{target.__name__}_arguments", __config__=_CONFIG, **fields)
    defaults = {n: p.default for n, p in signature.parameters.items() if p.default is not p.empty}
    plain = {name: _plain_rule(hints.get(name, Any), BOUNDS.get(name)) for name in fields}

    def _checked(given: dict[str, Any]) -> dict[str, Any]:
        try:
            checked = model.model_validate(given)
        except ValidationError as exc:
            raise InvalidInputError(_message(target.__name__, exc)) from None
        return {name: getattr(checked, name) for name in given}

    positional = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = {n for n, (_, default) in fields.items() if default is ...}

    def arguments(args: tuple, kwargs: dict) -> dict[str, Any]:
        """What `signature.bind(...).arguments` gives, without its cost on the common calls (the API is
        called in loops); anything unusual goes through `bind` for its exact error message."""
        if len(args) <= len(positional):
            given = dict(zip(positional, args))
            if given.keys().isdisjoint(kwargs) and fields.keys() >= kwargs.keys():  # no keyword twice, none unknown
                given.update(kwargs)
                if required <= given.keys():
                    return given
        try:
            return signature.bind(*args, **kwargs).arguments
        except TypeError as exc:
            raise InvalidInputError(f"{target.__name__}(): {exc}") from None

    passed: set[tuple] = set()  # plain argument lists that validated to themselves (see _memo_key)

    def check(*args, **kwargs) -> dict[str, Any]:
        """The validated arguments as keywords, or an InvalidInputError; runs nothing."""
        key = _memo_key(args, kwargs)
        if _known(key, passed):
            return arguments(args, kwargs)
        return _check_new(key, args, kwargs)

    def _check_new(key: tuple, args: tuple, kwargs: dict) -> dict[str, Any]:
        """`check` of an argument list not remembered as passed (its memo key already made)."""
        given = arguments(args, kwargs)
        unchanged = _passes_plain(given, plain)
        values = dict(given) if unchanged else _checked(given)
        if conflicts:  # the rules see every argument, defaults filled in
            full = {**defaults, **values}
            for rule in conflicts:
                reason = rule(full, defaults)
                if reason:
                    raise InvalidInputError(reason)
        if _rememberable(key) and (unchanged or all(values[n] is v or (type(values[n]) is type(v) and values[n] == v)
                                                    for n, v in given.items())):
            if len(passed) >= MEMO_SIZE:
                passed.clear()
            passed.add(key)
        return values

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        key = _memo_key(args, kwargs)
        if not _known(key, passed):
            values = _check_new(key, args, kwargs)
            if not _known(key, passed):  # checking changed (converted) some argument: pass what it made
                return fn(**values)  # the API has no positional-only parameters
        # arguments that check to themselves go on as the caller gave them, the same way every time (an
        # lru_cache behind sees one key per call form)
        return fn(*args, **kwargs)

    if hasattr(fn, "cache_clear"):
        wrapper.cache_clear = fn.cache_clear
    wrapper.arguments_model = model  # the HTTP server documents request bodies with it
    wrapper.check_arguments = check  # ... and refuses a bad background job before queueing it
    return wrapper


def changed(args: dict[str, Any], defaults: dict[str, Any], *names: str) -> list[str]:
    """Which of `names` the caller set to something other than the default."""
    return [n for n in names if n in args and n in defaults and args[n] != defaults[n]]


def flags(names: list[str]) -> str:
    """Parameter names as the CLI spells them."""
    return ", ".join(f"--{n.replace('_', '-')}" for n in names)


# --- conflicting and ignored options -----------------------------------------------------------

_TRACE_ONLY = ("trace_format", "rate_scale", "trace_start_s", "trace_duration_s")
_SYNTHETIC_ONLY = ("input_len", "output_len", "input_dist", "output_dist", "shared_prefix_tokens")


def _trace_options(a: dict, d: dict) -> str | None:
    if a.get("trace") is not None:
        ignored = changed(a, d, *_SYNTHETIC_ONLY, "burstiness", "think_time_ms")
        if ignored:
            return f"--trace takes lengths and arrival times from the file; {flags(ignored)} would be ignored: drop it"
        return None
    ignored = changed(a, d, *_TRACE_ONLY)
    return f"{flags(ignored)} only apply with --trace" if ignored else None


def _arrival_options(a: dict, d: dict) -> str | None:
    if a.get("rate") is None and changed(a, d, "burstiness"):
        return "--burstiness only applies with --rate (open-loop arrivals)"
    if a.get("concurrency") is None and changed(a, d, "think_time_ms"):
        return "--think-time-ms only applies with --concurrency (closed-loop clients)"
    # A length distribution beside a fixed length is allowed: search's simulate_args carry both and the
    # distribution wins (documented in `simulate --help`).
    return None


def _pd_options(a: dict, d: dict) -> str | None:
    pools = a.get("prefill_replicas") or a.get("decode_replicas")
    if pools and changed(a, d, "replicas"):
        return "--replicas conflicts with --prefill-replicas/--decode-replicas (P/D pools have their own sizes)"
    if not pools:
        ignored = changed(a, d, "prefill_tp", "decode_tp", "prefill_max_num_seqs")
        if ignored:
            return f"{flags(ignored)} only apply with --prefill-replicas and --decode-replicas"
    return None


MAX_TIMESERIES_SAMPLES = 10_000_000  # 8 bytes each per series: ~80 MB, far more than any plot needs


def _simulated_span(a: dict, d: dict) -> str | None:
    """The time series keeps one sample per `timeseries_interval_s` of simulated time: a run whose arrivals
    alone span more samples than MAX_TIMESERIES_SAMPLES (`--rate 1e-9`) would exhaust memory, so refuse it."""
    num = a.get("num_requests") or 1000
    interval = a.get("timeseries_interval_s") or 1.0
    span = 0.0
    if a.get("rate"):
        span = num / a["rate"]
    elif a.get("concurrency"):
        span = num * (a.get("think_time_ms") or 0.0) / 1e3 / a["concurrency"]
    if span / interval > MAX_TIMESERIES_SAMPLES:
        return (f"{num:,} requests at these arrivals span ~{span:.3g} s of simulated time, over "
                f"{MAX_TIMESERIES_SAMPLES:,} time-series samples of {interval:g} s; raise the rate or lower --num-requests")
    return None


SIMULATE_RULES: tuple[Rule, ...] = (_trace_options, _arrival_options, _pd_options, _simulated_span)

_OP_PARAMS = {
    "gemm": {"m", "n", "k", "dtype", "weight_dtype", "variant", "warm_cache"},
    "attention": {"phase", "batch", "q_len", "kv_len", "heads", "kv_heads", "head_dim", "dtype", "kv_dtype"},
    "collective": {"devices", "bytes"},
}
_OP_KNOWN = set().union(*_OP_PARAMS.values())


def _op_options(a: dict, d: dict) -> str | None:
    """Options another kind of operator takes are refused rather than silently ignored."""
    name = str(a.get("name", "")).replace("_", "")
    kind = name if name in ("gemm", "attention") else "collective" if name in (
        "allreduce", "allgather", "reducescatter", "alltoall", "sendrecv") else None
    if kind is None:  # other kinds (moe, ...) check their own options
        return None
    ignored = changed(a, d, *sorted(_OP_KNOWN - _OP_PARAMS[kind]))
    return f"op {name} does not take {flags(ignored)}" if ignored else None


OP_RULES: tuple[Rule, ...] = (_op_options,)
