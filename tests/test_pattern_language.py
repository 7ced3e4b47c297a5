"""The pattern language: syntax errors with line:column, compile-time checks, matching semantics."""

from __future__ import annotations

import pytest

from ncnnpass.ir.errors import PatternSyntaxError
from ncnnpass.passes.engine import RulePass, compile_rules, run_passes
from ncnnpass.passes.engine.syntax import parse_rules
from ncnnpass.passes.engine.testing import model

DOUBLE_RELU = """
rule drop-double-relu
doc "ReLU after ReLU"
match:
  ReLU a 1 1 x t  0=0
  ReLU b 1 1 t y  0=0
replace:
  ReLU a 1 1 x y
"""


def apply(text: str, g, hooks=None, **kw):
    return run_passes(g, [RulePass("test", "test", text, hooks)], **kw)


# -- syntax ------------------------------------------------------------------------------------------
def test_parses_every_section() -> None:
    (r,) = parse_rules("""
# leading comment
rule demo   # trailing comment
doc "a demo"
benefit 5
match:
  Convolution|ConvolutionDepthWise conv 1 1 x t!  9=0 num_output=%n 10=0.5,1 4=1|2 5<=3 ...

  # blank and comment lines are fine
  ReLU act 1 1 t y 0=%slope
where:
  %slope == 0 and not (%n % 2 == 1) or %n in [1, 2]
replace:
  @conv conv 1 1 x y @conv 9=1 ~4 10={[%n, 1.0]}
weights:
  conv.weight = conv.weight
""")
    assert r.name == "demo" and r.doc == "a demo" and r.benefit == 5
    conv, act = r.match
    assert conv.types == ("Convolution", "ConvolutionDepthWise") and conv.shared == {"t"} and conv.rest
    kinds = [(t.key, t.op, t.kind) for t in conv.tests]
    assert kinds == [("9", "=", "literal"), ("num_output", "=", "capture"), ("10", "=", "literal"),
                     ("4", "=", "alternatives"), ("5", "<=", "literal")]
    assert conv.tests[2].value == [0.5, 1.0]
    (rep,) = r.replace
    assert rep.copy_type == "conv" and [i.kind for i in rep.items] == ["copy", "set", "drop", "set"]
    assert r.where[0].text.startswith("%slope == 0")


@pytest.mark.parametrize("text, line, col, words", [
    ("rule r\nmatch:\n  ReLU a 1 1 x\nreplace:\n  ReLU a 1 1 x y\n", 3, 3, "1 input(s) and 1 output(s) but lists 1"),
    ("rule r\nmatch:\n  ReLU a 1 1 x y 0==1\nreplace:\n  ReLU a 1 1 x y\n", 3, 18, "unexpected"),
    ("rule r\nmatch:\n  ReLU a 1 1 x y $\n", 3, 18, "unexpected character '$'"),
    ("rule r\nmatch:\n  ReLU a 1 1 x y\n", 1, 6, "no 'replace:' section"),
    ("rule r\nreplace:\n  ReLU a 1 1 x y\n", 1, 6, "no 'match:' section"),
    ("rule r\nmatch:\n  ReLU a 1 1 x y\nwhere:\n  %a +\nreplace:\n  ReLU a 1 1 x y\n", 5, 7, "unexpected end of line"),
    ("rule r\nmatch:\n  ReLU a 1 1 x y 10=1,2.5\nreplace:\n  ReLU a 1 1 x y\n", 3, 21, "first element is an int"),
])
def test_syntax_errors_have_line_and_column(text: str, line: int, col: int, words: str) -> None:
    with pytest.raises(PatternSyntaxError) as exc:
        compile_rules(text, file="p.rw")
    assert (exc.value.line, exc.value.column) == (line, col), str(exc.value)
    assert words in str(exc.value)
    assert str(exc.value).startswith(f"p.rw:{line}:{col}:")


