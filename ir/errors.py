"""The exceptions ncnnpass raises. Every user-facing failure is a :class:`NcnnpassError`."""

from __future__ import annotations


class NcnnpassError(Exception):
    """Base class: a problem with the user's input or environment (the CLI prints one line)."""


class SourceError(NcnnpassError):
    """An error located in a text file: ``file:line:column: message``."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<string>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ParamSyntaxError(SourceError):
    """Malformed ``.param`` text (tokens, numbers, counts on a line)."""


class ParamSemanticError(SourceError):
    """Well-formed ``.param`` text that describes an invalid network."""


class PatternSyntaxError(SourceError):
    """Malformed rewrite-pattern text."""


class WeightError(NcnnpassError):
    """A ``.bin`` that does not match the ``.param`` (too short, too long, unknown weighted layer)."""


class GraphError(NcnnpassError):
    """An edit or query that would make the graph invalid, or names something that is not there."""


class RuntimeBridgeError(NcnnpassError):
    """ncnn refused to load or run a graph."""


class ToolError(NcnnpassError):
    """An external tool (pnnx, paddle2onnx, onnxsim, ...) is missing or failed."""


class VerificationError(NcnnpassError):
    """A rewrite changed results beyond the stated tolerance."""
