"""Variable names as people write them in options and columns: ``x[3]`` for x_3, families
``x_1, x_2, …``, and their order. Plain text, no SymPy: a command whose formula comes from the
cache reads its options with these alone."""

from __future__ import annotations

import re
from collections.abc import Iterable


def variable_name(text: str) -> str:
    """The variable a name in an option or column means: ``x[3]`` is x_3 (see ``x[i]``)."""
    return re.sub(r"^(\w+)\[(\d+)\]$", lambda m: f"{m[1]}_{int(m[2])}", text.strip())  # x[01] is x[1]


def in_order(names: Iterable[str]) -> list[str]:
    """``names`` sorted with their numbers as numbers: x_2 before x_10, as people count."""
    return sorted(names, key=lambda n: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", n)])


def family(base: str, names: Iterable[str]) -> list[str]:
    """The members ``base_1``, ``base_2``, … of an indexed family (from ``base[i]``) among ``names``."""
    return in_order(n for n in names if re.fullmatch(rf"{re.escape(base)}_\d+", n))
