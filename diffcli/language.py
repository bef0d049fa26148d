"""Expression text -> SymPy, without ``eval`` (README: "The expression language", "Safety and limits").

The text is tokenized, rewritten to Python syntax (``^`` becomes ``**``; ``2x``, ``3(x+1)`` and
``2sin(x)`` get their ``*``), parsed with ``ast.parse(mode="eval")``, screened against an
allow-list of node types and names and against size limits, then built into SymPy objects
directly. Every error names the position in the user's own text.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import difflib
import io
import keyword
import math
import os
import re
import sys
import threading
import time
import tokenize
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import sympy

from . import functions
from .errors import ExpressionError, UsageError
from .rules import FUNCTIONS

MAX_LENGTH = 100_000  # characters in one expression: a script's 5,000-term sum fits
MAX_NODES = 100_000  # syntax-tree nodes in one expression, and terms that sum() and prod() expand to
MAX_DEPTH = 128  # nesting of the syntax tree; a chain of + - or * / is one level
MAX_LITERAL = 40  # characters in one number literal
MAX_DIGITS = 1000  # decimal digits of an exact constant that folding may produce
SYMBOLIC_SECONDS = 10.0  # budget for one symbolic step: parsing, differentiation, CSE

CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E, "inf": sympy.oo}
REDUCTIONS: dict[str, Callable[..., sympy.Expr]] = {"sum": sympy.Add, "prod": sympy.Mul}  # sum(expr, i, a, b)
OPERATOR_WORDS = frozenset({"and", "or", "not", "if", "else", "in", "is", "True", "False", "None"})
RESERVED = frozenset(FUNCTIONS) | frozenset(CONSTANTS) | frozenset(REDUCTIONS) | OPERATOR_WORDS
KEYWORD_VARIABLE = "_keyword_"  # + a Python keyword used as a variable (lambda): a name users cannot write

_COMPARE: dict[type[ast.cmpop], Callable[[sympy.Expr, sympy.Expr], sympy.Basic]] = {
    ast.Lt: sympy.Lt,
    ast.LtE: sympy.Le,
    ast.Gt: sympy.Gt,
    ast.GtE: sympy.Ge,
    ast.Eq: sympy.Eq,
    ast.NotEq: sympy.Ne,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    ast.Mod: functions.Mod,  # + - * / are chains: _Builder.chain
}
_HINTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (a.b) is not part of the language",
    ast.Lambda: "lambdas are not part of the language",
    ast.Constant: "only numbers are allowed as literals",
    ast.JoinedStr: "strings are not part of the language",
    ast.FloorDiv: "use floor(a / b)",
}


def symbol(name: str) -> sympy.Symbol:
    """The SymPy symbol for variable ``name``: every variable is real."""
    return sympy.Symbol(name, real=True)


@dataclass(frozen=True)
class Parsed:
    """One parsed expression: its optional output name, its SymPy form, and notes on how it was read."""

    name: str | None
    expr: sympy.Expr
    notes: tuple[str, ...] = ()
    indexed: frozenset[str] = frozenset()  # the variables written x[i]: x_1, … (a value for x gives them all)


def parse(text: str) -> Parsed:
    """Parse ``[name=]expression``; raise ExpressionError naming what is wrong and where.

    >>> parse("f = 2x^2").expr
    2*x**2
    """
    text = _clean(text)
    name, start = None, 0
    match = re.match(r"\s*(\w+)\s*=(?!=)", text)
    if match:
        name, start = match.group(1), match.end()
        check_name(name, "output name", source=text, position=match.start(1))
    start += len(text[start:]) - len(text[start:].lstrip())
    body = text[start:]
    if not body:
        raise ExpressionError("empty expression", source=text, position=len(text))
    python, origin, notes = _rewrite(body)
    try:
        tree = _syntax_tree(python)
    except SyntaxError as e:
        at = len(origin) - 1 if not e.offset else min(e.offset - 1, len(origin) - 1)  # 0: at the end
        raise ExpressionError(f"syntax error: {e.msg}", source=text, position=start + origin[at]) from None
    builder = _Builder(text, start, python, origin)
    builder.screen(tree)
    with symbolic_time_limit("parsing"):
        expr = builder.number(tree.body)
        return Parsed(name, expr, tuple(notes), frozenset(builder.members))


_PARSING = threading.Lock()  # the settings _syntax_tree changes for a moment are the process's


def _syntax_tree(python: str) -> ast.Expression:
    """Python's syntax tree of ``python``. A chain ``a + b + c …`` is a tree as deep as it is long,
    and building it recurses once per level, so the recursion limit is raised to the text's length
    for the call (a 100,000-level chain takes 0.5 s and 10 MB of C stack, within a thread's 8).
    The limit and the warnings filter are the process's: one parse at a time changes them, and
    puts them back."""
    with _PARSING:
        limit = sys.getrecursionlimit()
        try:
            sys.setrecursionlimit(max(limit, len(python) + 1000))
            with warnings.catch_warnings():  # "invalid decimal literal" (1and), "invalid escape sequence"
                warnings.simplefilter("ignore")
                return ast.parse(python, mode="eval")
        except (MemoryError, RecursionError):  # Python's parser on thousands of nested ^ or unary -
            raise ExpressionError(f"expression is nested more than {MAX_DEPTH} levels deep") from None
        finally:
            sys.setrecursionlimit(limit)


def parse_number(text: str) -> float:
    """Evaluate a constant expression such as ``2``, ``-1e-3`` or ``pi/4`` to a float."""
    from .lower import evaluate_constant

    parsed = parse(text)
    if parsed.name is not None or not functions.is_constant(parsed.expr):
        raise ExpressionError(f"{text!r} is not a number")
    if parsed.notes:  # a value has no stderr of its own to explain a reading on
        raise ExpressionError(f"{text!r} is ambiguous: {parsed.notes[0]}")
    value = evaluate_constant(parsed.expr)
    if math.isnan(value):
        raise ExpressionError(f"{text!r} is not a number (NaN)")
    if math.isinf(value) and not parsed.expr.has(sympy.oo, sympy.S.NegativeInfinity):
        raise ExpressionError(f"{text!r} overflows a double (largest 1.8e308); write inf for infinity")
    return value


def check_name(name: str, what: str, *, source: str | None = None, position: int | None = None) -> None:
    """Reject names that cannot be variables or outputs: not identifiers, keywords, functions."""
    if not name.isidentifier():
        problem = "is not a plain identifier"
    elif name.startswith("_"):
        problem = "may not start with an underscore"
    elif name in RESERVED:
        problem = "is reserved (a function, constant or operator of the language)"
    else:
        return
    if source is None:
        source, position = name, 0
    raise ExpressionError(f"{what} {name!r} {problem}", source=source, position=position)


class _Expired(BaseException):  # not Exception: no `except Exception` in SymPy swallows it
    """Raised in a thread whose symbolic step ran out of time (``symbolic_time_limit``)."""


class _Watchdog:
    """One thread that raises ``_Expired`` in each thread whose symbolic step passed its deadline
    (``PyThreadState_SetAsyncExc``, as debuggers do), so the limit holds on any thread and no
    signal handler or timer of the process is touched. The exception is held back until the thread
    runs SymPy's (or diffcli's) own code outside the import system, ``threading`` and
    ``contextlib`` (their locks must not be broken into, and an exception raised in a garbage
    collector's callback would be lost): it lands a few milliseconds later."""

    HOMES = tuple(f"{os.sep}{name}{os.sep}" for name in ("sympy", "mpmath", "diffcli"))  # where it may land
    UNSAFE = ("importlib", "threading.py", "contextlib.py")  # frames it must not land under (the last: outside ours)
    RETRY = 0.005

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.steps: dict[object, tuple[float, int, FrameType]] = {}  # token -> (deadline, thread, caller)
        self.fired: set[object] = set()
        self.pid = 0

    def start(self, seconds: float, caller: FrameType) -> object:
        """Watch the step that ``caller`` (the frame with the ``with``) now starts, for ``seconds``."""
        token = object()
        with self.lock:
            if self.pid != os.getpid():  # the first step, or the first in a forked child
                self.pid = os.getpid()
                threading.Thread(target=self._watch, name="diffcli-time-limit", daemon=True).start()
            self.steps[token] = (time.monotonic() + seconds, threading.get_ident(), caller)
            self.lock.notify()
        return token

    def stop(self, token: object) -> None:
        """The step is over: no exception from now on, and one fired but not yet raised is withdrawn."""
        with self.lock:
            self.steps.pop(token, None)
            if token in self.fired:
                self.fired.discard(token)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)

    def _watch(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                for token, (deadline, thread, caller) in list(self.steps.items()):
                    if deadline <= now and self._safe(thread, caller):
                        del self.steps[token]
                        self.fired.add(token)
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(_Expired))
                soonest = min((d for d, _, _ in self.steps.values()), default=now + 3600)
                self.lock.wait(max(soonest - now, self.RETRY))

    def _safe(self, thread: int, caller: FrameType) -> bool:
        """Whether ``thread`` is in the step's own code: no frame between it and ``caller`` is unsafe."""
        frame = sys._current_frames().get(thread)
        if frame is None or not any(home in frame.f_code.co_filename for home in self.HOMES):
            return False  # not in the step's own code: a garbage collector's callback, a __del__, ...
        while frame is not None and frame is not caller:
            if any(part in frame.f_code.co_filename for part in self.UNSAFE):
                return False
            frame = frame.f_back
        return frame is caller


