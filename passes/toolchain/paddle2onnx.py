"""Convert a Paddle inference model to ONNX, validated, repaired when safe, and verified.

Two forms of Paddle inference model exist: the legacy ``inference.pdmodel`` (PaddleOCR 2.x) and the PIR
``inference.json`` that PaddleOCR 3.x exports (PP-OCRv5 and later). The version trap: paddle2onnx 2.x
(+ paddlepaddle 3.x) turns the legacy PP-OCRv4 rec ``inference.pdmodel`` into an ONNX whose
shape-computing ``Concat`` nodes mix rank-0 and rank-1 inputs; onnxruntime refuses to load it and pnnx
crashes. paddle2onnx 1.3.1 converts the same model correctly, and its converter is a C++ extension that
does not need paddlepaddle for a ``.pdmodel``; but it cannot read ``inference.json``. So:

1. ``.pdmodel`` + paddle2onnx 1.x installed (``pip install --no-deps paddle2onnx==1.3.1``): call the C++
   exporter directly in a subprocess, no paddlepaddle needed (works with numpy 2).
2. paddle2onnx 2.x + paddlepaddle installed here: run it, validate, and repair the rank-mismatched
   ``Concat`` inputs with ``Unsqueeze(axes=[0])``.
3. ``.pdmodel``: a side environment with paddle2onnx 1.3.1 made by :func:`ensure_legacy_env` (on request).
4. ``inference.json``: the cached side environment :data:`side_env.PADDLE3` (paddle2onnx 2.1.0 +
   paddlepaddle 3.0.0, about 1 GB under the ncnnpass cache dir), made on first use with progress lines;
   ``$NCNNPASS_PADDLE3_PYTHON`` may name an existing one instead.
5. Otherwise :class:`ToolError` saying exactly what to install.

Every result is validated (``onnx.checker``, strict shape inference, an onnxruntime session) and
verified numerically against Paddle inference when a paddle is at hand
(:func:`ncnnpass.passes.toolchain.paddle_verify.verify_conversion`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncnnpass.ir.errors import NcnnpassError, ToolError
from ncnnpass.ir.fileio import atomic_write
from ncnnpass.ir.runtime.external import default_cache_dir, file_lock, log, run_tool
from ncnnpass.passes.measure.paddle_env import PADDLE3, Progress, ensure_side_env, ready_python
from ncnnpass.passes.onnx.ranks import tensor_ranks

from .paddle_verify import DEFAULT_ATOL, LEGACY_ENV_NAME, verify_conversion

__all__ = ["PaddleModel", "check_onnx", "ensure_legacy_env", "find_paddle_model", "find_rank_mismatched_concats",
           "paddle_to_onnx", "repair_concat_ranks", "validate_onnx", "verify_conversion"]

LEGACY_VERSION = "1.3.1"
LEGACY_PADDLE = ("paddlepaddle==2.6.2", "numpy<2")
INSTALL_HINT = (
    f"pip install --no-deps paddle2onnx=={LEGACY_VERSION}   (converts legacy inference.pdmodel models, "
    "no paddlepaddle needed), or call ncnnpass.passes.toolchain.paddle2onnx.ensure_legacy_env(); "
    "the inference.json form is converted in a side env that ncnnpass makes itself "
    f"(python -m ncnnpass.passes.measure.paddle_env paddle3: {' '.join(PADDLE3.packages)})"
)

# Runs in a subprocess: loads paddle2onnx's C++ extension by file path, so the package's __init__
# (which imports paddle) never runs. argv: model, params, out, opset, auto_upgrade.
_CPP_EXPORT = r"""
import glob, importlib.machinery, importlib.util, os, sys
spec = importlib.util.find_spec("paddle2onnx")
if spec is None or not spec.submodule_search_locations:
    sys.exit("paddle2onnx is not installed in " + sys.executable)
found = []
for loc in spec.submodule_search_locations:
    found += glob.glob(os.path.join(loc, "paddle2onnx_cpp2py_export*"))
if not found:
    sys.exit("paddle2onnx C++ extension not found")
name = "paddle2onnx.paddle2onnx_cpp2py_export"
loader = importlib.machinery.ExtensionFileLoader(name, found[0])
mod = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, found[0], loader=loader))
loader.exec_module(mod)
model, params, out, opset, upgrade = sys.argv[1:6]
data = mod.export(model, params, int(opset), upgrade == "1", True, True, True, True, {},
                  "onnxruntime", "", "", False)
if not data:
    sys.exit("paddle2onnx returned an empty model")
with open(out, "wb") as fh:
    fh.write(data)
