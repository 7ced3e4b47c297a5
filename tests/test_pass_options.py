"""Typed pass options: declared once per pass, filled by the spec parser or by ``configure``."""

from __future__ import annotations

import pytest

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine import FunctionPass, Option
from ncnnpass.passes.registry import get_pass


def _probe() -> FunctionPass:
    seen: dict = {}

    def fn(graph, ctx, **options):
        seen.update(options)
        return 0

    p = FunctionPass("probe", "records its options", fn, options={
        "flag": Option(False, "a switch", bool), "count": Option(3, "an int", int),
        "ratio": Option(0.5, "a float", float), "mode": Option("a", "a choice", choices=("a", "b")),
        "names": Option([], "words", list), "raw": (None, "untyped: text kept as given")})
    p.seen = seen
    return p


def test_spec_text_becomes_typed_values() -> None:
    p = _probe()
    q = p.configure(flag="yes", count="0x10", ratio="2", mode="b", names="x|y,z", raw="7")
    assert q.options == {"flag": True, "count": 16, "ratio": 2.0, "mode": "b", "names": ["x", "y", "z"], "raw": "7"}
    assert p.options["flag"] is False and p.options["names"] == []  # configure copies
    assert q.spec() == "probe[flag=1,count=16,ratio=2.0,mode=b,names=x|y|z,raw=7]"
    assert p.spec() == "probe"
    # Python values go in as they are (a list of names needs no quoting of | or ,)
    r = p.configure(names=["a,b", "c|d"], flag=False)
    assert r.options["names"] == ["a,b", "c|d"] and r.options["flag"] is False


@pytest.mark.parametrize("key, value, message", [
    ("flag", "maybe", "flag must be 1/0, true/false"), ("count", "x", "count must be an int"),
    ("ratio", "fast", "ratio must be a float"), ("mode", "c", "mode must be a or b"),
    ("count", [1], "count must be an int"), ("nope", "1", "has no option nope"),
])
def test_bad_option_values_name_the_pass_and_option(key, value, message) -> None:
    with pytest.raises(NcnnpassError, match=message):
        _probe().configure(**{key: value})


def test_registry_specs_are_typed() -> None:
    p = get_pass("adaptive-avgpool-lowering[static=1,direction=raise]")
    assert p.options == {"direction": "raise", "static": True}
    assert get_pass(p.spec()).options == p.options
    with pytest.raises(NcnnpassError, match="direction must be lower or raise"):
        get_pass("adaptive-avgpool-lowering[direction=up]")


def test_pass_object_equals_spec_string_on_ppocrv4(ppocrv4_rec_ncnn) -> None:
    g = Graph.load(*map(str, ppocrv4_rec_ncnn))
    fcs = [ly.name for ly in g.find("InnerProduct")]
    assert fcs
    by_object, by_text = g.copy(), g.copy()
    keep = get_pass("keep-fp32").configure(names=fcs, bits=2)
    assert apply_passes(by_object, [keep])["keep-fp32"] == len(fcs)
    apply_passes(by_text, [keep.spec()])
    assert by_object.to_param_text() == by_text.to_param_text()
    assert all(by_object.layer(n).featmask == 2 | 16 for n in fcs)  # bits=2, plus bit 4 of the every-path form


def test_every_pass_module_is_registered_without_a_list_edit() -> None:
    import importlib
    from pathlib import Path

    import ncnnpass.passes.ncnn as pkg
    from ncnnpass.passes.registry import PASS_MODULES, pass_modules, passes

    files = sorted(p.stem for p in Path(pkg.__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    assert sorted(pass_modules()) == files
    assert pass_modules()[:len(PASS_MODULES)] == list(PASS_MODULES)
    for m in files:
        assert importlib.import_module(f"ncnnpass.passes.ncnn.{m}").PASS.name in passes()
