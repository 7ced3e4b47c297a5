"""Hardening: fuzzed ``.param`` parser, ``.bin`` loader and pattern parser (see docs/guarantees.md).

Only the project's own exceptions (:class:`~ncnnpass.ir.errors.NcnnpassError`) may come out of parsing,
loading, checking and writing a mutated model, and a model that loads must write files that load back.
The long run is ``python -m tests.fuzz.run --iterations 100000``; here a short deterministic slice of
it runs on the real PP-OCRv3 files, plus hypothesis strategies and the regressions the fuzzer found.
"""

from __future__ import annotations

import random
import time

import pytest
from fuzz.corpus import SYNTHETIC_PARAM, Model, real_model, synthetic_model, windows
from fuzz.mutate import PARAM_MUTATORS, PATTERN_MUTATORS, mutate, mutate_bin
from fuzz.run import build_corpus, run_range
from fuzz.targets import Escape, model_target, pattern_target, time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncnnpass.ir.errors import NcnnpassError, ParamSyntaxError, PatternSyntaxError
from ncnnpass.ir.loader import graph_from_text
from ncnnpass.passes.engine import compile_rules

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _ok(fn, *args) -> str:
    """Run a fuzz target; an escape fails the test with the traceback of the code under test."""
    try:
        with time_limit(10):
            return fn(*args)
    except Escape as exc:
        pytest.fail(f"{exc}\n{exc.detail}")


# -- the mutation fuzzer, short and deterministic --------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(ppocrv3_rec_ncnn):
    return build_corpus(real=[ppocrv3_rec_ncnn], windows_per_model=30)


def test_mutated_real_models_only_raise_project_errors(corpus, ppocrv3_rec_ncnn):
    """400 iterations of ``python -m tests.fuzz.run`` (seeded: the same inputs every run)."""
    res = run_range(corpus, f"pytest-{ppocrv3_rec_ncnn[0].parent.name}", range(400), timeout=10)
    assert not res.failures, "\n\n".join(f"iteration {f['iteration']}: {f['error']}\n{f['detail']}"
                                         for f in res.failures[:3])
    assert res.outcomes["ok"] > 20  # the mutations are not all rejected at the first line
    assert sum(n for k, n in res.outcomes.items() if k.startswith("rejected")) > 100