_WATCHDOG = _Watchdog()
if hasattr(os, "register_at_fork"):  # a child starts afresh: no lock held by a thread it lacks, no parent's steps
    os.register_at_fork(after_in_child=_WATCHDOG.__init__)


@contextlib.contextmanager
def symbolic_time_limit(what: str, seconds: float = SYMBOLIC_SECONDS) -> Iterator[None]:
    """Stop a symbolic step that runs too long or exhausts memory, as an expression error, on
    whichever thread it runs (``_Watchdog``)."""
    token = None
    try:
        try:
            token = _WATCHDOG.start(seconds, sys._getframe(2))  # 1: contextlib's __enter__, 2: the with
            yield
        finally:
            if token is not None:
                _WATCHDOG.stop(token)
    except _Expired:
        raise ExpressionError(f"{what} took longer than {seconds:g} s", hint="try a smaller expression") from None
    except (MemoryError, RecursionError):
        raise ExpressionError(f"{what} needs too much memory", hint="try a smaller expression") from None


def option_name(name: str, option: str) -> None:
    """``check_name`` for a name given in an option: a usage error (exit 2)."""
    try:
        check_name(name, f"{option} name")
    except ExpressionError as e:
        raise UsageError(e.message) from None


def _clean(text: str) -> str:
    text = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
    for i, ch in enumerate(text):
        if not ch.isprintable():
            raise ExpressionError(f"unexpected character {ch!r}", source=text, position=i)
    return text


