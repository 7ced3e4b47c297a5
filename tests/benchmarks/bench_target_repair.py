"""Benchmark: the phone repair judged on what users see, per model, on the emulated A76 and on Vulkan.

    python tests/benchmarks/bench_target_repair.py search MODEL --target arm|vulkan [--held-out 200]
    python tests/benchmarks/bench_target_repair.py rank MODEL [--lines 8]      # proxies vs the emulated A76
    python tests/benchmarks/bench_target_repair.py floor MODEL                  # the reference's own noise floor
    python tests/benchmarks/bench_target_repair.py paths MODEL --target arm     # the chosen file on x86 and the GPU
    python tests/benchmarks/bench_target_repair.py table                        # README rows from the JSONs

MODEL: v3, v4, v5 (rec), v3det, v4det, v5det (det), v2cls. ``search`` runs ``repair`` (the x86 passes) and
then :func:`ncnnpass.passes.precision.repair_for_target` as ``run --pipeline repair --target T`` does (its
wall time is the search time), then measures the chosen placement on held-out data the search never saw
(``--held-out`` lines, default 200; det pages, default 30) on the target, and the model as given there
(``--no-before`` skips it), and the x86 ``repair`` output on the same data. ``rank`` runs the placements of a
lavapipe search (its Pareto points) on calibration lines on the emulated A76, on lavapipe and on x86 (fp16
storage rounded by Cast layers), and gives the rank agreement (Spearman, Kendall) of the task score and of
the mean confidence change. Results: ``/tmp/bench_target_repair/*.json`` and the curve PNGs; the machine's
load average is recorded (the machine is shared). Not a test: hours of emulation in all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from rank_agreement import kendall, spearman  # noqa: E402

OUT = Path("/tmp/bench_target_repair")
TABLE_SEED = 1  # the search draws its data with seed 0
MODELS = ("v3", "v4", "v5", "v3det", "v4det", "v5det", "v2cls")


def _say(msg: str) -> None:
    print(msg, flush=True)


class Load:
    """The 1-minute load average sampled every 10 s while a block runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self) -> Load:
        def loop() -> None:
            while not self._stop.is_set():
                self.samples.append(os.getloadavg()[0])
                self._stop.wait(10)

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def describe(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": float(np.mean(s)), "max": float(max(s)), "cores": os.cpu_count()}


def load_model(name: str):
    """(graph after the x86 ``repair`` pipeline, onnx path, model info, paddle dir or None)."""
    import fixtures

    from ncnnpass.ir import Graph
    from ncnnpass.passes import apply_passes
    from ncnnpass.passes.measure.model_info import read_model_info

    model_dir = None
    if name == "v3":
        onnx, pb = fixtures.ppocrv3_rec_onnx(), fixtures.ppocrv3_rec_ncnn_any_width(False)
    elif name == "v4":
        onnx, pb = fixtures.ppocrv4_rec_onnx(), fixtures.ppocrv4_rec_ncnn_any_width(False)
    elif name == "v5":
        onnx, pb, model_dir = (fixtures.ppocrv5_rec_onnx(), fixtures.converted_pnnx("ppocrv5-rec"),
                               fixtures.ppocrv5_rec_paddle_dir())
    elif name == "v3det":
        onnx, pb = fixtures.ppocrv3_det_onnx(), fixtures.ppocrv3_det_ncnn_any_size(False)
    elif name == "v4det":
        onnx, pb, model_dir = (fixtures.ppocrv4_det_onnx(), fixtures.converted_pnnx("ppocrv4-det"),
                               fixtures.ppocrv4_det_paddle_dir())
    elif name == "v5det":
        onnx, pb, model_dir = (fixtures.ppocrv5_det_onnx(), fixtures.converted_pnnx("ppocrv5-det"),
                               fixtures.ppocrv5_det_paddle_dir())
    elif name == "v2cls":
        onnx, pb, model_dir = (fixtures.ppocrv2_cls_onnx(), fixtures.converted_pnnx("ppocrv2-cls"),
                               fixtures.ppocrv2_cls_paddle_dir())
    else:
        raise SystemExit(f"unknown model {name!r} ({', '.join(MODELS)})")
    info = read_model_info(model_dir or onnx, onnx)
    if info.kind == "rec" and not info.dictionary:  # v4's paddle2onnx ONNX carries none
        from ncnnpass.passes.measure.ctc_decode import read_dictionary

        info.dictionary = read_dictionary(fixtures.ppocr_keys_v1())
    g = Graph.load(*map(str, pb))
    apply_passes(g, "repair", input_shape=info.input_shape)
    return g, str(onnx), info, model_dir


def _counts(info, args) -> tuple[int, int]:
    held = args.held_out or (30 if info.kind == "det" else 200)
    return 1, held


def cmd_search(args) -> dict:
    from ncnnpass.ir.runtime import TargetPool
    from ncnnpass.passes.precision import Criteria, repair_for_target
    from ncnnpass.passes.precision.evaluator import Evaluator, prepare_parts, reference_outputs
    from ncnnpass.passes.precision.pareto import write_curve
    from ncnnpass.passes.precision.placement import Placement, existing_placement

    g, onnx, info, model_dir = load_model(args.model)
    criteria = Criteria(conf_tolerance=args.tolerance)
    with Load() as load_search:
        t0 = time.perf_counter()
        res = repair_for_target(g, args.target, onnx=onnx, info=info, criteria=criteria, budget=args.budget,
                                proxy=args.proxy, model_dir=model_dir, progress=_say)
        search_s = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / f"search-{args.model}-{args.target}"
    chosen_pt = next((p for p in res.search.points if p.placement == res.search.chosen), None)
    write_curve(stem.with_name(stem.name + "-curve"), res.kind, res.search.points, chosen_pt,
                threshold=args.tolerance if res.kind == "rec" else None,
                title=f"{args.model} on {args.target}: fidelity vs fp16 share (calibration, searched on "
                      f"{res.searched_on})")
    out = {"model": args.model, "target": args.target, "search_seconds": search_s, "load_search": load_search.describe(),
           "result": res.to_dict()}
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str))
    # held-out data the search never saw: the held-out part of the built-in data drawn with another seed
    _, held = _counts(info, args)
    parts = prepare_parts(info, calibration=1, held_out=held, seed=TABLE_SEED, model_dir=model_dir)
    part = parts["held-out"]
    part.references = reference_outputs(part.inputs, onnx=onnx)
    _say(f"held-out for the table: {len(part)} {'pages' if info.kind == 'det' else 'lines'} (seed {TABLE_SEED})")
    chosen = existing_placement(g).merged(res.placement)
    rows = {}
    with Load() as load_eval:
        with TargetPool("isolated", 1) as pool:  # the x86 repair output, default options
            ev = Evaluator(g, info.kind, {"held-out": part}, pool, criteria=criteria, dictionary=info.dictionary)
            rows["x86 repair"] = ev.evaluate([existing_placement(g)], "held-out")[0].to_dict()
        with TargetPool(args.target, 2) as pool:
            ev = Evaluator(g, info.kind, {"held-out": part}, pool, criteria=criteria, dictionary=info.dictionary,
                           progress=_say)
            t1 = time.perf_counter()
            rows["chosen"] = ev.evaluate([chosen], "held-out")[0].to_dict()
            if not args.no_before:
                n = args.before_lines or (48 if args.target.startswith("arm") else None)
                rows["as given"] = ev.evaluate([existing_placement(g)], "held-out", n)[0].to_dict()
            eval_s = time.perf_counter() - t1
            # the Pareto curve on these held-out lines (what the calibration curve costs on typical data)
            k = args.curve_points if args.curve_points >= 0 else (6 if args.target == "vulkan" else 0)
            curve = []
            if k:
                pts = sorted({p.placement: p for p in res.search.points}.values(), key=lambda p: p.fp16_share)
                picks = list({id(pts[round(i * (len(pts) - 1) / max(k - 1, 1))]): pts[round(i * (len(pts) - 1)
                              / max(k - 1, 1))] for i in range(k)}.values())
                base = existing_placement(g)
                verdicts = ev.evaluate([base.merged(p.placement) for p in picks], "held-out")
                curve = [{"label": p.label, "fp16_share": p.fp16_share, "calibration": p.verdict.to_dict(),
                          "held_out": v.to_dict()} for p, v in zip(picks, verdicts, strict=True)]
                for c in curve:
                    _say(f"  held-out curve: {100 * c['fp16_share']:.1f}% fp16: "
                         f"{c['held_out']['numbers'].get('identical', c['held_out']['numbers'].get('f'))} "
                         f"{c['held_out']['numbers'].get('max_conf_change', '')}")
    out.update({"held_out": len(part), "table_seed": TABLE_SEED, "rows": rows, "eval_seconds": eval_s,
                "held_out_curve": curve,
                "load_eval": load_eval.describe(), "fp16_share": res.fp16_share,
                "placement": Placement(res.placement.items).describe()})
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str))
    if curve and info.kind == "rec":
        _plot_held_out(stem.with_name(stem.name + "-heldout.png"), curve, args, len(part))
    _say(json.dumps({k: v for k, v in out.items() if k != "result"}, indent=1, default=str))
    return out


