"""Parse rewrite-pattern text (``grammar/pattern.lark``) into plain rule descriptions.

The parser is built once (LALR, contextual lexer) and shared. Everything here is syntax: names are
resolved and checked by :mod:`.rule`. Errors are :class:`~ncnnpass.ir.errors.PatternSyntaxError`
with ``file:line:column``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ncnnpass.grammar import load as load_grammar
from ncnnpass.ir.errors import PatternSyntaxError


@dataclass(frozen=True)
class Pos:
    line: int
    column: int


@dataclass
class Node:
    """An expression node: ``kind`` plus operands; ``pos`` for error messages, ``text`` for reasons."""

    kind: str
    args: tuple
    pos: Pos
    text: str = ""


@dataclass
class ParamTest:
    key: str          # param id as text ("0") or a schema name ("num_output")
    op: str           # "=", "!=", "<", "<=", ">", ">="
    kind: str         # "any", "capture", "literal", "alternatives", "computed"
    value: object     # capture name, literal value, list of literals, or Node
    pos: Pos


@dataclass
class PatLine:
    types: tuple[str, ...]
    handle: str
    inputs: list[str]
    outputs: list[str]
    shared: set[str]
    tests: list[ParamTest]
    rest: bool
    pos: Pos


@dataclass
class RepItem:
    kind: str         # "set", "copy", "drop"
    key: str | None
    value_kind: str | None = None   # "capture", "literal", "computed"
    value: object = None
    pos: Pos | None = None


@dataclass
class RepLine:
    type: str | None      # a layer type, or None when copied (``copy_type`` names the matched handle)
    copy_type: str | None
    handle: str
    inputs: list[str]
    outputs: list[str]
    items: list[RepItem]
    pos: Pos


@dataclass
class Alias:
    old: str
    new: str
    pos: Pos


@dataclass
class Assign:
    handle: str
    slot: str
    expr: Node
    pos: Pos


@dataclass
class RuleText:
    name: str
    pos: Pos
    doc: str = ""
    benefit: int | None = None
    match: list[PatLine] = field(default_factory=list)
    where: list[Node] = field(default_factory=list)
    replace: list[RepLine] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)
    weights: list[Assign] = field(default_factory=list)
    sections: set[str] = field(default_factory=set)


@functools.cache
def _parser() -> Lark:
    return Lark(load_grammar("pattern.lark"), parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True, cache=False)


_TOKEN_WORDS = {
    "_NL": "end of line", "NAME": "a name", "INT": "a count", "PKEY": "a param key (id or name) before =",
    "CMP": "=, !=, <, <=, > or >=", "SIGNED_NUMBER": "a number", "UNUMBER": "a number", "CAPTURE": "%capture",
    "STRING": "a string", "RULE_NAME": "a rule name", "COPY": "@handle", "DROP": "~key", "COLON": "':'",
    "LPAR": "'('", "LSQB": "'['", "MINUS": "'-'", "PLUS": "'+'", "TRUE": "true", "FALSE": "false", "NONE": "none",
    "REST": "'...'", "SHARED": "'!'", "COMP": "a comparison", "ADDOP": "+ or -", "MULOP": "*, /, // or %",
}


def _describe(expected: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(t, t.lower().replace("_", " ")) for t in expected})
    return ", ".join(words[:8]) + (" ..." if len(words) > 8 else "")


# Limits that keep hostile pattern text (e.g. a ``keep-fp32[pattern=...]`` option) from crashing the
# recursive builder/evaluator or Python's int() (which refuses more than 4300 digits, at least 640).
MAX_EXPR_DEPTH = 200
MAX_NUMBER_DIGITS = 600
_LONG_NUMBER_RE = re.compile(rf"(?<![0-9])[0-9]{{{MAX_NUMBER_DIGITS + 1}}}")


def parse_rules(text: str, file: str = "<pattern>", require_replace: bool = True) -> list[RuleText]:
    """Parse pattern text into rule descriptions (syntax only)."""
    if not text.endswith("\n"):
        text += "\n"
    long_number = _LONG_NUMBER_RE.search(text)
    if long_number is not None:
        at = long_number.start()
        raise PatternSyntaxError(f"number with more than {MAX_NUMBER_DIGITS} digits", file,
                                 text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at))
    try:
        tree = _parser().parse(text)
    except UnexpectedCharacters as exc:
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "end of input"
        raise PatternSyntaxError(f"unexpected character {ch!r}", file, exc.line, exc.column) from None
    except UnexpectedToken as exc:
        tok = exc.token
        what = "end of input" if tok.type == "$END" else repr(str(tok)).replace("\\n", "\\n")
        if tok.type == "_NL":
            what = "end of line"
        raise PatternSyntaxError(f"unexpected {what}; expected {_describe(set(exc.expected))}", file,
                                 tok.line, tok.column) from None
    except UnexpectedEOF as exc:
        raise PatternSyntaxError(f"unexpected end of input; expected {_describe(set(exc.expected))}",
                                 file, text.count("\n") + 1, 1) from None
    except UnexpectedInput as exc:  # pragma: no cover - any other lark input error
        raise PatternSyntaxError(str(exc).splitlines()[0], file, getattr(exc, "line", None),
                                 getattr(exc, "column", None)) from None
    return [_Builder(text, file, require_replace).rule(r) for r in tree.children]


def _pos(item: Tree | Token) -> Pos:
    if isinstance(item, Token):
        return Pos(item.line, item.column)
    return Pos(item.meta.line, item.meta.column)


def _number(tok: str) -> int | float:
    if any(c in tok for c in ".eE"):
        return float(tok)
    return int(tok)


class _Builder:
    def __init__(self, text: str, file: str, require_replace: bool = True) -> None:
        self.text = text
        self.file = file
        self.require_replace = require_replace
        self.depth = 0

    def error(self, message: str, pos: Pos) -> PatternSyntaxError:
        return PatternSyntaxError(message, self.file, pos.line, pos.column)

    def rule(self, tree: Tree) -> RuleText:
        name_tok = tree.children[0]
        rule = RuleText(str(name_tok), _pos(name_tok))
        for item in tree.children[1:]:
            kind = item.data
            if kind in rule.sections:
                raise self.error(f"rule {rule.name!r} has a second {kind!r} section", _pos(item))
            rule.sections.add(kind)
            if kind == "doc":
                rule.doc = str(item.children[0])[1:-1]
            elif kind == "benefit":
                value = _number(str(item.children[0]))
                if not isinstance(value, int):
                    raise self.error("benefit must be an integer", _pos(item))
                rule.benefit = value
            elif kind == "match":
                rule.match = [self.pat_line(ch) for ch in item.children]
            elif kind == "where":
                rule.where = [self.expr(ch) for ch in item.children]
            elif kind == "replace":
                for ch in item.children:
                    if ch.data == "alias":
                        rule.aliases.append(Alias(str(ch.children[0]), str(ch.children[1]), _pos(ch)))
                    else:
                        rule.replace.append(self.rep_line(ch))
            elif kind == "weights":
                for ch in item.children:
                    h, slot, expr = ch.children
                    rule.weights.append(Assign(str(h), str(slot), self.expr(expr), _pos(ch)))
        if "match" not in rule.sections:
            raise self.error(f"rule {rule.name!r} has no 'match:' section", rule.pos)
        if "replace" not in rule.sections and self.require_replace:
            raise self.error(f"rule {rule.name!r} has no 'replace:' section", rule.pos)
        return rule

    # -- lines -------------------------------------------------------------------------------------
    def _counts(self, n_in_tok: Token, n_out_tok: Token, blobs: list[str], pos: Pos, what: str) -> tuple[int, int]:
        n_in, n_out = int(n_in_tok), int(n_out_tok)
        if n_in + n_out != len(blobs):
            raise self.error(f"{what} says {n_in} input(s) and {n_out} output(s) but lists {len(blobs)} blob(s)", pos)
        return n_in, n_out

    def pat_line(self, tree: Tree) -> PatLine:
        types_tree, handle, n_in, n_out, *rest = tree.children
        types = tuple(str(t) for t in types_tree.children)
        blobs, shared, tests, has_rest = [], set(), [], False
        for ch in rest:
            if ch.data == "blob":
                name = str(ch.children[0])
                if ch.children[1] is not None:
                    shared.add(name)
                blobs.append(name)
            elif ch.data == "rest":
                has_rest = True
            else:
                tests.append(self.ptest(ch))
        pos = _pos(tree)
        n_in_i, _ = self._counts(n_in, n_out, blobs, pos, f"layer {handle}")
        return PatLine(types, str(handle), blobs[:n_in_i], blobs[n_in_i:], shared, tests, has_rest, pos)

    def _value(self, tree: Tree) -> tuple[str, object]:
        kind = tree.data
        if kind == "any":
            return "any", None
        if kind == "capture":
            return "capture", str(tree.children[0])[1:]
        if kind == "computed":
            return "computed", self.expr(tree.children[0])
        if kind == "literal":
            return "literal", self.scalar(tree.children[0])
        if kind == "alternatives":
            return "alternatives", [self.scalar(t) for t in tree.children]
        if kind == "literal_array":
            arr = tree.children[0]
            values = [self.scalar(t) for t in arr.children if t is not None]
            if any(isinstance(v, str) for v in values):
                raise self.error("arrays hold numbers only", _pos(tree))
            if values and isinstance(values[0], float):
                values = [float(v) for v in values]
            elif any(isinstance(v, float) for v in values):
                raise self.error("an array whose first element is an int cannot hold floats (ncnn types the "
                                 "array by its first element)", _pos(tree))
            return "literal", values
        raise AssertionError(kind)  # pragma: no cover

    def scalar(self, tok: Token) -> int | float | str:
        if tok.type == "STRING":
            return str(tok)[1:-1]
        return _number(str(tok))

    def ptest(self, tree: Tree) -> ParamTest:
        key, op, value = tree.children
        kind, val = self._value(value)
        if op != "=" and kind in ("any", "alternatives"):
            raise self.error(f"'{op}' cannot be used with {'*' if kind == 'any' else 'alternatives'}", _pos(tree))
        return ParamTest(str(key), str(op), kind, val, _pos(tree))

    def rep_line(self, tree: Tree) -> RepLine:
        rtype, handle, n_in, n_out, *rest = tree.children
        blobs = [str(t) for t in rest if isinstance(t, Token)]
        items = [self.ritem(t) for t in rest if isinstance(t, Tree)]
        pos = _pos(tree)
        n_in_i, _ = self._counts(n_in, n_out, blobs, pos, f"replacement layer {handle}")
        tok = rtype.children[0]
        if rtype.data == "rtype_copy":
            typ, copy = None, str(tok)[1:]
        else:
            typ, copy = str(tok), None
        return RepLine(typ, copy, str(handle), blobs[:n_in_i], blobs[n_in_i:], items, pos)

    def ritem(self, tree: Tree) -> RepItem:
        if tree.data == "rcopy":
            return RepItem("copy", str(tree.children[0])[1:], pos=_pos(tree))
        if tree.data == "rdrop":
            return RepItem("drop", str(tree.children[0])[1:], pos=_pos(tree))
        key, value = tree.children
        kind, val = self._value(value)
        return RepItem("set", str(key), kind, val, _pos(tree))

    # -- expressions ---------------------------------------------------------------------------------
    def expr(self, tree: Tree | Token) -> Node:
        if self.depth >= MAX_EXPR_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_EXPR_DEPTH} levels", _pos(tree))
        self.depth += 1
        try:
            node = self._expr(tree)
        finally:
            self.depth -= 1
        if isinstance(tree, Tree) and tree.meta and not tree.meta.empty:
            node.text = self.text[tree.meta.start_pos:tree.meta.end_pos]
        elif isinstance(tree, Token):
            node.text = str(tree)
        return node

    def _expr(self, t: Tree | Token) -> Node:
        pos = _pos(t)
        if isinstance(t, Token):  # pragma: no cover - atoms are wrapped in trees by the grammar
            raise self.error(f"unexpected token {t!r} in expression", pos)
        k, ch = t.data, t.children
        sub = self.expr
        if k == "number":
            return Node("const", (_number(str(ch[0])),), pos)
        if k == "string":
            return Node("const", (str(ch[0])[1:-1],), pos)
        if k in ("true", "false", "none"):
            return Node("const", ({"true": True, "false": False, "none": None}[k],), pos)
        if k == "capture":
            return Node("capture", (str(ch[0])[1:],), pos)
        if k == "name":
            return Node("name", (str(ch[0]),), pos)
        if k == "list":
            items = [] if ch[0] is None else [sub(a) for a in ch[0].children]
            return Node("list", tuple(items), pos)
        if k == "call":
            fn = sub(ch[0])
            args = [] if ch[1] is None else [sub(a) for a in ch[1].children]
            return Node("call", (fn, tuple(args)), pos)
        if k == "attr":
            return Node("attr", (sub(ch[0]), str(ch[1])), pos)
        if k == "index":
            return Node("index", (sub(ch[0]), sub(ch[1])), pos)
        if k == "binop":
            return Node("bin", (str(ch[1]), sub(ch[0]), sub(ch[2])), pos)
        if k == "pow":
            return Node("bin", ("**", sub(ch[0]), sub(ch[2])), pos)
        if k == "neg":
            return Node("neg", (sub(ch[0]),), pos)
        if k == "factor":  # unary plus
            return sub(ch[0])
        if k == "not_":
            return Node("not", (sub(ch[0]),), pos)
        if k == "and_":
            return Node("and", (sub(ch[0]), sub(ch[1])), pos)
        if k == "or_":
            return Node("or", (sub(ch[0]), sub(ch[1])), pos)
        if k == "ifelse":
            return Node("if", (sub(ch[1]), sub(ch[0]), sub(ch[2])), pos)
        if k == "compare":
            operands = [sub(c) for c in ch[0::2]]
            ops = []
            for op in ch[1::2]:
                ops.append({"op_in": "in", "op_not_in": "not in"}.get(op.data) or str(op.children[0]))
            return Node("cmp", (tuple(ops), tuple(operands)), pos)
        raise self.error(f"unsupported expression {k!r}", pos)  # pragma: no cover
