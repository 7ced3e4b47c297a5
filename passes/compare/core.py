"""``compare_models``: run ONNX (onnxruntime) and ncnn side by side, map blobs, measure, attribute."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.runtime import make_options

from . import analysis
from .fixes import apply_advice
from .gpu_advice import advise_gpu, split_fields
from .inputs import PreparedInput, prepare_input
from .mapping import MappingResult, map_blobs
from .metrics import compute_metrics
from .ncnn_side import NcnnModel, NcnnRunError, OptionSet, parse_option_sets
from .reference import OnnxReference
from .report import Attribution, CompareReport, OptionRun, fp16_split

__all__ = ["compare_models", "compare_graph", "ModelMismatchError"]

Progress = Callable[[str], None]
MIN_COVERAGE = 0.5  # below this the two files are not the same model


class ModelMismatchError(NcnnpassError):
    """The ncnn model does not correspond to the ONNX model (or not at this input shape)."""


def _noop(_: str) -> None:
    pass


def _kind(onnx_path: str) -> str | None:
    """rec, det or cls from the ONNX (its output's rank, an inference.yml next to it), else None."""
    from ncnnpass.passes.measure.model_info import read_model_info

    try:
        return read_model_info(onnx_path).kind
    except Exception:  # noqa: BLE001 - a model that cannot tell its kind gets the recognition default
        return None


def _fmt_shape(shape) -> str:
    return "×".join(map(str, shape))


def compare_models(onnx_path: str | os.PathLike, param: str | os.PathLike, bin: str | os.PathLike | None = None, *,
                   input: str | os.PathLike | np.ndarray | None = None, shape: tuple[int, ...] | None = None,
                   seed: int = 0, options: Iterable[str | OptionSet] | None = None, isolated: bool = True,
                   fix: bool = False, thresholds: dict[str, float] | None = None, num_threads: int | None = 1,
                   keep_tensors: bool = False, progress: Progress | None = None, target: str | None = None,
                   workers: int = 2) -> CompareReport:
    """Compare ``onnx_path`` with the ncnn model ``param``/``bin`` layer by layer.

    ``input``: ``None`` (seeded uniform [-1, 1]), a ``.npy`` path, an image path (PaddleOCR rec
    preprocessing) or an array. ``options``: option-set names (``default``, ``fp32``, ``no-packing``,
    ``no-sgemm-winograd``, ``bf16``, ``all``) or ``NAME:field=value,...``; default: all.
    With ``fix=True`` the advice is applied to a copy of the graph and the comparison is repeated
    (``report.fixed``). ``keep_tensors`` keeps every tensor for :func:`save_npz`. ``target``: where ncnn
    runs (``x86``, ``isolated``, ``arm`` = the emulated phone, whose sweep is default/fp16-storage/fp32,
    ``vulkan`` = the GPU on lavapipe, whose sweep adds fp16-packed and whose advice names the GPU-valid masks);
    ``workers``: parallel workers for the isolated runs on a worker target.
    """
    say = progress or _noop
    t0 = time.perf_counter()
    onnx_path, param = os.fspath(onnx_path), os.fspath(param)
    bin = os.fspath(bin) if bin is not None else None
    for path, what in ((onnx_path, "ONNX model"), (param, "param file"), (bin, "bin file")):
        if path is not None and not os.path.isfile(path):
            raise NcnnpassError(f"{what} not found: {path}")
    say(f"loading {os.path.basename(onnx_path)} and {os.path.basename(param)}")
    ref = OnnxReference(onnx_path, num_threads=num_threads)
    graph = Graph.load(param, bin)
    if len(ref.input_names) != 1 or len(graph.inputs) != 1:
        raise ModelMismatchError(f"only single-input models can be compared (ONNX inputs: {ref.input_names}, "
                                 f"ncnn inputs: {graph.inputs})")
    dims = ref.input_dims[ref.input_names[0]]
    # the family default fills open dims of a random input only: the ONNX is read for its kind just then
    kind = _kind(onnx_path) if input is None and shape is None and None in dims[1:] else None
    prepared = prepare_input(input, dims, graph, shape, seed, kind)
    say(f"input: {prepared.source}, shape {_fmt_shape(prepared.array.shape)}")
    t1 = time.perf_counter()
    say(f"onnxruntime: running with all {len(ref.order)} tensors exposed (optimizations off)")
    feeds = {ref.input_names[0]: prepared.array}
    ref_vals = ref.run(feeds)
    reference_check = ref.check_optimized(feeds, ref_vals)
    t2 = time.perf_counter()
    option_sets = _option_sets(options, target)
    report = compare_graph(ref, ref_vals, graph, prepared, option_sets, isolated=isolated, thresholds=thresholds,
                           num_threads=num_threads, keep_tensors=keep_tensors, progress=say,
                           onnx_path=onnx_path, param=param, bin=bin, target=target, workers=workers)
    report.timings = {"load": t1 - t0, "onnxruntime": t2 - t1, **report.timings}
    report.reference_check = reference_check
    if fix:
        actionable = [a for a in report.advice if a.action in ("gap-fc-to-conv", "keep-fp32")]
        if report.target.startswith("arm") and any(a.action == "keep-fp32" for a in actionable):
            # masks next to fp16 layers crash or corrupt ncnn on ARM: the phone repair search places them
            actionable = [a for a in actionable if a.action != "keep-fp32"]
            report.fix_log.append("keep-fp32 not applied on the phone (unsafe fp16/fp32 boundaries crash ncnn on "
                                  f"ARM): use ncnnpass run --pipeline repair --target {report.target}")
        if not actionable:
            report.fix_log.append("nothing to fix: no pass applies to what was found")
        else:
            t3 = time.perf_counter()
            say("--fix: applying " + ", ".join(a.action for a in actionable))
            fixed_graph, log = apply_advice(graph, actionable, tuple(prepared.array.shape[1:]))
            report.fix_log.extend(log)
            fix_sets = [o for o in option_sets if o.name == "default"]
            fixed = compare_graph(ref, ref_vals, fixed_graph, prepared, fix_sets, isolated=isolated,
                                  thresholds=thresholds, num_threads=num_threads, keep_tensors=keep_tensors,
                                  progress=say, onnx_path=onnx_path, param=param + " (fixed)", bin=bin,
                                  prior=report.mapping, target=target, workers=workers)
            fixed.title = "after --fix"
            fixed.graph = fixed_graph  # type: ignore[attr-defined]
            report.fixed = fixed
            report.timings["fix"] = time.perf_counter() - t3
    report.timings["total"] = time.perf_counter() - t0
    if keep_tensors:
        report.tensors["onnx"] = ref_vals  # type: ignore[attr-defined]
    return report


def _option_sets(options: Iterable[str | OptionSet] | None, target: str | None = None) -> list[OptionSet]:
    """Option sets from names/specs and/or OptionSet objects; ``default`` always first."""
    items = list(options or [])
    specs = [o for o in items if isinstance(o, str)]
    sets = parse_option_sets(specs, target) if specs or not items else []
    for o in items:
        if isinstance(o, OptionSet) and all(s.name != o.name for s in sets):
            sets.append(o)
    if all(s.name != "default" for s in sets):
        sets.insert(0, OptionSet.preset("default"))
    return sorted(sets, key=lambda s: s.name != "default")


def _mapping_error(graph: Graph, mapping: MappingResult, ref: OnnxReference, values: dict[str, np.ndarray],
                   ref_vals: dict[str, np.ndarray], param: str, onnx_path: str, shape: tuple[int, ...]) -> str | None:
    """A one-line explanation when the ncnn model is not (at this input shape) a conversion of the ONNX model."""
    by_blob = mapping.by_blob()
    outs = [b for b in graph.outputs if b in by_blob]
    unmapped_outs = [b for b in outs if not by_blob[b].mapped]
    if mapping.coverage >= MIN_COVERAGE and not (outs and len(unmapped_outs) == len(outs)):
        return None
    counts = f"only {len(mapping.mapped)} of {len(mapping.blobs)} ncnn blobs match an ONNX tensor"
    if unmapped_outs:
        shapes = "; ".join(f"ncnn {b} {_fmt_shape(values[b].shape)}" for b in unmapped_outs[:2] if b in values)
        onnx_out = "; ".join(f"ONNX {o} {_fmt_shape(ref_vals[o].shape)}" for o in ref.output_names[:2] if o in ref_vals)
        counts += f" and no output does ({shapes} vs {onnx_out})"
    computed = [m for m in mapping.blobs if m.layer is not None]
    first_bad = next((k for k, m in enumerate(computed) if not m.mapped), None)
    if first_bad is not None and first_bad >= max(3, len(computed) // 5):
        m = computed[first_bad]
        layer = graph.layer(m.layer) if m.layer else None
        params = " ".join(layer.params.tokens()) if layer is not None else ""
        return (f"{os.path.basename(param)} and {os.path.basename(onnx_path)} agree for the first {first_bad} blobs, "
                f"then stop matching at layer {m.layer} ({m.layer_type}{' ' + params if params else ''}) with input "
                f"{_fmt_shape(shape)}: {counts}. Was the .param converted for another input shape (pnnx inputshape)? "
                "Try --shape")
    return f"{os.path.basename(param)} does not look like a conversion of {os.path.basename(onnx_path)}: {counts}"


def compare_graph(ref: OnnxReference, ref_vals: dict[str, np.ndarray], graph: Graph, prepared: PreparedInput,
                  option_sets: list[OptionSet], *, isolated: bool = True, thresholds: dict[str, float] | None = None,
                  num_threads: int | None = 1, keep_tensors: bool = False, progress: Progress | None = None,
                  onnx_path: str = "", param: str = "", bin: str | None = None,
                  prior: MappingResult | None = None, target: str | None = None, workers: int = 2) -> CompareReport:
    """Compare an in-memory graph against precomputed onnxruntime tensors.

    Blobs are mapped on a full-precision run, or, with ``prior`` (the mapping of the graph this one was
    rewritten from), on the first option set's run: unchanged blobs keep their mapping and only the
    blobs a rewrite created are mapped by value.
    """
    say = progress or _noop
    th = {**analysis.THRESHOLDS, **(thresholds or {})}
    model = NcnnModel(graph, num_threads=num_threads, target=target, workers=workers)
    try:
        report = _compare_on(model, ref, ref_vals, graph, prepared, option_sets, isolated, th, keep_tensors, say,
                             onnx_path, param, bin, prior)
    finally:
        model.close()
    report.target = model.target
    return report


def _compare_on(model: NcnnModel, ref: OnnxReference, ref_vals: dict[str, np.ndarray], graph: Graph,
                prepared: PreparedInput, option_sets: list[OptionSet], isolated: bool, th: dict[str, float],
                keep_tensors: bool, say: Progress, onnx_path: str, param: str, bin: str | None,
                prior: MappingResult | None) -> CompareReport:
    timings: dict[str, float] = {}
    in_blob = graph.inputs[0]
    x = prepared.array[0] if prepared.array.shape[0] == 1 else prepared.array
    feeds = {in_blob: x}
    t = time.perf_counter()
    model.preflight()  # a missing device or runtime is its own error, not a model mismatch
    full = OptionSet.preset("fp32") if prior is None else option_sets[0]
    say("ncnn: full-precision run for blob mapping" if prior is None else f"ncnn: {full.name} run for blob mapping")
    net = model.load(full)
    try:
        full_vals = model.run_all(net, feeds)
    except NcnnRunError as exc:
        raise ModelMismatchError(f"{exc} on input {_fmt_shape(x.shape)}: the .param may not be this ONNX model, "
                                 "or was converted for another input shape (pnnx inputshape); try --shape") from None
    constants = ref.constant_values()
    mapping = map_blobs(graph, model.blob_order, full_vals, ref, ref_vals, known=prior, constants=constants)
    ref_vals = {**{m.tensor: constants[m.tensor] for m in mapping.mapped if m.how == "value (constant)"},
                **ref_vals}
    problem = _mapping_error(graph, mapping, ref, full_vals, ref_vals, param, onnx_path, tuple(x.shape))
    if problem:
        raise ModelMismatchError(problem)
    timings["mapping"] = time.perf_counter() - t
    say(f"mapped {len(mapping.mapped)}/{len(mapping.blobs)} ncnn blobs to ONNX tensors "
        f"({', '.join(f'{k}: {v}' for k, v in mapping.counts().items())})")

    by_blob = mapping.by_blob()
    ref_in_ncnn = {m.blob: m.layout.onnx_to_ncnn(ref_vals[m.tensor])  # type: ignore[union-attr]
                   for m in mapping.mapped if m.layout is not None and m.tensor is not None}
    iso_layers = []
    for ly in graph.layers:
        if ly.type == "Input" or not ly.inputs:
            continue
        fed = [b for b in ly.inputs if b not in ref_in_ncnn]
        if all(_constant_blob(graph, b) for b in fed) and any(b in by_blob and by_blob[b].mapped for b in ly.outputs):
            iso_layers.append(ly)  # inputs fed from onnxruntime; unmapped constants (MemoryData) computed by ncnn
    seq_len = _seq_len(graph, mapping, ref_vals)
    dictionary = ref.character_list()

    stats: dict = {}
    runs: dict[str, OptionRun] = {}
    all_values: dict[str, dict[str, np.ndarray]] = {}
    earlier: dict[str, dict[str, np.ndarray]] = {}  # every blob of each option set run so far
    for k, opt in enumerate(option_sets, 1):
        t = time.perf_counter()
        say(f"[{k}/{len(option_sets)}] ncnn {opt.name} ({opt.description})")
        if opt == full or (prior is None and opt.dict == full.dict):
            onet, vals = net, full_vals
        else:
            onet = model.load(opt)
            try:
                vals = model.run_all(onet, feeds)
            except NcnnRunError as exc:
                raise ModelMismatchError(f"under option set {opt.name!r}: {exc}") from None
        same = None if opt.name == "default" else _identical_run(vals, earlier)
        if same is not None:  # same kernels as an earlier set: the isolated runs would be identical too
            base = runs[same]
            run = OptionRun(opt, list(base.rows), dict(base.outputs), list(base.rec),
                            identical_to_default=same == "default", isolated_done=base.isolated_done,
                            identical_to=same)
        else:
            iso_vals = _isolated(model, onet, iso_layers, ref_in_ncnn) if isolated else None
            rows = analysis.build_rows(graph, mapping, vals, iso_vals, ref_vals, prepared, seq_len, th, stats)
            outputs = {r.blob: r.cum for r in rows if r.blob in graph.outputs}
            run = OptionRun(opt, rows, outputs,
                            analysis.rec_checks(graph, mapping, vals, ref_vals, dictionary, prepared),
                            isolated_done=isolated)
        earlier[opt.name] = vals
        del onet
        run.seconds = time.perf_counter() - t
        runs[opt.name] = run
        if keep_tensors:
            all_values[opt.name] = vals
    att = analysis.attribute(graph, runs, th)
    gpu = model.target == "vulkan"
    split = fp16_split(runs, th) if gpu else None
    if att.cause and split is not None:  # on the GPU the split names the fields (no extra probe runs)
        att.fields = split_fields(split) or att.fields
    elif att.cause and isolated:
        att.fields = _refine_fields(model, runs[att.cause].option, att, iso_layers, ref_in_ncnn, runs["default"], th)
    att.summary = analysis.summarize(runs["default"], att, runs)
    advice = advise_gpu(graph, att, runs, split) if gpu else analysis.advise(graph, att, runs, model.target)
    report = CompareReport(onnx_path, param, bin, prepared, mapping, runs, att, advice, timings, thresholds=th)
    if gpu:
        report.cpu_fallback = model.cpu_fallback(runs["default"].option)
    report.tensors = {"ncnn": all_values} if keep_tensors else {}  # type: ignore[attr-defined]
    report.graph = graph  # type: ignore[attr-defined]
    return report


def _identical_run(vals: dict[str, np.ndarray], earlier: dict[str, dict[str, np.ndarray]]) -> str | None:
    """The first earlier option set whose every blob equals ``vals`` bit for bit."""
    for name, other in earlier.items():
        if all(np.array_equal(vals[b], other[b]) for b in vals if b in other):
            return name
    return None


def _seq_len(graph: Graph, mapping: MappingResult, ref_vals: dict[str, np.ndarray]) -> int | None:
    """Timesteps of a recognition output (1, T, classes), used to find the width axis of sequence tensors."""
    by_blob = mapping.by_blob()
    for b in graph.outputs:
        m = by_blob.get(b)
        if m is not None and m.tensor is not None:
            r = ref_vals[m.tensor]
            if r.ndim == 3 and r.shape[0] == 1:
                return int(r.shape[1])
    return None


def _constant_blob(graph: Graph, blob: str) -> bool:
    b = graph.blobs.get(blob)
    return b is not None and b.producer is not None and not b.producer.inputs and b.producer.type != "Input"


def _isolated(model: NcnnModel, net, layers, ref_in_ncnn: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each layer run alone, fed the onnxruntime tensors of its inputs (batched on a worker target)."""
    out: dict[str, np.ndarray] = {}
    jobs = [({b: ref_in_ncnn[b] for b in ly.inputs if b in ref_in_ncnn}, ly.outputs) for ly in layers]
    for res in model.run_layers(net, jobs):
        if res:
            out.update(res)
    return out


def probe_graph(graph: Graph, names: Iterable[str]) -> Graph:
    """A small graph with only the named layers, each input that they do not produce fed by an Input
    layer: loading it is cheap (no winograd transforms of unrelated convolutions)."""
    keep = set(names)
    g = graph.copy()
    for ly in list(g.layers):
        if ly.name not in keep:
            g.remove(ly, reconnect=False)
    need = [b.name for b in g.blobs.values() if b.producer is None and b.consumers]
    for k, b in enumerate(need):
        g.add_layer("Input", g.unique_layer_name(f"probe_input_{k}"), [], [b], index=k)
    return g


def _refine_fields(model: NcnnModel, cause: OptionSet, att: Attribution, iso_layers, ref_in_ncnn,
                   default: OptionRun, th: dict[str, float]) -> list[str]:
    """Which single ncnn.Option field of the cause set removes the carriers' error on its own."""
    defaults = make_options()
    changed = [(k, v) for k, v in cause.fields if getattr(defaults, k) != v]
    if len(changed) <= 1:
        return [k for k, _ in changed]
    carriers = {c.layer for c in att.carriers}
    layers = [ly for ly in iso_layers if ly.name in carriers]
    if not layers:
        return [k for k, _ in changed]
    rows = {r.layer: r for r in default.rows if r.layer in carriers}
    probe = NcnnModel(probe_graph(model.graph, [ly.name for ly in layers]), num_threads=model.num_threads,
                      target=model.target, workers=model.workers)
    probe.share_sessions(model)
    found = []
    for k, v in changed:
        net = probe.load(OptionSet(f"only-{k}", ((k, v),)))
        iso = _isolated(probe, net, [probe.graph.layer(ly.name) for ly in layers], ref_in_ncnn)
        ok = True
        for r in rows.values():
            ref = ref_in_ncnn.get(r.blob)
            if r.iso is None or r.blob not in iso or ref is None:
                continue
            sc = compute_metrics(iso[r.blob], ref).scaled
            if not (sc <= th["divergence"] or sc * th["fix_factor"] <= r.iso.scaled):
                ok = False
                break
        if ok:
            found.append(k)
    return found or [k for k, _ in changed]
