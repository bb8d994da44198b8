"""Symbolic problems generated and solved with sympy: exact answers, step-by-step solutions.

Six kinds, each a category for per-type breakdowns:

==============  ============================  ===============================================
kind            category                      problem
==============  ============================  ===============================================
linear          algebra/linear                ``a x + b = c x + d`` (integer or fraction root)
quadratic       algebra/quadratic             ``a x^2 + b x + c = 0`` with rational roots
derivative      calculus/derivative           sums of powers, sin, cos, exp, log; one product
integral        calculus/integral             definite integral of a polynomial (no ``+ C``)
determinant     linear_algebra/determinant    2x2 or 3x3 integer matrix
eigenvalues     linear_algebra/eigenvalues    2x2 integer matrix with integer eigenvalues
==============  ============================  ===============================================

**Answer format** (one rule for all kinds): LaTeX from ``sympy.latex`` inside ``$...$``, several
values sorted and joined by ``", "`` (``"$-2, 3$"``). math-verify parses these as numbers,
expressions and sets (``verify(parse("$-2, 3$"), parse("\\boxed{3, -2}"))`` is True), while a
bare sympy ``str`` such as ``6*x + cos(x)`` would not parse.

**Determinism and splits**: one ``random.Random`` per call, seeded by ``(seed, split)``. A problem
belongs to the test split when the SHA-256 of its mathematical content (the equation, function or
matrix, not the wording) is 0 mod 5, so ``train`` and ``test`` never share a problem whatever
their seeds (``split=None`` takes both).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from mathkit.data.schema import check_split, in_test_bucket, make_record
from mathkit.errors import DataError

SOURCE = "sympy_problems"
DEFAULT_PER_KIND = 100


def _sympy():
    import sympy

    return sympy


def _tex(expr) -> str:
    return _sympy().latex(expr, ln_notation=True)  # math-verify reads \\log as log10


def _answer(values) -> str:
    """``$v$`` or ``$v1, v2$`` (sorted) in LaTeX: the answer format of this module."""
    if isinstance(values, (list, tuple, set)):
        vals = sorted(set(values), key=lambda v: float(v))
        return "$" + ", ".join(_tex(v) for v in vals) + "$"
    return f"${_tex(values)}$"


def _p(value) -> str:
    """LaTeX of a value, in parentheses when negative (``3 \\cdot \\left(-2\\right)``)."""
    text = _tex(value)
    return f"\\left({text}\\right)" if text.lstrip().startswith("-") else text


def _nonzero(rng: random.Random, lo: int, hi: int) -> int:
    while True:
        v = rng.randint(lo, hi)
        if v:
            return v


# ---- generators: rng -> (problem, solution, answer, key) --------------------------------------
# ``key`` is the mathematical content without the wording, used for de-duplication and the split.

def _linear(rng: random.Random) -> tuple[str, str, str, str]:
    sp = _sympy()
    x = sp.Symbol("x")
    a, c = _nonzero(rng, -9, 12), rng.randint(-6, 6)
    while a == c:
        c = rng.randint(-6, 6)
    b, d = rng.randint(-20, 20), rng.randint(-20, 20)
    lhs, rhs = a * x + b, c * x + d
    (root,) = sp.solve(sp.Eq(lhs, rhs), x)
    k, m = a - c, d - b
    intro = rng.choice(["Solve for $x$", "Find $x$", "Solve the equation"])
    problem = f"{intro}: ${_tex(lhs)} = {_tex(rhs)}$."
    steps = []
    if c:
        move = f"Subtract ${_tex(c * x)}$ from" if c > 0 else f"Add ${_tex(-c * x)}$ to"
        steps.append(f"{move} both sides: ${_tex(k * x + b)} = {d}$.")
    steps.append(f"Move the constant to the right-hand side: ${_tex(k * x)} = {d} - {_p(b)} = {m}$.")
    steps.append(f"Divide both sides by ${k}$: $x = \\frac{{{m}}}{{{k}}} = {_tex(root)}$.")
    check = f"Check: ${_p(a)} \\cdot {_p(root)} + {_p(b)} = {_tex(lhs.subs(x, root))}$"
    if c:
        check += f" and ${_p(c)} \\cdot {_p(root)} + {_p(d)} = {_tex(rhs.subs(x, root))}$"
    steps.append(check + ".")
    return problem, "\n".join(steps), _answer(root), f"linear:{lhs}={rhs}"


def _quadratic(rng: random.Random) -> tuple[str, str, str, str]:
    sp = _sympy()
    x = sp.Symbol("x")
    r2 = rng.randint(-9, 9)
    if rng.random() < 0.3:  # one fractional root p/m
        m = rng.choice([2, 3, 4, 5])
        p = rng.choice([v for v in range(-9, 10) if v % m])
        poly = sp.expand((m * x - p) * (x - r2) * rng.choice([1, -1]))
    else:
        poly = sp.expand(rng.choice([1, 1, 2, 3, -1, -2]) * (x - rng.randint(-9, 9)) * (x - r2))
    a, b, c = (int(poly.coeff(x, k)) for k in (2, 1, 0))
    roots = sorted(sp.roots(sp.Poly(poly, x)), key=float)  # distinct roots, exact
    disc = b * b - 4 * a * c
    problem = f"{rng.choice(['Solve', 'Find all real solutions of', 'Find the roots of'])} ${_tex(poly)} = 0$."
    steps = [
        f"This is a quadratic $a x^2 + b x + c = 0$ with $a = {a}$, $b = {b}$, $c = {c}$.",
        f"The discriminant is $b^2 - 4ac = ({b})^2 - 4 \\cdot ({a}) \\cdot ({c}) = {disc}$.",
        f"Its square root is $\\sqrt{{{disc}}} = {_tex(sp.sqrt(disc))}$.",
        f"By the quadratic formula $x = \\frac{{-b \\pm \\sqrt{{b^2-4ac}}}}{{2a}} = "
        f"\\frac{{{-b} \\pm {_tex(sp.sqrt(disc))}}}{{{2 * a}}}$.",
    ]
    if len(roots) == 1:
        steps.append(f"The discriminant is zero, so there is one (double) root $x = {_tex(roots[0])}$.")
    else:
        lo, hi = sorted(roots, key=float)
        steps.append(f"So $x = {_tex(lo)}$ or $x = {_tex(hi)}$.")
    return problem, "\n".join(steps), _answer(roots), f"quadratic:{poly}"


def _derivative_term(rng: random.Random, x):
    sp = _sympy()
    c = _nonzero(rng, -7, 7)
    k = rng.randint(2, 5)
    kind = rng.choice(["power", "power", "sin", "cos", "exp", "log"])
    if kind == "power":
        return c * x ** k, f"the power rule gives $\\frac{{d}}{{dx}} x^{{n}} = n x^{{n-1}}$"
    if kind == "sin":
        return c * sp.sin(k * x), "the chain rule gives $\\frac{d}{dx} \\sin(kx) = k \\cos(kx)$"
    if kind == "cos":
        return c * sp.cos(k * x), "the chain rule gives $\\frac{d}{dx} \\cos(kx) = -k \\sin(kx)$"
    if kind == "exp":
        return c * sp.exp(k * x), "the chain rule gives $\\frac{d}{dx} e^{kx} = k e^{kx}$"
    return c * sp.log(x), "$\\frac{d}{dx} \\ln x = \\frac{1}{x}$"


def _derivative(rng: random.Random) -> tuple[str, str, str, str]:
    sp = _sympy()
    x = sp.Symbol("x")
    if rng.random() < 0.25:  # one product, to show the product rule
        u = x ** rng.randint(1, 3)
        v = rng.choice([sp.sin(x), sp.cos(x), sp.exp(x), sp.log(x)])
        f = _nonzero(rng, -5, 5) * u * v
        d = sp.diff(f, x)
        du, dv = sp.diff(u, x), sp.diff(v, x)
        steps = [f"Write $f(x) = {_tex(f)}$ as a constant times $u v$ with $u = {_tex(u)}$, $v = {_tex(v)}$.",
                 f"Then $u' = {_tex(du)}$ and $v' = {_tex(dv)}$.",
                 "By the product rule $(uv)' = u'v + uv'$:",
                 f"$f'(x) = {_tex(sp.expand(d))}$."]
    else:
        terms: list = []
        target = rng.randint(2, 3)
        while len(terms) < target:
            t, rule = _derivative_term(rng, x)
            if all((t / s).free_symbols for s, _ in terms):  # no two like terms
                terms.append((t, rule))
        f = sum(t for t, _ in terms)
        d = sp.diff(f, x)
        steps = ["Differentiate term by term."]
        steps += [f"For ${_tex(t)}$, {rule}: $\\frac{{d}}{{dx}}\\left({_tex(t)}\\right) = {_tex(sp.diff(t, x))}$."
                  for t, rule in terms]
        steps.append(f"Adding the terms: $f'(x) = {_tex(d)}$.")
    verb = rng.choice(["Find the derivative of", "Differentiate", "Compute $f'(x)$ for"])
    return f"{verb} $f(x) = {_tex(f)}$.", "\n".join(steps), _answer(d), f"derivative:{f}"


def _integral(rng: random.Random) -> tuple[str, str, str, str]:
    sp = _sympy()
    x = sp.Symbol("x")
    degrees = sorted(rng.sample(range(0, 4), rng.randint(2, 3)), reverse=True)
    f = sum(_nonzero(rng, -6, 6) * x ** k for k in degrees)
    lo = rng.randint(-3, 2)
    hi = rng.randint(lo + 1, 4)
    big_f = sp.Poly(f, x).integrate().as_expr()  # polynomial integration: far faster than integrate()
    f_hi, f_lo = big_f.subs(x, hi), big_f.subs(x, lo)
    value = f_hi - f_lo
    problem = f"Evaluate the definite integral $\\int_{{{lo}}}^{{{hi}}} \\left({_tex(f)}\\right) \\, dx$."
    steps = [
        f"An antiderivative, term by term with $\\int x^n \\, dx = \\frac{{x^{{n+1}}}}{{n+1}}$, is "
        f"$F(x) = {_tex(big_f)}$.",
        f"$F({hi}) = {_tex(f_hi)}$ and $F({lo}) = {_tex(f_lo)}$.",
        f"By the fundamental theorem of calculus the integral is $F({hi}) - F({lo}) = {_tex(value)}$.",
    ]
    return problem, "\n".join(steps), _answer(value), f"integral:{f}:{lo}:{hi}"


def _determinant(rng: random.Random) -> tuple[str, str, str, str]:
    sp = _sympy()
    size = rng.choice([2, 2, 3])
    m = sp.Matrix(size, size, [rng.randint(-6, 6) for _ in range(size * size)])
    det = m.det()
    problem = f"{rng.choice(['Compute', 'Find', 'Evaluate'])} the determinant of $A = {_tex(m)}$."
    if size == 2:
        a, b, c, d = m
        steps = [f"For a $2 \\times 2$ matrix, $\\det A = ad - bc = ({a})({d}) - ({b})({c}) = "
                 f"{a * d} - ({b * c}) = {det}$."]
    else:
        steps = ["Expand along the first row: $\\det A = a_{11} M_{11} - a_{12} M_{12} + a_{13} M_{13}$."]
        total = []
        for j in range(3):
            minor = m.minor_submatrix(0, j)
            md = minor.det()
            steps.append(f"$M_{{1{j + 1}}} = \\det {_tex(minor)} = {md}$.")
            total.append((-1) ** j * m[0, j] * md)
        steps.append(f"So $\\det A = ({m[0, 0]})({m.minor_submatrix(0, 0).det()}) - ({m[0, 1]})"
                     f"({m.minor_submatrix(0, 1).det()}) + ({m[0, 2]})({m.minor_submatrix(0, 2).det()}) = {det}$.")
    return problem, "\n".join(steps), _answer(det), f"determinant:{list(m)}"


def _eigenvalues(rng: random.Random) -> tuple[str, str, str, str]:
    sp = _sympy()
    lam = sp.Symbol("lambda")
    while True:
        a, b, c, d = (rng.randint(-5, 5) for _ in range(4))
        tr, det = a + d, a * d - b * c
        disc = tr * tr - 4 * det
        if disc >= 0 and sp.sqrt(disc).is_integer and (b or c):
            break
    m = sp.Matrix([[a, b], [c, d]])
    values = list(m.eigenvals())
    problem = f"Find the eigenvalues of the matrix $A = {_tex(m)}$."
    char = lam ** 2 - tr * lam + det
    steps = [
        f"The eigenvalues solve $\\det(A - \\lambda I) = 0$. For a $2 \\times 2$ matrix this is "
        f"$\\lambda^2 - (\\operatorname{{tr}} A)\\lambda + \\det A = 0$.",
        f"$\\operatorname{{tr}} A = {a} + ({d}) = {tr}$ and $\\det A = ({a})({d}) - ({b})({c}) = {det}$.",
        f"So ${_tex(char)} = 0$, with discriminant ${tr}^2 - 4 \\cdot ({det}) = {disc}$.",
        f"$\\lambda = \\frac{{{tr} \\pm {_tex(sp.sqrt(disc))}}}{{2}}$, giving "
        + ", ".join(f"$\\lambda = {_tex(v)}$" for v in sorted(values, key=float)) + ".",
    ]
    return problem, "\n".join(steps), _answer(values), f"eigenvalues:{list(m)}"


KINDS: dict[str, tuple[str, Callable[[random.Random], tuple[str, str, str, str]]]] = {
    "linear": ("algebra/linear", _linear),
    "quadratic": ("algebra/quadratic", _quadratic),
    "derivative": ("calculus/derivative", _derivative),
    "integral": ("calculus/integral", _integral),
    "determinant": ("linear_algebra/determinant", _determinant),
    "eigenvalues": ("linear_algebra/eigenvalues", _eigenvalues),
}


def generate(n: int | None = None, seed: int = 0, split: str | None = None,
             kinds: Sequence[str] | None = None) -> list[dict[str, str]]:
    """``n`` distinct problems (default 100 per kind), kinds in turn, in the given split."""
    kinds = list(kinds or KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise DataError(f"unknown sympy problem kind(s) {unknown}; known: {list(KINDS)}")
    check_split(SOURCE, split)
    n = DEFAULT_PER_KIND * len(kinds) if n is None else n
    rng = random.Random(f"{SOURCE}/{seed}/{split}")
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n + 100:
            raise DataError(f"sympy_problems found only {len(rows)} distinct problems of {n} asked "
                            f"for kinds {kinds}; ask for fewer")
        kind = kinds[len(rows) % len(kinds)]
        category, make = KINDS[kind]
        problem, solution, answer, key = make(rng)
        if key in seen or (split is not None and in_test_bucket(key) != (split == "test")):
            continue
        seen.add(key)
        rows.append(make_record(id=f"{SOURCE}/{split or 'all'}/{seed}-{len(rows)}", source=SOURCE,
                                problem=problem, solution=solution, answer=answer, template="",
                                category=category))
    return rows
