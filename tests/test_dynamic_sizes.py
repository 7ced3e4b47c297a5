"""Whether a recogniser runs at other widths: Reshapes sized for one width say no (passes/measure/dynamic_sizes)."""

from __future__ import annotations

import fixtures
import pytest

from ncnnpass.ir import Graph
from ncnnpass.passes.engine.testing import model
from ncnnpass.passes.measure.dynamic_sizes import other_width, runs_at_other_widths


def _reshape(params: str) -> Graph:
    return model(f"""
Input in0 0 1 x 0=32 1=4 2=3
ReLU relu 1 1 x r
Reshape rs 1 1 r y {params}
""")


def test_a_reshape_sized_for_one_width_is_static() -> None:
    assert not runs_at_other_widths(_reshape("0=32 1=12"), (3, 4, 32))  # 384 elements at width 32 only


def test_a_reshape_that_infers_a_dim_runs_at_any_width() -> None:
    assert runs_at_other_widths(_reshape("0=-1 1=12"), (3, 4, 32))


def test_the_second_width_differs() -> None:
    assert other_width(320) == 160 and other_width(36) == 16 and other_width(16) == 32


@pytest.mark.real
def test_pnnx_conversions_with_one_and_two_shapes() -> None:
    one = Graph.load(*map(str, fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "PP-OCRv3 rec (pnnx)")))
    two = Graph.load(*map(str, fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn_any_width(False),
                                                "PP-OCRv3 rec (pnnx, two widths)")))
    assert not runs_at_other_widths(one, (3, 48, 320))
    assert runs_at_other_widths(two, (3, 48, 320))
