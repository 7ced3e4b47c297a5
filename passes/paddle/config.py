"""``paddle-config``: seed 000's PaddleOCR config edits for exporting centers / training with CenterLoss.

On a Distillation config (``Architecture.algorithm: Distillation``, one sub-model per key of
``Architecture.Models``), a MultiHead config or a plain CTC config:

1. ``return_feats: true`` on the CTC head of every (sub-)model. For ``MultiHead`` it goes into the
   ``CTCHead`` entry's ``Head`` arguments, which is where MultiHead reads them (a ``return_feats`` on
   the MultiHead itself is ignored by PaddleOCR).
2. The head sizes as ``tools/train.py`` fills them before building the model: ``char_num`` = dictionary
   lines + 1 if ``use_space_char`` + 1 (blank); ``out_channels_list`` = ``{CTCLabelDecode: char_num}``
   plus ``SARLabelDecode: char_num + 2`` / ``NRTRLabelDecode: char_num + 3`` for a SAR / NRTR head, and
   the SAR loss ``ignore_index = char_num + 1``; plain ``CTCHead`` gets ``out_channels: char_num``.
   PaddleOCR's export/eval tools do not fill these (the ``out_channels_list`` errors users hit).
   Differences from train.py, reported as notes: the SAR/NRTR entries follow the heads actually listed
   in ``head_list`` (train.py looks at the losses and can leave out a key the head needs), and the
   count is not decremented once per sub-model (train.py's loop does that for
   ``DistillationSAR/NRTRLabelDecode``).
3. ``Eval.dataset``: ``name: SimpleDataSet`` with the Train ``data_dir`` and ``label_file_list`` (Eval
   transforms, no augmentation, so the centers see the training images as at evaluation). Copying the
   Train dataset *name* as upstream's export_center.py does breaks on ``MultiScaleDataSet``, which
   needs its sampler.

The file is edited round trip with ruamel.yaml (a dependency of ncnnpass): comments, anchors/aliases, key
order and quoting stay; block indentation is normalised to the file's dominant style. Should ruamel.yaml
be missing from a broken install, PyYAML is used and a note says that comments and anchors are lost.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncnnpass.ir.errors import SourceError, ToolError
from ncnnpass.ir.fileio import atomic_write
from ncnnpass.passes.measure.ctc_decode import read_dictionary

__all__ = ["ConfigEdit", "ConfigResult", "PaddleConfigError", "edit_config", "edit_config_file"]

KNOWN_POSTPROCESS = {"CTCLabelDecode", "DistillationCTCLabelDecode", "SARLabelDecode",
                     "DistillationSARLabelDecode", "NRTRLabelDecode", "DistillationNRTRLabelDecode"}
MULTIHEAD_BRANCHES = {"CTCHead": "CTCLabelDecode", "SARHead": "SARLabelDecode", "NRTRHead": "NRTRLabelDecode"}
BRANCH_EXTRA = {"CTCLabelDecode": 0, "SARLabelDecode": 2, "NRTRLabelDecode": 3}
DEFAULT_CHARS = 36  # PaddleOCR without character_dict_path: 0-9a-z, no space


class PaddleConfigError(SourceError):
    """A config paddle-config does not understand (``file:line:column: message`` when known)."""


@dataclass(frozen=True)
class ConfigEdit:
    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        old = "(absent)" if self.old is _ABSENT else repr(self.old)
        return f"{self.path}: {old} -> {self.new!r}"


@dataclass
class ConfigResult:
    text: str
    edits: list[ConfigEdit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    char_num: int = 0
    layout: str = ""  #: ``distillation``, ``multihead`` or ``ctc``
    dictionary: str = ""


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


# ------------------------------------------------------------------------------------------ yaml


class _Yaml:
    """ruamel.yaml round trip when installed, else PyYAML (comments and anchors lost)."""

    def __init__(self, text: str) -> None:
        self.round_trip = True
        try:
            from ruamel.yaml import YAML
        except ImportError:
            self.round_trip = False
        if self.round_trip:
            self.yaml = YAML(typ="rt")
            self.yaml.preserve_quotes = True
            self.yaml.width = 4096
            mapping, offset = _guess_indent(text)
            self.yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
        else:
            try:
                import yaml  # noqa: F401
            except ImportError:
                raise ToolError("paddle-config needs ruamel.yaml (pip install ruamel.yaml) or PyYAML") from None

    def load(self, text: str, name: str) -> Any:
        try:
            if self.round_trip:
                return self.yaml.load(text)
            import yaml

            return yaml.safe_load(text)
        except Exception as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise PaddleConfigError(f"not valid YAML: {problem}", name,
                                    mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None

    def dump(self, data: Any) -> str:
        buf = io.StringIO()
        if self.round_trip:
            self.yaml.dump(data, buf)
        else:
            import yaml

            yaml.safe_dump(data, buf, sort_keys=False, allow_unicode=True)
        return buf.getvalue()

    def new_map(self, items: dict[str, Any]) -> Any:
        if self.round_trip:
            from ruamel.yaml.comments import CommentedMap

            return CommentedMap(items)
        return dict(items)

    def new_seq(self, items: list[Any]) -> Any:
        if self.round_trip:
            from ruamel.yaml.comments import CommentedSeq

            return CommentedSeq(items)
        return list(items)


def _guess_indent(text: str) -> tuple[int, int]:
    """(mapping indent, dash offset of block sequences) most used in ``text``."""
    from collections import Counter

    maps: Counter[int] = Counter()
    offsets: Counter[int] = Counter()
    stack: list[tuple[int, bool]] = []  # (column, line is a "key:" opening a block)
    for raw in text.splitlines():
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        col = len(raw) - len(stripped)
        while stack and stack[-1][0] > col:
            stack.pop()
        parent = next((c for c, opens in reversed(stack) if opens and c < col), None)
        if stripped.startswith("- "):
            if parent is not None:
                offsets[col - parent] += 1
            elif stack and stack[-1][1] and stack[-1][0] == col:
                offsets[0] += 1
        elif parent is not None and not stack[-1:] == [(col, False)]:
            maps[col - parent] += 1
        opens = stripped.rstrip().endswith(":") and not stripped.startswith("- ")
        stack.append((col, opens))
    mapping = maps.most_common(1)[0][0] if maps else 2
    offset = offsets.most_common(1)[0][0] if offsets else 0
    return (mapping if 1 < mapping < 9 else 2), (offset if 0 <= offset < mapping + 1 else 0)


# ------------------------------------------------------------------------------------------ editing


class _Editor:
    def __init__(self, data: Any, name: str, yaml: _Yaml) -> None:
        self.data, self.name, self.yaml = data, name, yaml
        self.edits: list[ConfigEdit] = []
        self.notes: list[str] = []

    def fail(self, path: str, message: str, node: Any = None, key: str | None = None) -> PaddleConfigError:
        line = col = None
        lc = getattr(node, "lc", None)
        if lc is not None:
            try:
                line, col = lc.key(key) if key is not None and key in node else (lc.line, lc.col)
                line, col = line + 1, col + 1
            except Exception:  # position info is a bonus
                line = col = None
        return PaddleConfigError(f"{path}: {message}" if path else message, self.name, line, col)

    def mapping(self, node: Any, key: str, path: str, create: bool = False) -> Any:
        value = node.get(key) if isinstance(node, dict) else None
        if value is None and create and isinstance(node, dict):
            value = self.yaml.new_map({})
            self.set(node, key, value, f"{path}.{key}" if path else key, record=False)
        if not isinstance(value, dict):
            where = f"{path}.{key}" if path else key
            what = "missing" if value is None else f"a {type(value).__name__}, expected a mapping"
            raise self.fail(where, what, node, key if isinstance(node, dict) and key in node else None)
        return value

    def set(self, node: dict, key: str, value: Any, path: str, record: bool = True) -> None:
        old = node.get(key, _ABSENT)
        if old is not _ABSENT and _plain(old) == _plain(value):
            return
        node[key] = value
        if record:
            self.edits.append(ConfigEdit(path, _plain(old) if old is not _ABSENT else _ABSENT, _plain(value)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _resolve_dictionary(ed: _Editor, glob: dict, config_path: str | None, dict_path: str | None
                        ) -> tuple[int, str]:
    """(number of dictionary entries, where they came from)."""
    if dict_path is not None:
        return len(read_dictionary(dict_path)), dict_path
    named = glob.get("character_dict_path")
    if not named:
        ed.notes.append("Global.character_dict_path is not set: PaddleOCR then uses 0-9a-z (36 characters)")
        return DEFAULT_CHARS, "built-in 0-9a-z"
    named = str(named)
    candidates = [Path(named)]
    if not os.path.isabs(named) and config_path:
        # PaddleOCR runs from its repository root; configs live in configs/rec/<family>/.
        for parent in Path(config_path).resolve().parents:
            candidates.append(parent / named)
    for cand in candidates:
        if cand.is_file():
            return len(read_dictionary(cand)), str(cand)
    raise ed.fail("Global.character_dict_path", f"cannot find {named} (relative to the PaddleOCR directory); "
                  "pass --dict FILE", glob, "character_dict_path")


def _ctc_in_head_list(ed: _Editor, head: dict, path: str) -> tuple[dict, list[str]]:
    """The CTCHead entry's argument mapping and the decode keys of all branches."""
    head_list = head.get("head_list")
    if not isinstance(head_list, list) or not head_list:
        raise ed.fail(f"{path}.head_list", "MultiHead needs a non-empty head_list", head, "head_list"
                      if "head_list" in head else None)
    ctc_args = None
    branches: list[str] = []
    for i, entry in enumerate(head_list):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ed.fail(f"{path}.head_list[{i}]", "expected a single-key mapping such as CTCHead: {...}",
                          head_list)
        (branch, args), = entry.items()
        if branch not in MULTIHEAD_BRANCHES:
            raise ed.fail(f"{path}.head_list[{i}]", f"unknown MultiHead branch {branch!r} (paddle-config "
                          f"understands {', '.join(MULTIHEAD_BRANCHES)})", entry, branch)
        branches.append(MULTIHEAD_BRANCHES[branch])
        if branch == "CTCHead":
            if args is None:
                args = ed.yaml.new_map({})
                entry[branch] = args
            if not isinstance(args, dict):
                raise ed.fail(f"{path}.head_list[{i}].CTCHead", "expected a mapping", entry, branch)
            ctc_args = args
    if ctc_args is None:
        raise ed.fail(f"{path}.head_list", "MultiHead has no CTCHead: centers need a CTC branch", head, "head_list")
    return ctc_args, branches