@pytest.mark.parametrize("body, words", [
    ("match:\n  Relu a 1 1 x y\nreplace:\n  y := x\n", "unknown layer type 'Relu'"),
    ("match:\n  ReLU a 1 1 x y slope=%s\nreplace:\n  y := x\n", None),
    ("match:\n  ReLU a 1 1 x y kernel=1\nreplace:\n  y := x\n", "ReLU has no param named 'kernel'"),
    ("match:\n  ReLU a 1 1 x y\nreplace:\n  ReLU a 1 1 x z\n", "must produce blob 'y'"),
    ("match:\n  ReLU a 1 1 x t\n  ReLU b 1 1 t y\nreplace:\n  ReLU b 1 1 t y\n", "reads blob 't'"),
    ("match:\n  ReLU a 1 1 x y\nwhere:\n  %nope > 1\nreplace:\n  y := x\n", "capture %nope is not bound"),
    ("match:\n  ReLU a 1 1 x y\nwhere:\n  nope(x)\nreplace:\n  y := x\n", "unknown name 'nope'"),
    ("match:\n  ReLU a 1 1 x y\n  ReLU a 1 1 y z\nreplace:\n  z := x\n", "handle 'a' is used twice"),
    ("match:\n  ReLU a 1 1 x y\n  ReLU b 1 1 p q\nreplace:\n  y := x\n  q := p\n", "not connected"),
    ("match:\n  ReLU a 1 1 x y\nreplace:\n  @b b 1 1 x y\n", "@b is not a matched layer"),
    ("match:\n  ReLU a 1 1 x y\nreplace:\n  ReLU a 1 1 x y\nweights:\n  q.w = 1\n", "'q' is not a replacement"),
    ("match:\n  ReLU a 1 1 x y 40=1\nreplace:\n  y := x\n", "out of range"),
])
def test_compile_checks(body: str, words: str | None) -> None:
    text = "rule r\n" + body
    if words is None:
        compile_rules(text)  # schema names resolve to ids
        return
    with pytest.raises(PatternSyntaxError, match=words):
        compile_rules(text)


def test_duplicate_rule_names_rejected() -> None:
    with pytest.raises(PatternSyntaxError, match="defined twice"):
        compile_rules(DOUBLE_RELU + DOUBLE_RELU)


# -- matching ----------------------------------------------------------------------------------------
def chain(n: int, extra: str = "") -> str:
    lines = ["Input in0 0 1 b0"] + [f"ReLU r{i} 1 1 b{i} b{i + 1}" for i in range(n)]
    return "\n".join(lines) + ("\n" + extra if extra else "")


def test_overlapping_matches_resolve_deterministically() -> None:
    g = model(chain(5))
    report = apply(DOUBLE_RELU, g)
    assert report["test"] == 4 and report.changed
    assert [ly.name for ly in g.layers] == ["in0", "r0"]
    assert g.layers[1].outputs == ("b5",)  # the protected output keeps its name


def test_internal_blob_with_other_consumer_blocks_the_match() -> None:
    g = model(chain(2, "Sigmoid s 1 1 b1 z"))
    report = apply(DOUBLE_RELU, g)
    assert report["test"] == 0
    assert "has consumers outside the match" in next(iter(report.stats["test"].skipped))


def test_shared_blob_may_escape_and_is_reproduced() -> None:
    text = DOUBLE_RELU.replace("ReLU a 1 1 x t  0=0", "ReLU a 1 1 x t!  0=0").replace(
        "replace:\n  ReLU a 1 1 x y", "replace:\n  ReLU a 1 1 x t\n  ReLU b 1 1 x y")
    g = model(chain(2, "Sigmoid s 1 1 b1 z"))
    assert apply(text, g)["test"] == 1
    assert g.layer("s").inputs == ("b1",) and g.layer("r1").inputs == ("b0",)
    # without the extra consumer the re-produced layer is dropped as unused
    g = model(chain(2))
    apply(text, g)
    assert [ly.name for ly in g.layers] == ["in0", "r1"]


def test_protected_output_is_never_bypassed() -> None:
    text = "rule r\nmatch:\n  ReLU a 1 1 x y\nreplace:\n  y := x\n"
    g = model(chain(2))
    report = apply(text, g)
    assert report["test"] == 1  # r0 goes, r1 produces the output and stays
    assert [ly.name for ly in g.layers] == ["in0", "r1"] and g.outputs == ["b2"]


def test_unmentioned_params_must_be_default_unless_rest() -> None:
    body = "Input in0 0 1 x\nReLU r 1 1 x y 0=0.5\n"
    strict = "rule r\nmatch:\n  ReLU a 1 1 x y\nreplace:\n  Sigmoid a 1 1 x y\n"
    assert apply(strict, model(body))["test"] == 0
    assert apply(strict.replace("x y\nreplace", "x y ...\nreplace"), model(body))["test"] == 1
    # an explicit default counts as default; featmask never blocks
    assert apply(strict, model("Input in0 0 1 x\nReLU r 1 1 x y 0=0.0 31=2\n"))["test"] == 1


