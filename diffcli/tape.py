"""A formula as a computation graph (a tape), and its derivatives taken over the graph.

Differentiating the SymPy tree and sharing subexpressions afterwards (``sympy.cse``) is fast for
small formulas, but the tree swells under composition: SymPy flattens the sums and products the
chain rule builds, so a derivative shares little with the value and CSE must rediscover it (a
written-out tanh network of width 16: 10 s before the first row). Here every node of the formula
is a *slot*, an opaque symbol defined by one small expression over earlier slots, variables and
numbers, each distinct definition once (common subexpressions by hashing; SymPy folds the
constants). Derivatives are more slots: reverse mode (one adjoint per slot: a gradient costs a
small constant times the value) for gradients, Jacobians and VJPs, forward mode (one tangent per
slot) for JVPs and, over the adjoints, for Hessians. Each step's local partial is the symbolic
path's own rule applied to one definition, so the accurate forms of ``rules.py`` hold; every pass
is linear in the tape's length, and ``needed`` leaves out the slots no output uses.

Branches (``where``, ``if else``) stay on the symbolic path: an adjoint pushed into the branch not
taken is 0 times that branch's partials, which is NaN where they are (sqrt below 0), and the
symbolic path selects whole derivatives instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import sympy

from . import functions, rules


class Slot(sympy.Dummy):
    """A node of the tape: it stands for its definition (``Tape.definitions``)."""


def _inlined(factor: sympy.Basic) -> bool:
    """A power kept inside its product rather than given a slot: x/y stays one division."""
    return factor.is_Pow and factor.exp.is_Number  # type: ignore[attr-defined]


class Tape:
    """Slots in the order they were defined (each one's inputs before it), and their derivatives.

    ``partial(expr, name)`` is the symbolic derivative of one definition by one of its inputs
    (``transforms.Differentiator``): the registry's rules, the same as the symbolic path's.
    """

    def __init__(self, partial: Callable[[sympy.Basic, str], sympy.Basic]) -> None:
        self.partial_of = partial
        self.definitions: dict[Slot, sympy.Basic] = {}
        self.position: dict[Slot, int] = {}
        self.inputs: dict[Slot, tuple[sympy.Symbol, ...]] = {}  # the slots and variables it reads
        self.names: dict[Slot, frozenset[str]] = {}  # the variables it depends on
        self.traced: dict[sympy.Basic, sympy.Basic] = {}  # expression or definition -> slot (an atom: itself)
        self.partials: dict[tuple[Slot, sympy.Symbol], sympy.Basic] = {}
        self.tangents: dict[tuple[tuple[str, sympy.Basic], ...], dict[Slot, sympy.Basic]] = {}

    def trace(self, expr: sympy.Basic) -> sympy.Basic:
        """The slot of ``expr`` (an atom stays itself), recording its nodes, innermost first."""
        stack: list[tuple[sympy.Basic, bool]] = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in self.traced:
                continue
            parts = _parts(node)
            if not parts:
                self.traced[node] = node
            elif ready:
                self.traced[node] = self.record(self._rebuild(node))
            else:
                stack.append((node, True))
                stack.extend((p, False) for p in parts if p not in self.traced)
        return self.traced[expr]

    def record(self, definition: sympy.Basic) -> sympy.Basic:
        """The slot defined by ``definition`` (whose arguments are traced), made once."""
        if not definition.args:
            return definition
        slot = self.traced.get(definition)
        if slot is None:
            slot = Slot(f"%{len(self.definitions)}")
            inputs = tuple(s for s in definition.free_symbols if not isinstance(s, functions.Folded))
            self.definitions[slot] = definition
            self.position[slot] = len(self.position)
            self.inputs[slot] = inputs  # type: ignore[assignment]
            condition = isinstance(definition, sympy.logic.boolalg.Boolean) and not isinstance(definition, sympy.Expr)
            # a condition (a partial's tie in max, a kink's place) has no derivative: it depends on nothing
            self.names[slot] = frozenset() if condition else frozenset().union(*(self._names(s) for s in inputs))
            self.traced[definition] = slot
        return slot

    def __call__(self, expr: sympy.Basic, variable: str) -> sympy.Basic:
        """d expr / d variable by forward mode (as ``Differentiator``: over a gradient, a Hessian)."""
        return self.tangent(expr, {variable: 1})

    def tangent(self, expr: sympy.Basic, direction: Mapping[str, sympy.Basic]) -> sympy.Basic:
        """The derivative of ``expr`` along ``direction`` (variable -> weight), by forward mode."""
        key = tuple(sorted(direction.items()))
        root = self.trace(expr)
        if not isinstance(root, Slot):
            return sympy.S(direction.get(root.name, 0)) if isinstance(root, sympy.Symbol) else sympy.S.Zero
        known = self.tangents.setdefault(key, {})
        for slot in self._reachable([root], set(direction), known):
            terms = []
            for a in self.inputs[slot]:
                dot = known.get(a, sympy.S.Zero) if isinstance(a, Slot) else direction.get(a.name, sympy.S.Zero)
                if dot != 0:
                    terms.append(self.record(self.partial(slot, a) * dot))
            known[slot] = self.record(sympy.Add(*terms))
        return known.get(root, sympy.S.Zero)

    def gradient(self, seeds: Iterable[tuple[sympy.Basic, sympy.Basic]], wrt: Sequence[str]) -> dict[str, sympy.Basic]:
        """Σ weight · d expr / d v for each v in ``wrt`` over ``seeds`` (expr, weight), by reverse mode."""
        wanted = set(wrt)
        adjoints: dict[sympy.Basic, list[sympy.Basic]] = {}
        for expr, weight in seeds:
            root = self.trace(expr)
            key = root if isinstance(root, Slot) else getattr(root, "name", None)
            adjoints.setdefault(key, []).append(weight)
        roots = [s for s in adjoints if isinstance(s, Slot)]
        for slot in reversed(self._reachable(roots, wanted, {})):
            bar = self.record(sympy.Add(*adjoints.pop(slot, [])))
            if bar == 0:
                continue
            for a in self.inputs[slot]:
                if wanted & self._names(a):
                    key = a if isinstance(a, Slot) else a.name
                    adjoints.setdefault(key, []).append(self.record(bar * self.partial(slot, a)))
        return {v: self.record(sympy.Add(*adjoints.get(v, []))) for v in wrt}

    def partial(self, slot: Slot, argument: sympy.Symbol) -> sympy.Basic:
        """d slot / d argument, one of its inputs, as a traced expression (made once). Where the
        accurate forms of ``rules.py`` apply to it with its inputs' definitions written in (the
        log(1 + a) of d (1 + a)**b / db is log1p(a)), they are taken."""
        key = (slot, argument)
        if key not in self.partials:
            partial = self.partial_of(self.definitions[slot], argument.name)
            inputs = {a: self.definitions[a] for a in partial.free_symbols if isinstance(a, Slot)}
            written = partial.xreplace(inputs)
            accurate = rules.accurate(written) if _rewritable(written) else written
            self.partials[key] = self.trace(accurate if accurate != written else partial)
        return self.partials[key]

    def needed(self, roots: Iterable[sympy.Basic]) -> list[tuple[Slot, sympy.Basic]]:
        """The definitions ``roots`` read, in tape order: the others are dead."""
        seen: set[Slot] = set()
        stack = [r for r in roots if isinstance(r, Slot)]
        while stack:
            slot = stack.pop()
            if slot not in seen:
                seen.add(slot)
                stack.extend(a for a in self.inputs[slot] if isinstance(a, Slot))
        return [(s, self.definitions[s]) for s in sorted(seen, key=self.position.__getitem__)]

    def formula(self, expr: sympy.Basic) -> sympy.Basic:
        """``expr`` with every slot written out as its definition: SymPy's tree (for printing)."""
        whole: dict[Slot, sympy.Basic] = {}
        for slot, definition in self.needed(expr.free_symbols):
            whole[slot] = definition.xreplace(whole)
        return expr.xreplace(whole)

    def _names(self, symbol: sympy.Basic) -> frozenset[str]:
        return self.names[symbol] if isinstance(symbol, Slot) else frozenset([symbol.name])  # type: ignore[attr-defined]

    def _reachable(self, roots: Sequence[Slot], wanted: set[str], known: Mapping[Slot, object]) -> list[Slot]:
        """The slots below ``roots`` that depend on ``wanted`` and are not ``known``, in tape order."""
        seen: set[Slot] = set()
        stack = [r for r in roots if r not in known and wanted & self.names[r]]
        while stack:
            slot = stack.pop()
            if slot not in seen:
                seen.add(slot)
                stack.extend(
                    a for a in self.inputs[slot] if isinstance(a, Slot) and a not in known and wanted & self.names[a]
                )
        return sorted(seen, key=self.position.__getitem__)

    def _rebuild(self, node: sympy.Basic) -> sympy.Basic:
        """``node`` over the slots of its arguments."""
        if node.is_Mul:
            return sympy.Mul(
                *(sympy.Pow(self.traced[f.base], f.exp) if _inlined(f) else self.traced[f] for f in node.args)
            )
        if isinstance(node, sympy.Piecewise):  # a partial's branches (max's): its pairs are not values
            return sympy.Piecewise(*((self.traced[e], self.traced[c]) for e, c in node.args))
        args = [self.traced[a] for a in node.args]
        return node if all(a is b for a, b in zip(args, node.args)) else node.func(*args)


def _parts(node: sympy.Basic) -> tuple[sympy.Basic, ...]:
    """The subexpressions whose slots ``node``'s definition reads (a product's powers: their bases)."""
    if isinstance(node, (sympy.Symbol, functions.Folded)):
        return ()
    if node.is_Mul:
        return tuple(f.base if _inlined(f) else f for f in node.args)
    if isinstance(node, sympy.Piecewise):
        return tuple(part for pair in node.args for part in pair.args)
    return node.args


def _rewritable(expr: sympy.Basic) -> bool:
    """Whether ``rules.accurate`` may change ``expr``: it has a log, an exp or a square root."""
    return any(
        isinstance(e, (sympy.log, sympy.exp)) or (e.is_Pow and e.exp in (sympy.S.Half, -sympy.S.Half))
        for e in sympy.preorder_traversal(expr)
    )


def suits(exprs: Sequence[sympy.Basic]) -> bool:
    """Whether the graph may differentiate ``exprs``: no branches (see the module's note)."""
    return not any(e.has(sympy.Piecewise, sympy.ITE) for e in exprs)