def _plot_held_out(path: Path, curve: list, args, lines: int) -> None:
    """Strings identical and the largest confidence change on the held-out lines against the fp16 share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [100 * c["fp16_share"] for c in curve]
    ident = [100 * c["held_out"]["numbers"]["identical_share"] for c in curve]
    conf = [max(c["held_out"]["numbers"]["max_conf_change"], 1e-7) for c in curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(x, ident, "o-", color="tab:blue", label="strings identical (%)")
    ax.axhline(99.5, color="tab:blue", ls=":", lw=0.8)
    ax.set_xlabel("MACs in fp16 (%)")
    ax.set_ylabel("strings identical (%)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(x, conf, "s--", color="tab:red", label="largest confidence change")
    ax2.axhline(args.tolerance, color="tab:red", ls=":", lw=0.8)
    ax2.set_yscale("log")
    ax2.set_ylabel("largest confidence change", color="tab:red")
    ax.set_title(f"{args.model} on {args.target}: Pareto points on {lines} held-out lines", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_rank(args) -> dict:
    """Rank agreement of proxies with the emulated A76 over the placements of a lavapipe search (the Pareto
    points of ``search MODEL --target vulkan`` when its JSON exists, else a search run here)."""
    from ncnnpass.ir.runtime import TargetPool
    from ncnnpass.passes.precision import Criteria, repair_for_target
    from ncnnpass.passes.precision.evaluator import Evaluator, prepare_parts, reference_outputs, stressed
    from ncnnpass.passes.precision.placement import Placement
    from ncnnpass.passes.precision.proxies import fp16_rounded

    g, onnx, info, model_dir = load_model(args.model)
    criteria = Criteria(conf_tolerance=args.tolerance)
    src = OUT / f"search-{args.model}-vulkan.json"
    if src.exists():
        pts = json.loads(src.read_text())["result"]["search"]["points"]
        cands = [(p["fp16_share"], p["label"], Placement.of(p["placement"])) for p in pts]
    else:
        res = repair_for_target(g, "vulkan", onnx=onnx, info=info, criteria=criteria, budget=args.budget,
                                model_dir=model_dir, random_check=False, progress=_say)
        cands = [(p.fp16_share, p.label, p.placement) for p in res.search.points]
    uniq: dict = {}
    for share, label, pl in sorted(cands, key=lambda c: c[0]):
        uniq.setdefault(pl, (share, label))
    ordered = list(uniq.items())
    k = min(args.placements, len(ordered))
    picks = [ordered[round(i * (len(ordered) - 1) / max(k - 1, 1))] for i in range(k)]
    picks = list(dict(picks).items())
    placements = [p for p, _ in picks]
    n = args.lines or (2 if info.kind == "det" else 8)
    pool = prepare_parts(info, calibration=max(n, 160 if info.kind != "det" else n), held_out=1,
                         model_dir=model_dir)["calibration"]
    pool.references = reference_outputs(pool.inputs, onnx=onnx)
    part = stressed(info.kind, pool, n, "calibration")  # the most fragile lines: where placements differ
    table: dict[str, list] = {}
    cost: dict[str, float] = {}
    loads: dict[str, float] = {}
    for where in ("arm", "vulkan", "x86-cast"):
        with Load() as load, TargetPool("isolated" if where == "x86-cast" else where, 2) as runners:
            ev = Evaluator(g, info.kind, {"calibration": part}, runners, criteria=criteria, dictionary=info.dictionary,
                           transform=fp16_rounded if where == "x86-cast" else None, progress=_say)
            t0 = time.perf_counter()
            table[where] = [v.to_dict() for v in ev.evaluate(placements, "calibration")]
            cost[where] = (time.perf_counter() - t0) / (len(placements) * len(part))
        loads[where] = load.describe()["mean"]
        _say(f"{where}: {cost[where]:.2f} s per inference (2 workers), load {loads[where]:.1f}")
    agree = {}
    for where, rows in table.items():
        agree[where] = {"seconds_per_inference": cost[where], "load": loads[where],
                        "pass_agreement": sum(a["ok"] == b["ok"] for a, b in zip(table["arm"], rows, strict=True))}
        for key in ("score", "mean_max_diff", "max_conf_change", "mean_conf_change"):
            a = [r["score"] if key == "score" else r["numbers"].get(key, np.inf) for r in table["arm"]]
            b = [r["score"] if key == "score" else r["numbers"].get(key, np.inf) for r in rows]
            agree[where][f"spearman_{key}"] = spearman(a, b)
            agree[where][f"kendall_{key}"] = kendall(a, b)
        _say(f"{where:10s} " + " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in agree[where].items()))
    out = {"model": args.model, "lines": len(part), "placements": [lab for _, (_, lab) in picks],
           "fp16_shares": [sh for _, (sh, _) in picks], "table": table, "agreement": agree}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"rank-{args.model}.json").write_text(json.dumps(out, indent=1, default=str))
    return out



def cmd_floor(args) -> dict:
    """The reference's own noise floor on the table's held-out data (:mod:`ncnnpass.passes.precision.noise_floor`):
    the input rounded to fp16 and with 1 and 2 fp16 roundings of seeded relative noise (3 seeds each)."""
    from ncnnpass.passes.precision import Criteria
    from ncnnpass.passes.precision.evaluator import prepare_parts, reference_outputs
    from ncnnpass.passes.precision.noise_floor import input_noise_floor

    _, onnx, info, model_dir = load_model(args.model)
    _, held = _counts(info, args)
    part = prepare_parts(info, calibration=1, held_out=held, seed=TABLE_SEED, model_dir=model_dir)["held-out"]
    part.references = reference_outputs(part.inputs, onnx=onnx)
    out = {"model": args.model, "held_out": len(part), "table_seed": TABLE_SEED, "floors": {}}
    for k in (1.0, 2.0):
        f = input_noise_floor(part, info.kind, onnx=onnx, criteria=Criteria(conf_tolerance=args.tolerance),
                              dictionary=info.dictionary, seeds=3, roundings=k)
        out["floors"][f"{k:g}"] = f.to_dict()
        _say(f"{args.model} ({len(part)} held-out): {f.summary()}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"floor-{args.model}.json").write_text(json.dumps(out, indent=1, default=str))
    return out


def cmd_paths(args) -> dict:
    """The placement ``search MODEL --target T`` chose, as the one file an app runs on any path: on x86 and
    on lavapipe (the phone's GPU) on the table's held-out data (the emulated phone CPU is the search's row)."""
    from ncnnpass.ir.runtime import TargetPool
    from ncnnpass.passes.precision import Criteria
    from ncnnpass.passes.precision.evaluator import Evaluator, prepare_parts, reference_outputs
    from ncnnpass.passes.precision.placement import Placement, existing_placement

    src = OUT / f"search-{args.model}-{args.target}.json"
    d = json.loads(src.read_text())
    g, onnx, info, model_dir = load_model(args.model)
    chosen = existing_placement(g).merged(Placement.of(d["result"]["placement"]))
    _, held = _counts(info, args)
    part = prepare_parts(info, calibration=1, held_out=held, seed=TABLE_SEED, model_dir=model_dir)["held-out"]
    part.references = reference_outputs(part.inputs, onnx=onnx)
    rows = {}
    for where in ("isolated", "vulkan"):
        with TargetPool(where, 2) as pool:
            ev = Evaluator(g, info.kind, {"held-out": part}, pool, criteria=Criteria(conf_tolerance=args.tolerance),
                           dictionary=info.dictionary)
            (v,) = ev.evaluate([chosen], "held-out")
        rows[where] = v.to_dict()
        _say(f"{args.model}, chosen for {args.target}, on {where} ({len(part)} held-out): {v.headline()}")
    d["paths"] = rows
    src.write_text(json.dumps(d, indent=1, default=str))
    return rows


def _floor(model: str) -> str:
    """The reference's noise floor at one fp16 rounding of input noise (worst of the seeds), when measured."""
    f = OUT / f"floor-{model}.json"
    if not f.exists():
        return "–"
    one = json.loads(f.read_text())["floors"]["1"]
    ns = [v["numbers"] for v in (one["rounded"], *one["noisy"])]
    if "identical" in ns[0]:
        return f"{min(n['identical'] for n in ns)}/{ns[0]['lines']}, {max(n['max_conf_change'] for n in ns):.1e}"
    if "agreement" in ns[0]:
        return f"{min(n['agreement'] for n in ns)}/{ns[0]['lines']}, {max(n['max_score_change'] for n in ns):.1e}"
    return f"F {min(n['f'] for n in ns):.4f}"


def cmd_table(args) -> dict:
    rows = []
    for target in ("arm", "vulkan"):
        for m in MODELS:
            f = OUT / f"search-{m}-{target}.json"
            if not f.exists():
                continue
            d = json.loads(f.read_text())
            if "rows" not in d:
                continue
            c = d["rows"]["chosen"]
            n = c["numbers"]
            before = d["rows"].get("as given", {}).get("numbers", {})
            if "identical" in n:
                beyond = f" ({n['conf_beyond']} lines beyond)" if "conf_beyond" in n else ""
                fid = (f"{100 * n['identical_share']:.1f}% | {n['max_conf_change']:.1e}{beyond} | "
                       f"{n['drop_score_crossings']} | –")
                was = (f"{100 * before['identical_share']:.1f}%, {before['max_conf_change']:.1e}" if before else "–")
            elif "f" in n:
                fid = f"– | – | – | {n['f']:.4f}"
                was = f"F {before['f']:.4f}" if before else "–"
            else:
                fid = f"{100 * n['agreement_share']:.1f}% (labels) | {n['max_score_change']:.1e} | – | –"
                was = f"{100 * before['agreement_share']:.1f}%" if before else "–"
            gpu = d.get("paths", {}).get("vulkan", {}).get("numbers", {}) if target == "arm" else {}
            on_gpu = (f"{gpu['identical']}/{gpu['lines']}, {gpu['max_conf_change']:.1e}" if "identical" in gpu
                      else f"F {gpu['f']:.4f}" if "f" in gpu
                      else f"{gpu['agreement']}/{gpu['lines']}" if "agreement" in gpu else "–")
            rows.append(f"| {m} | {target} | {d['held_out']} | {fid} | {100 * d['fp16_share']:.1f}% | "
                        f"{d['search_seconds']:.0f} s (load {d['load_search']['mean']:.1f}) | {was} | {on_gpu} | "
                        f"{_floor(m)} |")
    print("| model | target | held-out | strings identical | conf change max | drop_score crossings | det F | "
          "MACs fp16 | search | as given | the file on the GPU | noise floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("search", "rank", "floor", "paths", "table"))
    ap.add_argument("model", nargs="?", default="v3", choices=MODELS)
    ap.add_argument("--target", default="arm", choices=("arm", "vulkan"))
    ap.add_argument("--tolerance", type=float, default=5e-3, help="line-confidence tolerance")
    ap.add_argument("--budget", type=float, default=600.0, help="search budget, seconds")
    ap.add_argument("--proxy", default="auto", choices=("auto", "vulkan", "none"))
    ap.add_argument("--held-out", type=int, default=0, help="held-out lines/pages for the table (200 / 30)")
    ap.add_argument("--no-before", action="store_true", help="skip the model as given on the held-out data")
    ap.add_argument("--before-lines", type=int, default=0,
                    help="held-out samples for the model as given (default: 48 on arm, all on vulkan)")
    ap.add_argument("--curve-points", type=int, default=-1,
                    help="Pareto points also measured on the held-out data (default: 6 on vulkan, 0 on arm)")
    ap.add_argument("--lines", type=int, default=0, help="rank: calibration lines (8; det: 2 pages)")
    ap.add_argument("--placements", type=int, default=10, help="rank: at most this many placements")
    args = ap.parse_args(argv)
    fn = {"search": cmd_search, "rank": cmd_rank, "floor": cmd_floor, "paths": cmd_paths, "table": cmd_table}[args.command]
    fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