def _rewrite(text: str) -> tuple[str, list[int], list[str]]:
    """Python syntax for ``text``; for each of its characters, the offset it came from; and notes.

    Products people write without ``*`` get one: ``2x``, ``x y``, ``x sin(x)``, ``(x+1)(x-1)``,
    ``x(x+1)`` for a variable ``x``, ``x[1] x[2]``. A Python keyword that is not an operator of the
    language (``lambda``, ``for``) is a variable, renamed to a name users cannot write."""
    out: list[str] = []
    origin: list[int] = []
    notes: list[str] = []

    def emit(chars: str, at: int, width: int = 1) -> None:
        out.append(chars)
        origin.extend(at + min(j, width - 1) for j in range(len(chars)))

    tokens: list[tokenize.TokenInfo] = []  # the significant tokens so far
    openers: dict[int, int] = {}  # a closing bracket's position in ``tokens`` -> its opening bracket's
    products: list[int] = []  # positions in ``tokens`` of the right factors of implicit products
    consumed = 0
    opened: list[int] = []  # positions in ``tokens`` of the brackets still open
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
                continue
            if token.type == tokenize.ERRORTOKEN and not token.string.isspace():
                raise ExpressionError(f"unexpected character {token.string!r}", source=text, position=token.start[1])
            if token.type == tokenize.NAME and token.string.startswith("_"):
                raise ExpressionError(
                    f"names may not start with an underscore: {token.string!r}", source=text, position=token.start[1]
                )
            begin, end = token.start[1], token.end[1]
            if token.string in "([{":
                opened.append(len(tokens))
            elif token.string in ")]}" and opened:
                openers[len(tokens)] = opened.pop()
            for i in range(consumed, begin):
                emit(text[i], i)
            previous = tokens[-1] if tokens else None
            if previous is not None and _implicit_product(previous, token):
                emit("*", begin)
                products.append(len(tokens))
            if token.string == "^":
                emit("**", begin)
            elif token.type == tokenize.NAME and keyword.iskeyword(token.string) and token.string not in OPERATOR_WORDS:
                emit(KEYWORD_VARIABLE + token.string, begin, end - begin)
            else:
                for i in range(begin, end):
                    emit(text[i], i)
            consumed = end
            tokens.append(token)
    except tokenize.TokenError as e:
        if opened:
            at = tokens[opened[-1]].start[1]
            raise ExpressionError(f"syntax error: {text[at]!r} was never closed", source=text, position=at) from None
        raise ExpressionError(f"syntax error: {e.args[0]}", source=text, position=len(text)) from None
    for i in range(consumed, len(text)):
        emit(text[i], i)
    origin.append(len(text))  # the end of the text, where "unexpected end" errors point
    for right in products:
        notes += _product_notes(text, tokens, openers, right)
    return "".join(out), origin, notes