def _edit_head(ed: _Editor, model: dict, path: str, char_num: int, loss_names: list[str], distill: bool) -> str:
    head = ed.mapping(model, "Head", path)
    hpath = f"{path}.Head"
    name = head.get("name")
    if name == "MultiHead":
        ctc_args, branches = _ctc_in_head_list(ed, head, hpath)
        i = next(k for k, e in enumerate(head["head_list"]) if "CTCHead" in e)
        args = ed.mapping(ctc_args, "Head", f"{hpath}.head_list[{i}].CTCHead", create=True)
        ed.set(args, "return_feats", True, f"{hpath}.head_list[{i}].CTCHead.Head.return_feats")
        sizes = {b: char_num + BRANCH_EXTRA[b] for b in branches}
        # train.py picks SAR/NRTR from the losses, not from head_list: say where that would differ.
        train_py = {"CTCLabelDecode": char_num}
        if distill:
            if loss_names[-1:] == ["DistillationSARLoss"]:
                train_py["SARLabelDecode"] = char_num + 2
            elif "DistillationNRTRLoss" in loss_names:
                train_py["NRTRLabelDecode"] = char_num + 3
        elif loss_names[1:2] == ["SARLoss"]:
            train_py["SARLabelDecode"] = char_num + 2
        elif loss_names[1:2] == ["NRTRLoss"]:
            train_py["NRTRLabelDecode"] = char_num + 3
        missing = sorted(set(sizes) - set(train_py))
        if missing:
            ed.notes.append(f"{hpath}.out_channels_list: train.py would leave out {', '.join(missing)} (no "
                            "matching loss configured) and MultiHead would fail; added for the listed heads")
        old = head.get("out_channels_list")
        if isinstance(old, dict) and _plain(old) == sizes:
            return "multihead"
        ed.set(head, "out_channels_list", ed.yaml.new_map(sizes), f"{hpath}.out_channels_list")
        return "multihead"
    if name == "CTCHead":
        ed.set(head, "return_feats", True, f"{hpath}.return_feats")
        ed.set(head, "out_channels", char_num, f"{hpath}.out_channels")
        return "ctc"
    raise ed.fail(hpath, f"head {name!r} has no CTC branch (paddle-config understands CTCHead and MultiHead)",
                  head, "name" if "name" in head else None)


