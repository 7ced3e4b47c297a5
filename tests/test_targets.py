"""Execution targets of the run bridge: the isolated worker, crash/timeout handling, the default target,
and what happens when the emulated ARM runtime is missing (the emulated runs are in test_targets_arm.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ncnnpass.ir import Graph, RuntimeBridgeError, runtime
from ncnnpass.ir.errors import NcnnpassError, ToolError
from ncnnpass.passes.engine.testing import fill_weights, model
from ncnnpass.passes.measure.verify import verify

REPO = Path(__file__).resolve().parents[1]


def small() -> Graph:
    g = model("""
Input in0 0 1 x 0=8 1=8 2=16
Convolution conv 1 1 x t 0=16 1=3 4=1 5=1 6=2304
ReLU relu 1 1 t u
Convolution conv2 1 1 u y 0=8 1=1 5=1 6=128
""")
    return fill_weights(g, seed=1)


def feeds(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (16, 8, 8)).astype(np.float32)


@pytest.fixture()
def isolated():
    with runtime.open_target("isolated", progress=None) as t:
        yield t


def test_target_names() -> None:
    assert runtime.normalize_target("arm-a76") == "arm"
    assert runtime.normalize_target("ARM-A57") == "arm-a57"
    assert runtime.normalize_target(None) == "x86"
    with pytest.raises(RuntimeBridgeError, match="unknown ncnn target 'riscv'"):
        runtime.normalize_target("riscv")
    with pytest.raises(RuntimeBridgeError, match="unknown ncnn target"):
        runtime.run(small(), feeds(), target="gpu")


def test_isolated_matches_in_process_bit_for_bit(isolated) -> None:
    g = small()
    for options in ("fp32", "default"):
        ref = runtime.run(g, feeds(), outputs="all", options=options, target="x86")
        got = isolated.run(g, feeds(), outputs="all", options=options)
        assert set(got) == set(ref) == {"x", "t", "u", "y"}
        for k in ref:
            assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]), k
    many = isolated.run_many(g, [feeds(0), feeds(1), feeds(2)], outputs=["y"], options="fp32")
    assert [sorted(m) for m in many] == [["y"]] * 3
    for seed, m in enumerate(many):
        assert np.array_equal(m["y"], runtime.run(g, feeds(seed), options="fp32")["y"])
    assert not np.array_equal(many[0]["y"], many[1]["y"])


def test_worker_errors_are_one_line_and_the_worker_survives(isolated) -> None:
    g = small()
    isolated.run(g, feeds())
    pid = isolated._proc.pid
    with pytest.raises(RuntimeBridgeError, match="could not extract blob 'nope'") as err:
        isolated.run(g, feeds(), outputs="nope")
    assert "\n" not in str(err.value)
    with pytest.raises(RuntimeBridgeError, match="ncnn.Option has no field 'use_magic'"):
        isolated.run(g, feeds(), options={"use_magic": True})
    with pytest.raises(RuntimeBridgeError, match="unknown option preset"):
        isolated.run(g, feeds(), options="fastest")
    assert isolated.run(g, feeds())["y"].shape == (8, 8, 8)
    assert isolated._proc.pid == pid  # an ncnn-level refusal does not cost a restart


def test_a_dead_worker_is_an_error_and_restarts(isolated) -> None:
    g = small()
    isolated.run(g, feeds())
    first = isolated._proc.pid
    os.kill(first, 9)
    isolated._proc.wait(timeout=30)  # dead for certain before the next request (no race with the kernel)
    with pytest.raises(RuntimeBridgeError, match=r"ncnn worker \(x86 \(isolated worker\)\) crashed \(killed by SIGKILL\)"):
        isolated.run(g, feeds())
    out = isolated.run(g, feeds(), options="fp32")  # restarted on next use
    assert isolated._proc.pid != first
    assert np.array_equal(out["y"], runtime.run(g, feeds(), options="fp32")["y"])


def test_timeout_stops_the_worker() -> None:
    # a 64x256x256 3x3 convolution takes far more than a millisecond
    g = fill_weights(model("""