def _product_notes(text: str, tokens: list[tokenize.TokenInfo], openers: dict[int, int], right: int) -> list[str]:
    """What the implicit product before ``tokens[right]`` may be misread as: ``1/2x`` divides by 2
    only (the reading of Mathematica and SymPy); ``sinn(x)`` is a product, but perhaps a misspelt sin."""

    def factor(first: int, last: int) -> str:
        return text[tokens[first].start[1] : tokens[last].end[1]]

    closers = {opener: closer for closer, opener in openers.items()}
    last = right - 1
    first = openers.get(last, last)  # where the left factor starts: a number, a name, a bracket…
    if first > 0 and tokens[first - 1].type == tokenize.NAME and tokens[first].string in "([":
        first -= 1  # … or a call or an indexed variable
    end = right  # where the right factor ends: after its bracket, or its name's call or index
    if tokens[end].string in "([":
        end = closers.get(end, end)
    elif end + 1 < len(tokens) and tokens[end + 1].string in "([" and tokens[end + 1].start == tokens[end].end:
        end = closers.get(end + 1, end + 1)
    notes = []
    if first > 0 and tokens[first - 1].string == "/":
        divisor, other = factor(first, last), factor(right, end)
        notes.append(
            f"'{factor(first - 1, end)}' divides by {divisor} only: an implicit product binds like '*', as in "
            f"Mathematica and SymPy; write /({divisor}*{other}) to divide by the product"
        )
    left = tokens[last]
    if tokens[right].string == "(" and left.type == tokenize.NAME and left.end == tokens[right].start:
        close = difflib.get_close_matches(left.string, [*FUNCTIONS, *REDUCTIONS], n=1) if len(left.string) > 2 else []
        if close:
            notes.append(f"'{left.string}(...)' is read as the product {left.string}*(...); is it {close[0]}(...)?")
    return notes


def _implicit_product(left: tokenize.TokenInfo, right: tokenize.TokenInfo) -> bool:
    """Whether ``left right`` is a product written without ``*``: an operand's end (a number, a
    variable, ``)`` or ``]``) before an operand's start (a variable, ``(``, or a number after a bracket)."""

    def word(token: tokenize.TokenInfo) -> bool:
        return token.type == tokenize.NAME and token.string not in OPERATOR_WORDS

    ends = left.type == tokenize.NUMBER or word(left) or left.string in (")", "]")
    if not ends:
        return False
    if right.string == "(":
        return not (word(left) and (left.string in FUNCTIONS or left.string in REDUCTIONS))  # a call
    if word(right):
        return True
    return right.type == tokenize.NUMBER and left.string in (")", "]")