def _loss_entries(ed: _Editor) -> list[tuple[str, dict | None, Any]]:
    loss = ed.data.get("Loss")
    entries = loss.get("loss_config_list") if isinstance(loss, dict) else None
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and len(entry) == 1:
            (name, args), = entry.items()
            out.append((str(name), args, entry))
    return out


def _edit_sar_losses(ed: _Editor, char_num: int, layout_sar: bool) -> None:
    if not layout_sar:
        return
    for i, (name, args, entry) in enumerate(_loss_entries(ed)):
        if name in ("SARLoss", "DistillationSARLoss"):
            if args is None:
                args = ed.yaml.new_map({})
                entry[name] = args
            ed.set(args, "ignore_index", char_num + 1, f"Loss.loss_config_list[{i}].{name}.ignore_index")


def _edit_eval_dataset(ed: _Editor) -> None:
    train = ed.mapping(ed.mapping(ed.data, "Train", ""), "dataset", "Train")
    eval_ds = ed.mapping(ed.mapping(ed.data, "Eval", ""), "dataset", "Eval")
    labels = train.get("label_file_list")
    if not labels:
        raise ed.fail("Train.dataset.label_file_list", f"missing: the Train dataset ({train.get('name')}) "
                      "has no label files for a SimpleDataSet", train, None)
    if "data_dir" not in train:
        raise ed.fail("Train.dataset.data_dir", "missing", train)
    old_name = eval_ds.get("name")
    ed.set(eval_ds, "name", "SimpleDataSet", "Eval.dataset.name")
    data_dir = train["data_dir"]
    ed.set(eval_ds, "data_dir", ed.yaml.new_seq([str(d) for d in data_dir]) if isinstance(data_dir, list)
           else str(data_dir), "Eval.dataset.data_dir")
    new_labels = ed.yaml.new_seq([str(x) for x in labels]) if isinstance(labels, list) else str(labels)
    ed.set(eval_ds, "label_file_list", new_labels, "Eval.dataset.label_file_list")
    if "ratio_list" in eval_ds:
        ed.set(eval_ds, "ratio_list", 1.0, "Eval.dataset.ratio_list")
    if old_name not in (None, "SimpleDataSet"):
        ed.notes.append(f"Eval.dataset.name was {old_name}: SimpleDataSet is used for the center export "
                        "(upstream's export_center.py would copy the Train dataset name)")
    if str(train.get("name")) == "MultiScaleDataSet":
        ed.notes.append("Train uses MultiScaleDataSet; Eval keeps its own transforms (RecResizeImg), so "
                        "every image is resized to the Eval image_shape")