def test_defaults_follow_other_params_and_names_resolve() -> None:
    body = "Input in0 0 1 x\nPooling p 1 1 x y 0=1 1=3 2=2\n"  # 11 (kernel_h) follows 1, 12 follows 2
    text = "rule r\nmatch:\n  Pooling p 1 1 x y kernel_w=%k 11=%k 2=2 12=2 pooling_type=1\nreplace:\n  y := x\n"
    g = model(body + "Sigmoid s 1 1 y z\n")
    assert apply(text, g)["test"] == 1


def test_captures_unify_and_comparisons() -> None:
    text = """
rule same-slope
match:
  ReLU a 1 1 x t  0=%s
  ReLU b 1 1 t y  0=%s
replace:
  ReLU a 1 1 x y  0={%s * 2}
"""
    g = model("Input in0 0 1 x\nReLU r0 1 1 x t 0=0.25\nReLU r1 1 1 t y 0=0.5\n")
    assert apply(text, g)["test"] == 0
    g = model("Input in0 0 1 x\nReLU r0 1 1 x t 0=0.25\nReLU r1 1 1 t y 0=0.25\n")
    assert apply(text, g)["test"] == 1
    assert g.layer("r0").get("slope") == pytest.approx(0.5)
    cmp = "rule r\nmatch:\n  Clip c 1 1 x y 0>=0 1<6.5\nreplace:\n  y := x\n"
    g = model("Input in0 0 1 x\nClip c 1 1 x t 0=0.0 1=6.0\nSigmoid s 1 1 t y\n")
    assert apply(cmp, g)["test"] == 1
    g = model("Input in0 0 1 x\nClip c 1 1 x t 0=-1.0 1=6.0\nSigmoid s 1 1 t y\n")
    assert apply(cmp, g)["test"] == 0


def test_consumer_steps_backtrack_over_fanout() -> None:
    text = """
rule fork
match:
  Sigmoid s 1 1 x a
  TanH t 1 1 x b
  BinaryOp m 2 1 a b y  0=2
replace:
  Swish s 1 1 x y
"""
    # x feeds three layers; the TanH is found among them
    g = model("Input in0 0 1 x\nReLU r 1 1 x q\nSigmoid s 1 1 x a\nTanH t 1 1 x b\nBinaryOp m 2 1 a b y 0=2\n"
              "BinaryOp o 2 1 y q z 0=0\n")
    assert apply(text, g)["test"] == 1
    assert g.types() == {"Input": 1, "ReLU": 1, "Swish": 1, "BinaryOp": 1}


def test_where_unknown_shape_does_not_fire_and_reports() -> None:
    text = "rule r\nmatch:\n  ReLU a 1 1 x y\nwhere:\n  x.w == 4\nreplace:\n  y := x\n"
    g = model("Input in0 0 1 x\nReLU r 1 1 x t\nSigmoid s 1 1 t y\n")
    report = apply(text, g)
    assert report["test"] == 0
    assert "not known to be 3-D" in str(report)


def test_hooks_and_new_blob_names() -> None:
    text = """
rule split-clip
match:
  Clip c 1 1 x y  0=%lo 1=%hi
where:
  wide(%lo, %hi)
replace:
  ReLU relu 1 1 x t
  Clip c 1 1 t y  0=0.0 1=%hi
"""
    g = model("Input in0 0 1 x\nClip clip 1 1 x t 0=-1.0 1=6.0\nSigmoid s 1 1 t y\n")
    report = apply(text, g, hooks={"wide": lambda m, lo, hi: lo < 0 and hi - lo > 5})
    assert report["test"] == 1
    relu = g.find("ReLU")[0]
    assert relu.name == "clip_relu" and relu.outputs == ("clip_t",)  # fresh names derive from the root
    assert g.layer("clip").inputs == ("clip_t",) and g.layer("clip").outputs == ("t",)
    assert not g.check()


def test_rewrite_loop_is_bounded() -> None:
    text = "rule flip\nmatch:\n  ReLU a 1 1 x y\nreplace:\n  ReLU a 1 1 x t\n  ReLU b 1 1 t y\n"
    g = model(chain(1) + "\nSigmoid s 1 1 b1 z")
    with pytest.raises(Exception, match="rewrite loop"):
        apply(text, g)


def test_report_fixpoint_and_pipeline_iterations() -> None:
    g = model(chain(4))
    report = apply(DOUBLE_RELU, g)
    assert report.converged and report.iterations == 2 and report.counts == {"test": 3}
    text = str(report)
    assert "drop-double-relu" in text and "fixpoint" in text and "5 -> 2 layers" in text