Input in0 0 1 x 0=256 1=256 2=64
Convolution conv 1 1 x y 0=64 1=3 4=1 5=1 6=36864
"""))
    with runtime.open_target("isolated", timeout=0.001) as t:
        t.ensure_started()
        with pytest.raises(RuntimeBridgeError, match=r"timed out after 0s and was stopped"):
            t.run(g, np.ones((64, 256, 256), np.float32))
        assert t._proc is None


def test_default_target_routes_runs_and_shape_inference() -> None:
    # the shared worker as the suites before left it: its cache evicts their nets here (an earlier run's overrun
    # used to surface as ncnn's "pool allocator destroyed too early" on such an eviction; tests/test_worker_eviction.py)
    g = small()
    assert runtime.get_default_target() == "x86"
    with runtime.default_target("isolated"):
        assert runtime.get_default_target() == "isolated"
        shared = runtime.shared_target("isolated")
        out = runtime.run(g, feeds(), options="fp32")
        assert shared._proc is not None and shared._proc.poll() is None  # the run went to the worker
        shapes = runtime.infer_shapes(g, (16, 8, 8))
        assert shapes == {"x": (16, 8, 8), "t": (16, 8, 8), "u": (16, 8, 8), "y": (8, 8, 8)}
        result = verify(g, g.copy(), (16, 8, 8))
        assert result.target == "isolated" and result.max_abs == 0.0
        assert "on x86 (isolated worker)" in str(result)
    assert runtime.get_default_target() == "x86"
    assert np.array_equal(out["y"], runtime.run(g, feeds(), options="fp32")["y"])


@pytest.mark.real
def test_isolated_turns_a_real_ncnn_crash_into_an_error(isolated) -> None:
    """pnnx bakes the 320 width into the PP-OCRv3 rec Reshapes; at width 100 ncnn segfaults in-process."""
    import fixtures

    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    g = Graph.load(param, bin)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 100)).astype(np.float32)
    with pytest.raises(RuntimeBridgeError, match=r"crashed \(killed by SIG(SEGV|ABRT|BUS)\)") as err:
        isolated.run(g, x)
    assert "\n" not in str(err.value)
    ok = isolated.run(g, np.zeros((3, 48, 320), np.float32))  # the worker came back
    assert ok["out0"].shape == (40, 6625)


def test_cli_runs_isolated_by_default(tmp_path) -> None:
    g = small()
    g.save(tmp_path / "m.param", tmp_path / "m.bin")
    cmd = [sys.executable, "-m", "ncnnpass.cli.main", "run", str(tmp_path / "m.param"), str(tmp_path / "m.bin"),
           "-o", str(tmp_path / "o.param"), str(tmp_path / "o.bin"), "--verify"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "on x86 (isolated worker)" in out.stdout and "max abs 0.000e+00" in out.stdout
    out = subprocess.run([*cmd[:-1], "--overwrite", "--verify", "--target", "x86"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "isolated worker" not in out.stdout and "verify (fp32" in out.stdout


def test_cli_in_process_leaves_the_library_default_alone(tmp_path, capsys) -> None:
    from ncnnpass.cli.main import main

    g = small()
    g.save(tmp_path / "m.param", tmp_path / "m.bin")
    files = [str(tmp_path / "m.param"), str(tmp_path / "m.bin")]
    assert main(["run", *files, "-o", str(tmp_path / "o.param"), str(tmp_path / "o.bin"), "--verify"]) == 0
    assert "on x86 (isolated worker)" in capsys.readouterr().out
    assert runtime.get_default_target() == "x86"


def _no_arm_tools(monkeypatch, tmp_path) -> None:
    from ncnnpass.ir.runtime import arm_env

    monkeypatch.setenv("NCNNPASS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(arm_env.shutil, "which", lambda name: None)


def test_missing_arm_runtime_says_what_is_missing(monkeypatch, tmp_path) -> None:
    from ncnnpass.ir.runtime import arm_env

    _no_arm_tools(monkeypatch, tmp_path)
    reason = arm_env.arm_runtime_status()
    assert reason is not None and "qemu-aarch64-static is missing" in reason and "\n" not in reason
    with pytest.raises(ToolError, match="needs the Debian package.*qemu-user-static") as err:
        arm_env.ensure_arm_runtime()
    assert "\n" not in str(err.value)
    with runtime.open_target("arm", progress=None) as t, pytest.raises(NcnnpassError, match="qemu-user-static"):
        t.run(small(), feeds())


def test_unprovisioned_root_is_reported(monkeypatch, tmp_path) -> None:
    from ncnnpass.ir.runtime import arm_env

    monkeypatch.setenv("NCNNPASS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(arm_env, "_qemu", lambda: Path("/usr/bin/qemu-aarch64-static"))
    reason = arm_env.arm_runtime_status()
    assert reason is not None and "arm64 root" in reason and str(tmp_path) in reason


def test_arm_tests_fail_in_ci_when_the_runtime_is_missing(tmp_path) -> None:
    """CI=true with an empty ncnnpass cache (no arm root): the ARM tests fail, they do not skip."""
    env = dict(os.environ, CI="true", NCNNPASS_CACHE=str(tmp_path / "empty"))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          str(REPO / "tests" / "test_targets_arm.py")], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=600)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "CI=true and a required fixture/tool is unavailable" in out.stdout
    assert "arm64 root" in out.stdout


def test_pool_runs_jobs_in_parallel_workers_and_returns_errors_in_place() -> None:
    g = small()
    jobs = [runtime.Job(g, [feeds(0), feeds(3)], options="fp32"), runtime.Job(g, [feeds(1)], outputs="nope"),
            runtime.Job(g, [feeds(2)], outputs="all", options="fp32")]
    with runtime.TargetPool("isolated", workers=2, progress=None) as pool:
        results = pool.run(jobs)
        assert len(pool.sessions) == 2 and pool.runs == 3 and pool.seconds > 0
        with pytest.raises(RuntimeBridgeError, match="'nope'"):
            pool.run(jobs[1:2], errors="raise")
    assert not results[1].ok and "could not extract blob 'nope'" in str(results[1].error)
    assert np.array_equal(results[0].outputs[0]["y"], runtime.run(g, feeds(0), options="fp32")["y"])
    assert np.array_equal(results[0].outputs[1]["y"], runtime.run(g, feeds(3), options="fp32")["y"])
    assert set(results[2].outputs[0]) == {"x", "t", "u", "y"}
    assert np.array_equal(results[2].outputs[0]["y"], runtime.run(g, feeds(2), options="fp32")["y"])


def test_worker_reloads_nets_it_dropped(isolated) -> None:
    """The worker caches a few nets; a session that used more gets the dropped ones loaded again."""
    from ncnnpass.ir.runtime.worker import MAX_CACHED_NETS

    graphs = [fill_weights(small(), seed=s) for s in range(MAX_CACHED_NETS + 2)]
    first = [isolated.run(g, feeds(), options="fp32")["y"] for g in graphs]
    again = isolated.run(graphs[0], feeds(), options="fp32")["y"]  # evicted from the worker by now
    assert np.array_equal(again, first[0])
    assert np.array_equal(again, runtime.run(graphs[0], feeds(), options="fp32")["y"])
    assert not np.array_equal(first[0], first[1])


def test_shapes_under_an_arm_default_are_inferred_off_the_emulator() -> None:
    """Shapes do not depend on the CPU: with ``--target arm`` as the default, shape inference runs in the
    isolated x86 worker instead of a minutes-long emulated run (an explicit ``target="arm"`` still emulates)."""
    from ncnnpass.ir.runtime import targets

    g = small()
    targets.close_shared_targets()
    with runtime.default_target("arm"):
        shapes = runtime.infer_shapes(g, (16, 8, 8))
    assert shapes == {"x": (16, 8, 8), "t": (16, 8, 8), "u": (16, 8, 8), "y": (8, 8, 8)}
    assert "arm" not in targets._SHARED and "isolated" in targets._SHARED