def edit_config(text: str, name: str = "<config>", dict_path: str | None = None,
                config_path: str | None = None) -> ConfigResult:
    """Apply the edits to config text; ``config_path`` helps find a relative dictionary."""
    yaml = _Yaml(text)
    data = yaml.load(text, name)
    if not isinstance(data, dict):
        raise PaddleConfigError("expected a PaddleOCR config (a mapping with Global, Architecture, ...)", name)
    ed = _Editor(data, name, yaml)
    if not yaml.round_trip:
        ed.notes.append("ruamel.yaml is not installed: comments and anchors are not kept (pip install ruamel.yaml)")
    glob = ed.mapping(data, "Global", "")
    arch = ed.mapping(data, "Architecture", "")
    post = data.get("PostProcess")
    post_name = post.get("name") if isinstance(post, dict) else None
    if post_name not in KNOWN_POSTPROCESS:
        raise ed.fail("PostProcess.name", f"{post_name!r} is not a CTC/SAR/NRTR label decoder "
                      f"({', '.join(sorted(KNOWN_POSTPROCESS))})", post if isinstance(post, dict) else data,
                      "name" if isinstance(post, dict) else "PostProcess")
    n_chars, dict_origin = _resolve_dictionary(ed, glob, config_path, dict_path)
    use_space = bool(glob.get("use_space_char", False)) and dict_origin != "built-in 0-9a-z"
    char_num = n_chars + int(use_space) + 1
    loss_names = [n for n, _, _ in _loss_entries(ed)]

    layouts = []
    if arch.get("algorithm") == "Distillation" or arch.get("name") == "DistillationModel":
        models = ed.mapping(arch, "Models", "Architecture")
        if not models:
            raise ed.fail("Architecture.Models", "no sub-models", arch, "Models")
        for key, model in models.items():
            if not isinstance(model, dict):
                raise ed.fail(f"Architecture.Models.{key}", "expected a mapping", models, key)
            layouts.append(_edit_head(ed, model, f"Architecture.Models.{key}", char_num, loss_names, True))
        layout = "distillation"
        if post_name in ("DistillationSARLabelDecode", "DistillationNRTRLabelDecode") and \
                layouts.count("multihead") > 1:
            ed.notes.append(f"{post_name}: train.py subtracts the special tokens once per MultiHead sub-model; "
                            f"the CTC size {char_num} is used for every sub-model")
    else:
        layouts.append(_edit_head(ed, arch, "Architecture", char_num, loss_names, False))
        layout = layouts[0]
    has_sar = any(
        isinstance(h, dict) and h.get("name") == "MultiHead"
        and any("SARHead" in e for e in h.get("head_list") or [] if isinstance(e, dict))
        for h in _heads(data))
    _edit_sar_losses(ed, char_num, has_sar)
    _edit_eval_dataset(ed)
    return ConfigResult(text=yaml.dump(data), edits=ed.edits, notes=ed.notes, char_num=char_num,
                        layout=layout, dictionary=dict_origin)


def _heads(data: dict) -> list[Any]:
    arch = data.get("Architecture") or {}
    if isinstance(arch.get("Models"), dict):
        return [m.get("Head") for m in arch["Models"].values() if isinstance(m, dict)]
    return [arch.get("Head")]


def edit_config_file(in_path: str | os.PathLike, out_path: str | os.PathLike, dict_path: str | None = None
                     ) -> ConfigResult:
    """Read ``in_path``, apply the edits, write ``out_path`` atomically."""
    with open(in_path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PaddleConfigError(f"not UTF-8 ({exc})", str(in_path)) from None
    result = edit_config(text, str(in_path), dict_path=dict_path, config_path=str(in_path))
    atomic_write(out_path, result.text)
    return result