class _Builder:
    """Turns a screened Python syntax tree into SymPy objects, remembering source positions."""

    def __init__(self, text: str, start: int, python: str, origin: list[int]) -> None:
        self.text, self.start, self.python, self.origin = text, start, python, origin
        self.indices: dict[str, int] = {}  # the index variables of the sum() and prod() being expanded
        self.expanded = 0  # syntax-tree nodes that sum() and prod() have expanded to, against MAX_NODES
        self.members: set[str] = set()  # the variables written x[i]
        # ast counts bytes: the character at each byte offset (one entry per byte, computed once)
        self.characters = [i for i, ch in enumerate(python) for _ in ch.encode()] + [len(python)]

    def span(self, node: ast.AST) -> tuple[int, int]:
        """Where ``node`` is in the Python text, in characters."""
        begin = getattr(node, "col_offset", 0)
        end = getattr(node, "end_col_offset", None)
        return self.characters[begin], self.characters[end] if end is not None else len(self.python)

    def fail(self, message: str, node: ast.AST, hint: str | None = None) -> ExpressionError:
        at = self.span(node)[0]
        return ExpressionError(message, source=self.text, position=self.start + self.origin[at], hint=hint)

    def screen(self, tree: ast.Expression) -> None:
        """Enforce the node-count and depth limits before any recursion or SymPy work."""
        count = 0
        stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
        while stack:
            node, depth = stack.pop()
            count += 1
            if count > MAX_NODES:
                raise self.fail(f"expression has more than {MAX_NODES} parts", tree.body)
            if depth > MAX_DEPTH:
                raise self.fail(f"expression is nested more than {MAX_DEPTH} levels deep", node)
            group = _chain_group(node)
            stack.extend(
                (child, depth + (group is None or _chain_group(child) != group)) for child in ast.iter_child_nodes(node)
            )

    def number(self, node: ast.expr) -> sympy.Expr:
        """Build ``node`` where a number is expected: a condition becomes 1 or 0."""
        value = self.build(node)
        if isinstance(value, sympy.logic.boolalg.Boolean) and not isinstance(value, sympy.Expr):
            return sympy.Piecewise((sympy.S.One, value), (sympy.S.Zero, True))
        return value

    def condition(self, node: ast.expr) -> sympy.Basic:
        """Build ``node`` where a condition is expected: a number means ``!= 0``."""
        value = self.build(node)
        if isinstance(value, sympy.Expr):
            return sympy.Ne(value, 0)
        return value

    def build(self, node: ast.expr) -> sympy.Basic:
        try:
            return self._build(node)
        except (ArithmeticError, ValueError, TypeError) as e:  # SymPy refusing, e.g. 0 % 0
            raise self.fail(f"cannot compute {self.segment(node)}: {e}", node) from None

    def _build(self, node: ast.expr) -> sympy.Basic:
        if isinstance(node, ast.Constant):
            return self.literal(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if _chain_group(node) is not None:
            return self.chain(node)
        if isinstance(node, ast.BinOp):
            left, right = self.number(node.left), self.number(node.right)
            if isinstance(node.op, ast.Pow):
                return self.power(left, right, node)
            operation = _ARITHMETIC.get(type(node.op))
            if operation is None:
                raise self.fail(f"operator {_describe(node.op)} is not supported", node, _HINTS.get(type(node.op)))
            return operation(left, right)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return sympy.Not(self.condition(node.operand))
            if isinstance(node.op, ast.USub):
                return -self.number(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.number(node.operand)
        if isinstance(node, ast.BoolOp):
            join = sympy.And if isinstance(node.op, ast.And) else sympy.Or
            return join(*(self.condition(v) for v in node.values))
        if isinstance(node, ast.Compare):
            terms = [self.number(node.left), *(self.number(c) for c in node.comparators)]
            links = []
            for op, a, b in zip(node.ops, terms, terms[1:]):
                compare = _COMPARE.get(type(op))
                if compare is None:
                    raise self.fail(f"operator {_describe(op)} is not supported", node)
                links.append(compare(a, b))
            return sympy.And(*links)
        if isinstance(node, ast.IfExp):
            return sympy.Piecewise(
                (self.number(node.body), self.condition(node.test)), (self.number(node.orelse), True)
            )
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            return self.indexed(node)
        raise self.fail(f"{_describe(node)} is not allowed", node, _HINTS.get(type(node)))

    def chain(self, node: ast.BinOp) -> sympy.Expr:
        """``a + b - c …`` as one Add, ``a * b / c …`` as one Mul, built without recursion (a
        script's sum of 5,000 terms is a chain 5,000 deep) and without SymPy re-flattening each step."""
        group = _chain_group(node)
        operands: list[tuple[ast.expr, bool]] = []  # (operand, subtracted or divided by)
        stack: list[tuple[ast.expr, bool]] = [(node, False)]
        while stack:
            item, inverted = stack.pop()
            if _chain_group(item) == group:
                assert isinstance(item, ast.BinOp)
                stack.append((item.right, inverted != isinstance(item.op, (ast.Sub, ast.Div))))
                stack.append((item.left, inverted))
            else:
                operands.append((item, inverted))
        values = [(self.number(item), inverted) for item, inverted in operands]
        if group is ast.Add:
            return sympy.Add(*(-v if inverted else v for v, inverted in values))
        return sympy.Mul(*(1 / v if inverted else v for v, inverted in values))

    def literal(self, node: ast.Constant) -> sympy.Expr:
        if type(node.value) not in (int, float):
            raise self.fail(f"{_describe(node)} is not allowed", node, _HINTS[ast.Constant])
        begin, end = self.span(node)
        text = self.python[begin:end]
        if len(text) > MAX_LITERAL:
            raise self.fail(f"number literal is longer than {MAX_LITERAL} characters", node)
        text = text.replace("_", "")
        return sympy.Integer(text) if isinstance(node.value, int) else sympy.Float(text)

    def name(self, node: ast.Name) -> sympy.Expr:
        if node.id in self.indices:
            return sympy.Integer(self.indices[node.id])
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS or node.id in REDUCTIONS:
            raise self.fail(f"{node.id!r} is a function", node, f"call it: {node.id}(...)")
        return symbol(node.id.removeprefix(KEYWORD_VARIABLE))  # names users write never start with _

    def whole(self, node: ast.expr, what: str) -> int:
        """``node`` as an integer: an index or a bound, computed from the indices in scope."""
        value = self.number(node)
        if not (isinstance(value, sympy.Integer) or (value.is_Number and value == int(value))):
            raise self.fail(f"{what} must be a whole number, got {self.segment(node)}", node)
        return int(value)

    def indexed(self, node: ast.Subscript) -> sympy.Expr:
        """``x[i+1]`` inside a sum over i (or ``x[3]`` anywhere): the variable ``x_4`` (``x_3``)."""
        if not isinstance(node.value, ast.Name) or node.value.id in RESERVED or node.value.id in self.indices:
            raise self.fail("only a variable can be indexed, as in x[i]", node)
        base = self.name(node.value)
        if isinstance(node.slice, (ast.Slice, ast.Tuple)):
            raise self.fail("an index is one whole number, as in x[i] or x[i+1]", node.slice)
        free = [n.id for n in ast.walk(node.slice) if isinstance(n, ast.Name) and n.id not in self.indices]
        if free and free[0] not in RESERVED:
            raise self.fail(f"{free[0]!r} is not the index of a sum() or prod() around it", node.slice)
        index = self.whole(node.slice, "an index")
        if index < 0:
            raise self.fail(f"an index must be 0 or more, got {index}", node.slice)
        self.members.add(f"{base}_{index}")
        return symbol(f"{base}_{index}")

    def reduction(self, node: ast.Call, name: str) -> sympy.Expr:
        """``sum(expr, i, a, b)``: expr at i = a, a+1, …, b, added (``prod``: multiplied); the
        empty range (b < a) gives 0 (1). Expanded here, so every term is an ordinary expression."""
        if len(node.args) != 4 or node.keywords:
            raise self.fail(f"{name}() takes 4 arguments: {name}(expr, i, first, last)", node)
        body, index, first, last = node.args
        if not isinstance(index, ast.Name) or index.id in RESERVED or index.id.startswith("_"):
            raise self.fail(f"the second argument of {name}() is the index's name, as in {name}(x[i], i, 1, 9)", index)
        if index.id in self.indices:
            raise self.fail(f"the index {index.id!r} is already the index of an enclosing sum or prod", index)
        low, high = (
            self.whole(first, f"the first value of {index.id}"),
            self.whole(last, f"the last value of {index.id}"),
        )
        size = sum(1 for _ in ast.walk(body))
        self.expanded += size * max(high - low + 1, 0)
        if self.expanded > MAX_NODES:
            raise self.fail(f"{name}() expands to more than {MAX_NODES:,} parts", node, "try fewer terms")
        terms = []
        for value in range(low, high + 1):
            self.indices[index.id] = value
            terms.append(self.number(body))
        self.indices.pop(index.id, None)
        return REDUCTIONS[name](*terms)

    def call(self, node: ast.Call) -> sympy.Basic:
        if not isinstance(node.func, ast.Name):
            raise self.fail("only named functions can be called", node, "e.g. sin(x)")
        name = node.func.id
        if name in REDUCTIONS:
            return self.reduction(node, name)
        if node.keywords:
            raise self.fail(f"{name}() takes no keyword arguments", node.keywords[0].value)
        starred = [a for a in node.args if isinstance(a, ast.Starred)]
        if starred:
            raise self.fail("starred arguments are not allowed", starred[0])
        function = FUNCTIONS[name]
        fewest, most = function.arity
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            expected = f"{fewest}" if fewest == most else f"{fewest} or more" if most is None else f"{fewest} to {most}"
            raise self.fail(f"{name}() takes {expected} argument{'s' if most != 1 else ''}, got {len(node.args)}", node)
        args = [self.condition(a) if name == "where" and i == 0 else self.number(a) for i, a in enumerate(node.args)]
        if all(functions.is_constant(a) for a in args):
            return self.fold(lambda: function.build(*args), node)
        return function.build(*args)

    def fold(self, build: Callable[[], sympy.Basic], node: ast.AST) -> functions.Folded:
        """A constant call or power, evaluated in float64 now so that SymPy never evaluates it."""
        from .lower import evaluate_constant  # torch: only expressions with constant calls need it

        with sympy.evaluate(False):
            expr = build()
        return functions.Folded(self.segment(node), evaluate_constant(expr))

    def segment(self, node: ast.AST) -> str:
        """The user's text for ``node``."""
        begin, end = self.span(node)
        return self.text[self.start + self.origin[begin] : self.start + self.origin[end - 1] + 1]

    def power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.AST) -> sympy.Expr:
        """base**exponent, refusing constant powers whose exact value would be enormous."""
        if not (functions.is_constant(base) and functions.is_constant(exponent)):
            return base**exponent
        if not (base.is_Number and exponent.is_Number):
            return self.fold(lambda: sympy.Pow(base, exponent), node)
        if abs(base) in (0, 1):
            return base**exponent
        if _digits(exponent) > 0 and abs(float(exponent)) * _digits(base) > MAX_DIGITS:
            raise self.fail(
                f"constant power is too large (more than {MAX_DIGITS} digits)",
                node,
                "diffcli computes in floating point; rewrite with variables or smaller numbers",
            )
        if isinstance(exponent, sympy.Rational) and exponent.q != 1 and max(abs(exponent.p), exponent.q) > 1000:
            return sympy.Pow(base, exponent, evaluate=False)  # SymPy's exact roots can hang
        return base**exponent


def _digits(number: sympy.Number) -> float:
    """Decimal digits needed for ``number``: for a fraction its larger part, for a float its size."""
    if number.is_zero:
        return 0.0
    if isinstance(number, sympy.Rational):
        return max(abs(number.p).bit_length(), number.q.bit_length()) * math.log10(2)
    if isinstance(number, sympy.Float):
        _, mantissa, exponent, _ = number._mpf_
        return abs(exponent + mantissa.bit_length()) * math.log10(2)
    return math.inf  # oo, nan: no power of them is worth folding


def _chain_group(node: ast.AST) -> type[ast.operator] | None:
    """ast.Add for ``+`` and ``-``, ast.Mult for ``*`` and ``/``: the links of a flat chain."""
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return ast.Add
        if isinstance(node.op, (ast.Mult, ast.Div)):
            return ast.Mult
    return None


def _describe(node: ast.AST) -> str:
    symbols = {
        ast.FloorDiv: "//",
        ast.BitXor: "^",
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.MatMult: "@",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
        ast.Invert: "~",
    }
    if type(node) in symbols:
        return repr(symbols[type(node)])
    if isinstance(node, ast.Constant):
        return f"literal {node.value!r}"
    names = {
        ast.ListComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.List: "a list",
        ast.Tuple: "a tuple",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.NamedExpr: "':='",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.Slice: "a slice",
        ast.Starred: "a starred expression",
    }
    return names.get(type(node), type(node).__name__.lower())