"""

@dataclass(frozen=True)
class PaddleModel:
    """The two files of a Paddle inference model and their format (``pdmodel`` or ``json``)."""

    model_file: Path
    params_file: Path
    kind: str


def find_paddle_model(model_dir: str | os.PathLike) -> PaddleModel:
    """Locate ``inference.pdmodel``/``inference.json`` + ``inference.pdiparams`` in ``model_dir``."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ToolError(f"Paddle model directory not found: {d}")
    params = d / "inference.pdiparams"
    if not params.is_file():
        raise ToolError(f"{d} has no inference.pdiparams")
    if (d / "inference.pdmodel").is_file():
        return PaddleModel(d / "inference.pdmodel", params, "pdmodel")
    if (d / "inference.json").is_file():
        return PaddleModel(d / "inference.json", params, "json")
    raise ToolError(f"{d} has neither inference.pdmodel nor inference.json")


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def legacy_env_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory of the side venv holding paddle2onnx 1.3.1."""
    return Path(cache_dir or default_cache_dir()) / LEGACY_ENV_NAME


def _env_python(env: Path) -> Path:
    return env / "bin" / "python"


def _env_ready(env: Path, with_paddle: bool) -> bool:
    return (env / ".ncnnpass-complete").is_file() and (
        not with_paddle or (env / ".ncnnpass-with-paddle").is_file())


def ensure_legacy_env(cache_dir: str | os.PathLike | None = None, with_paddle: bool = False) -> Path:
    """Create (once) a venv with ``paddle2onnx==1.3.1`` under ``cache_dir``; return its python.

    ``with_paddle`` also installs ``paddlepaddle==2.6.2`` and ``numpy<2`` (about 130 MB) so that
    :func:`verify_conversion` can compare against Paddle inference. Safe to call from several processes.
    """
    env = legacy_env_dir(cache_dir)
    if _env_ready(env, with_paddle):
        return _env_python(env)
    with file_lock(str(env) + ".lock"):
        if _env_ready(env, with_paddle):
            return _env_python(env)
        if not (env / ".ncnnpass-complete").is_file():
            shutil.rmtree(env, ignore_errors=True)
            run_tool([sys.executable, "-m", "venv", str(env)], what="venv")
        packages = [f"paddle2onnx=={LEGACY_VERSION}"] + (list(LEGACY_PADDLE) if with_paddle else [])
        run_tool([_env_python(env), "-m", "pip", "install", "--disable-pip-version-check", "-q", *packages],
                 what="pip install (paddle2onnx legacy env)")
        (env / ".ncnnpass-complete").write_text(f"paddle2onnx=={LEGACY_VERSION}\n")
        if with_paddle:
            (env / ".ncnnpass-with-paddle").write_text(" ".join(LEGACY_PADDLE) + "\n")
    return _env_python(env)


# ---------------------------------------------------------------- validation and repair

def _load(model_or_path: Any) -> Any:
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    return onnx.load(str(model_or_path))


def validate_onnx(model_or_path: Any) -> list[str]:
    """Problems found by ``onnx.checker`` (full check), strict shape inference and onnxruntime; [] = valid."""
    import onnx

    from ncnnpass.passes.measure.onnx_runner import onnx_session

    model = _load(model_or_path)
    problems: list[str] = []
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as exc:
        problems.append(f"onnx.checker: {exc}")
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        problems.append(f"shape inference: {exc}")
    try:
        onnx_session(model)
    except NcnnpassError as exc:
        problems.append(f"onnxruntime: {exc}")
    return problems


def check_onnx(model_or_path: Any, what: str = "ONNX model") -> None:
    """Raise :class:`ToolError` listing every problem :func:`validate_onnx` finds."""
    problems = validate_onnx(model_or_path)
    if problems:
        raise ToolError(f"{what} is invalid:\n" + "\n".join(p.strip()[:2000] for p in problems))


def find_rank_mismatched_concats(model_or_path: Any) -> list[str]:
    """Names of ``Concat`` nodes whose inputs (ranks known from shape inference) differ in rank."""
    model = _load(model_or_path)
    ranks = tensor_ranks(model)
    bad = []
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Concat":
            continue
        known = {ranks[x] for x in node.input if x in ranks}
        if len(known) > 1 or known == {0}:
            bad.append(node.name or f"Concat#{i}")
    return bad


def _opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def repair_concat_ranks(model: Any) -> int:
    """Unsqueeze rank-0 inputs of rank-0/1 ``Concat`` nodes in place; return how many were fixed.

    Only Concats whose inputs all have a known rank of 0 or 1 are touched: there a scalar can only mean
    a 1-element vector (it is how paddle2onnx 2.x spells Paddle's 0-D shape pieces), so the repair keeps
    the values paddle computes. Repeats until shape inference finds nothing more to fix.
    """
    from onnx import TensorProto, helper

    fixed = 0
    used = {n.name for n in model.graph.node} | {o for n in model.graph.node for o in n.output}
    use_attr = _opset(model) < 13
    for _ in range(20):
        ranks = tensor_ranks(model)
        nodes = list(model.graph.node)
        new_nodes = []
        changed = 0
        for node in nodes:
            if node.op_type == "Concat":
                rs = [ranks.get(x) for x in node.input]
                if all(r is not None for r in rs) and 0 in rs and max(rs) <= 1:
                    for k, (inp, r) in enumerate(zip(node.input, rs, strict=True)):
                        if r != 0:
                            continue
                        base = f"{inp}__ncnnpass_unsq"
                        out, n = base, 0
                        while out in used:
                            n += 1
                            out = f"{base}{n}"
                        used.add(out)
                        if use_attr:
                            new_nodes.append(helper.make_node("Unsqueeze", [inp], [out], name=out, axes=[0]))
                        else:
                            axes = out + "_axes"
                            used.add(axes)
                            new_nodes.append(helper.make_node(
                                "Constant", [], [axes], name=axes,
                                value=helper.make_tensor(axes, TensorProto.INT64, [1], [0])))
                            new_nodes.append(helper.make_node("Unsqueeze", [inp, axes], [out], name=out))
                        node.input[k] = out
                        changed += 1
            new_nodes.append(node)
        if not changed:
            break
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        fixed += changed
    return fixed


def drop_identities(model: Any) -> int:
    """Bypass ``Identity`` nodes (paddle2onnx 2.x leaves them, e.g. before the CTC Softmax); return how many.

    An Identity whose output is a graph output stays, and so does every one in a model with subgraphs
    (their bodies may name the output). Consumers read the Identity's input instead.
    """
    nodes = list(model.graph.node)
    if any(a.type in (5, 10) for n in nodes for a in n.attribute):  # GRAPH / GRAPHS attributes
        return 0
    outputs = {o.name for o in model.graph.output}
    rename = {n.output[0]: n.input[0] for n in nodes
              if n.op_type == "Identity" and n.domain in ("", "ai.onnx") and n.output[0] not in outputs}
    if not rename:
        return 0

    def source(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    kept = [n for n in nodes if not (n.op_type == "Identity" and n.output[0] in rename)]
    for n in kept:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = source(name)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    dropped = {v.name for v in model.graph.value_info if v.name in rename}
    if dropped:
        keep_vi = [v for v in model.graph.value_info if v.name not in dropped]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep_vi)
    return len(rename)


# ---------------------------------------------------------------- conversion routes

def _cpp_export(python: str | os.PathLike, pm: PaddleModel, out: Path, opset: int | None) -> None:
    run_tool([python, "-c", _CPP_EXPORT, pm.model_file, pm.params_file, out,
              str(opset or 9), "0" if opset else "1"], what=f"paddle2onnx {LEGACY_VERSION} (C++ exporter)")


def _cli_export(pm: PaddleModel, out: Path, opset: int | None, python: str | os.PathLike | None = None,
                what: str | None = None) -> None:
    """paddle2onnx 2.x's command line, in ``python`` (default: this one)."""
    cmd: list[str | os.PathLike] = [
        python or sys.executable, "-m", "paddle2onnx.command", "--model_dir", pm.model_file.parent,
        "--model_filename", pm.model_file.name, "--params_filename", pm.params_file.name,
        "--save_file", out]
    if opset:
        cmd += ["--opset_version", str(opset)]
    run_tool(cmd, what=what or f"paddle2onnx {_installed_version('paddle2onnx')}",
             env={**os.environ, "GLOG_minloglevel": "2"})


def _paddle3_route(cache_dir: str | os.PathLike | None, progress: Progress | None) -> tuple[str, Any]:
    """The ``inference.json`` route through the PADDLE3 side env (made now when missing)."""
    python = ensure_side_env(PADDLE3, cache_dir, progress)

    def side(pm: PaddleModel, o: Path, op: int | None) -> None:
        _cli_export(pm, o, op, python, what=f"paddle2onnx in {python.parent.parent}")

    return f"side env {python.parent.parent}", side


def _routes(pm: PaddleModel, cache_dir: str | os.PathLike | None, create_env: bool,
            progress: Progress | None = None) -> list[tuple[str, Any]]:
    routes: list[tuple[str, Any]] = []
    version = _installed_version("paddle2onnx")
    if pm.kind == "pdmodel" and version and version.startswith("1."):
        routes.append((f"paddle2onnx {version} C++ exporter", lambda pm, o, op: _cpp_export(sys.executable, pm, o, op)))
    if version and not version.startswith(("0.", "1.")) and _has_module("paddle"):
        routes.append((f"paddle2onnx {version} + paddle", _cli_export))
    if pm.kind == "pdmodel":
        env = legacy_env_dir(cache_dir)
        if _env_ready(env, False) or create_env:
            def side(pm: PaddleModel, o: Path, op: int | None) -> None:
                _cpp_export(ensure_legacy_env(cache_dir), pm, o, op)
            routes.append((f"side env {env}", side))
    elif not routes or ready_python(PADDLE3, cache_dir) is not None:
        routes.append(_paddle3_route(cache_dir, progress))
    return routes


def _cache_key(pm: PaddleModel, opset: int | None) -> str:
    digest = hashlib.sha256(f"{PADDLE3.name}|opset={opset}|repair-v1|no-identity".encode())
    for f in (pm.model_file, pm.params_file):
        digest.update(b"\0" + f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:32]


def _cached_onnx(pm: PaddleModel, opset: int | None, cache_dir: str | os.PathLike | None) -> Path:
    """Where a valid ONNX converted from an ``inference.json`` model is kept (by content hash)."""
    return Path(cache_dir or default_cache_dir()) / "onnx-from-paddle" / f"{_cache_key(pm, opset)}.onnx"


def paddle_to_onnx(model_dir: str | os.PathLike, out_path: str | os.PathLike, opset: int | None = None, *,
                   cache_dir: str | os.PathLike | None = None, create_env: bool = False,
                   verify: bool = True, atol: float = DEFAULT_ATOL, progress: Progress | None = None) -> Path:
    """Convert the Paddle inference model in ``model_dir`` to a validated ONNX at ``out_path``.

    Tries the routes in the module docstring in order and keeps the first result that validates
    (after the Concat-rank repair if needed). ``create_env`` lets it build the paddle2onnx 1.3.1 side
    venv under ``cache_dir`` for a ``.pdmodel``; an ``inference.json`` model makes the paddle 3 side
    env when needed (progress lines to ``progress``, default stderr; one-line :class:`ToolError` naming
    the pip command when that fails). With ``verify`` the result is checked by :func:`verify_conversion`
    (``atol``: max absolute difference to Paddle inference).
    """
    import onnx

    pm = find_paddle_model(model_dir)
    out = Path(out_path)
    if not out.parent.is_dir():
        raise ToolError(f"output directory does not exist: {out.parent}")
    cached = _cached_onnx(pm, opset, cache_dir) if pm.kind == "json" else None
    if cached is not None and cached.is_file():
        # paddle2onnx 2.x takes a minute or more: a valid result for the same files is reused.
        atomic_write(out, cached.read_bytes())
        log.info("paddle2onnx: reusing %s (converted earlier from the same files) for %s", cached, pm.model_file)
        if verify:
            verify_conversion(model_dir, out, atol=atol, cache_dir=cache_dir)
        return out
    routes = _routes(pm, cache_dir, create_env, progress)
    if not routes:
        raise ToolError(f"cannot convert {pm.model_file}: no usable paddle2onnx; {INSTALL_HINT}")
    failures = []
    for name, convert in routes:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".p2o-", dir=out.parent) as tmp:
            raw = Path(tmp) / "model.onnx"
            try:
                convert(pm, raw, opset)
            except ToolError as exc:
                failures.append(f"{name}: {exc}")
                log.warning("paddle2onnx route %s failed: %s", name, exc)
                continue
            model = onnx.load(str(raw))
            problems = validate_onnx(model)
            if problems:
                bad = find_rank_mismatched_concats(model)
                n = repair_concat_ranks(model) if bad else 0
                log.warning("%s produced an invalid ONNX (%d rank-mismatched Concat: %s); repaired %d input(s)",
                            name, len(bad), ", ".join(bad[:8]), n)
                problems = validate_onnx(model) if n else problems
            if problems:
                failures.append(f"{name}: invalid ONNX: " + "; ".join(p[:300] for p in problems))
                continue
            if drop_identities(model) and validate_onnx(model):
                failures.append(f"{name}: invalid after removing Identity nodes")
                continue
            data = model.SerializeToString()
            atomic_write(out, data)
        log.info("paddle2onnx via %s: %s -> %s in %.2fs", name, pm.model_file, out, time.perf_counter() - start)
        if verify:
            verify_conversion(model_dir, out, atol=atol, cache_dir=cache_dir)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, data)
        return out
    raise ToolError(f"could not convert {pm.model_file} to a valid ONNX:\n" + "\n".join(failures)
                    + f"\nfix: {INSTALL_HINT}")