def test_every_truncation_of_a_real_window(corpus):
    """Cut a real 12-layer window (param and bin) at every byte: refused or loaded, never a crash."""
    m = max(corpus.small[4:], key=lambda m: len(m.bin))
    for cut in range(0, len(m.param) + 1, 3):
        _ok(model_target, m.param[:cut], m.bin)
    for cut in sorted({*range(0, len(m.bin), max(1, len(m.bin) // 300)), *m.array_starts}):
        _ok(model_target, m.param, m.bin[:cut])


# -- hypothesis ------------------------------------------------------------------------------------------

_SEED_MODELS = [synthetic_model(s) for s in range(3)]
NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
TOKENS = st.one_of(
    NAMES,
    st.integers(-2**40, 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0=", "-23300=", "-23310=1000000000,1", "6=1000000000", "2=-1", "=", ",", "\"", "1e39",
                     "nan", "7767517", "Input", "Split", "MemoryData", "Convolution", "LSTM", "Gemm", "0=1,"]),
    st.integers(1, 40).map(lambda k: str(k) + "=" + ",".join(["1"] * k)),
)


@st.composite
def param_texts(draw) -> str:
    """Line-structured text that looks like a .param: header, then lines of name/count/param tokens."""
    header = draw(st.sampled_from(["7767517", "7767517", "7767518", "-1", ""]))
    counts = draw(st.sampled_from(["3 3", "1000000000 1000000000", "0 0", "-1 5", "3", ""]))
    lines = [header, counts]
    for _ in range(draw(st.integers(0, 6))):
        typ = draw(st.sampled_from(["Input", "ReLU", "Convolution", "InnerProduct", "MemoryData", "Split",
                                    "Gemm", "LSTM", "Custom", "BatchNorm"]))
        nin, nout = draw(st.integers(-1, 3)), draw(st.integers(-1, 3))
        blobs = draw(st.lists(st.sampled_from(["x", "y", "z", "w"]), max_size=6))
        extra = draw(st.lists(TOKENS, max_size=5))
        lines.append(" ".join([typ, draw(NAMES) or "n", str(nin), str(nout), *blobs, *extra]))
    sep = draw(st.sampled_from(["\n", "\r\n", "\n\n", "\r"]))
    return sep.join(lines) + draw(st.sampled_from(["", "\n"]))


@FAST
@given(param_texts(), st.binary(max_size=256))
def test_generated_param_text(text, bin):
    _ok(model_target, text.encode("utf-8"), bin)


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes_as_param(data):
    _ok(model_target, b"7767517\n1 1\n" + data, None)
    _ok(model_target, data, b"")


@FAST
@given(st.sampled_from(_SEED_MODELS), st.integers(0, 2**32 - 1), st.booleans())
def test_mutated_synthetic_models(model: Model, seed: int, mutate_both: bool):
    """Every weighted layer type and storage flag the real models do not have (LSTM, GRU, Gemm, MHA, ...)."""
    rng = random.Random(seed)
    param = mutate(rng, model.param, PARAM_MUTATORS)
    bin = mutate_bin(rng, model.bin, model.array_starts) if mutate_both else model.bin
    _ok(model_target, param, bin)


@FAST
@given(st.integers(0, 2**32 - 1))
def test_mutated_patterns(seed):
    rng = random.Random(seed)
    from fuzz.corpus import pattern_texts

    name, text = rng.choice(pattern_texts())
    g = graph_from_text(_SEED_MODELS[0].param.decode(), _SEED_MODELS[0].bin)
    _ok(pattern_target, mutate(rng, text.encode(), PATTERN_MUTATORS), g)


@FAST
@given(st.text(max_size=300))
def test_arbitrary_pattern_text(text):
    for prefix in ("", "rule r\nmatch:\n", "rule r\nmatch:\n  ReLU a 1 1 x y\nwhere:\n  "):
        try:
            compile_rules(prefix + text)
        except NcnnpassError:
            pass


# -- regressions found by the fuzzer ---------------------------------------------------------------------

RULE = "rule r\nmatch:\n  ReLU a 1 1 x y ...\nwhere:\n  {}\nreplace:\n  ReLU a 1 1 x y\n"


@pytest.mark.parametrize("expr", [
    "-" * 5000 + "1", "not " * 3000 + "true", "+".join(["1"] * 3000), "[" * 2000 + "]" * 2000,
    "a" + ".b" * 3000, "1 if 1 else " * 2000 + "1",
])
def test_deeply_nested_pattern_expression_is_a_syntax_error(expr):
    """Was: RecursionError from the expression builder."""
    with pytest.raises(PatternSyntaxError, match="nested deeper than"):
        compile_rules(RULE.format(expr))
    compile_rules(RULE.format("(" * 150 + "1" + ")" * 150 + " == 1"))  # a reasonable depth still works


@pytest.mark.parametrize("where", ["benefit 1" + "0" * 5000, "x == " + "9" * 5000, "a.num_output == " + "1" * 700])
def test_pattern_number_with_thousands_of_digits(where):
    """Was: ValueError from int() (Python refuses to convert more than 4300 digits)."""
    text = RULE.format(where) if not where.startswith("benefit") else f"rule r\n{where}\nmatch:\n  ReLU a 1 1 x y\n"
    with pytest.raises(PatternSyntaxError, match="more than 600 digits"):
        compile_rules(text)


@pytest.mark.parametrize("expr", ["9**9**9 > 0", "len([0] * 10**10) > 0", "len('ab' * 10**9) > 0",
                                  "2**4000 == a.slope", "(-3)**3000 != 0"])
def test_pattern_arithmetic_cannot_hang_or_eat_memory(expr):
    """Was: ``9**9**9`` ran for minutes and ``[0] * 10**10`` asked for 80 GB (a user's keep-fp32 pattern)."""
    from ncnnpass.passes.engine import PassContext, run_rules

    g = graph_from_text("7767517\n2 2\nInput in 0 1 x\nReLU a 1 1 x y\n")
    rules = compile_rules(RULE.format(expr))
    t = time.perf_counter()
    try:
        run_rules(g, rules, PassContext(g))
    except NcnnpassError as exc:
        assert "more than" in str(exc)
    assert time.perf_counter() - t < 2


def test_synthetic_seed_loads_and_covers_the_weighted_types():
    g = graph_from_text(SYNTHETIC_PARAM, synthetic_model(0).bin)
    assert {"LSTM", "GRU", "RNN", "Gemm", "MultiHeadAttention", "Embed", "MemoryData"} <= set(g.types())
    assert not g.check()


def test_windows_of_a_real_model_load(ppocrv3_rec_ncnn):
    m = real_model(*ppocrv3_rec_ncnn, "v3")
    for w in windows(m, random.Random(0), 20):
        g = graph_from_text(w.param.decode(), w.bin)
        assert not g.check()


def test_param_syntax_error_is_a_project_error():
    assert issubclass(ParamSyntaxError, NcnnpassError)


def test_weights_assignment_of_a_non_array_is_an_eval_error():
    """``c.weight = c`` (a layer, not values): was a TypeError from numpy (found by the long fuzz run)."""
    from ncnnpass.passes.engine import EvalError, PassContext, run_rules

    g = graph_from_text("7767517\n2 2\nInput in 0 1 x\nConvolution c 1 1 x y 0=1 1=1 6=1\n", bytes(8))
    rules = compile_rules("rule r\nmatch:\n  Convolution c 1 1 x y ...\nreplace:\n  Convolution c 1 1 x y @c\n"
                          "weights:\n  c.weight = c\n")
    with pytest.raises(EvalError, match="needs float values, got Layer"):
        run_rules(g, rules, PassContext(g))
