"""The CEL subset the stacks emit in Secure Web Proxy matchers, read into terms the egress model can reason about.

Secure Web Proxy's CEL matcher reference defines `host()`, `inUrlList(host(), LIST)`, `inIpRange(source.ip, CIDR)`
and the `request` attributes; CEL itself gives `==`, `in`, `startsWith`, `endsWith`, `contains`, `matches` (RE2),
`&&`, `||`, `!` and parentheses. The subset read here:

| term | meaning |
|---|---|
| `host() == 'h'`, `host().endsWith('s')` | host equality and suffix |
| `inUrlList(host(), 'projects/.../urlLists/N')` | the list's entries (`h`, `*.d` subdomains of d, `*d` d and its subdomains) |
| `request.method == 'M'`, `request.method in [...]` | method lists |
| `request.path == 'p'`, `request.path in [...]`, `.startsWith`, `.contains`, `.matches` | path equality, list, prefix, part, regular expression |
| `inIpRange(source.ip, 'cidr')` | the client's address range |
| `true`, `false` | constants |

Anything else (another attribute or function, a comparison the table does not name) is UNKNOWN: `parse` raises
`Unsupported`, and the model fails closed on it. The real CEL engine (review.egress, cel-python) stays the second
check on recorded traffic.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<op>&&|\|\||==|!=|[()\[\],.!])"""
                    r"""|(?P<name>[A-Za-z_][A-Za-z0-9_]*))""")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "/": "/"}


class Unsupported(ValueError):
    """A matcher outside the subset the model reads: UNKNOWN."""


@dataclass(frozen=True)
class Atom:
    kind: str          # host_eq host_suffix url_list method_in path_in path_prefix path_contains path_regex src const
    value: Any         # str, frozenset of str, bool, or an ip_network

    @property
    def dimension(self) -> str:
        return {"host_eq": "host", "host_suffix": "host", "url_list": "host", "method_in": "method",
                "src": "source", "const": "const"}.get(self.kind, "path")


# A term is an Atom, ("and", [terms]), ("or", [terms]) or ("not", term).
Term = Any


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot read {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(lit: str) -> str:
    body, out, i = lit[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1:i + 2]
            if nxt not in _ESCAPES:
                raise Unsupported(f"escape \\{nxt} in a string literal")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _Parser:
    def __init__(self, text: str):
        self.toks, self.i, self.text = _tokens(text), 0, text

    def peek(self, k: int = 0) -> tuple[str, str]:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        t = self.peek()
        if (value is not None and t[1] != value) or (kind is not None and t[0] != kind) or t[0] == "end":
            raise Unsupported(f"expected {value or kind} at {t[1]!r} in {self.text[:80]!r}")
        self.i += 1
        return t[1]

    def names(self, *words: str) -> bool:
        """The next tokens spell `words` (names and punctuation)."""
        return all(self.peek(k)[1] == w for k, w in enumerate(words))

    def parse(self) -> Term:
        term = self.or_()
        if self.peek()[0] != "end":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return term

    def or_(self) -> Term:
        parts = [self.and_()]
        while self.peek()[1] == "||":
            self.take("||")
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def and_(self) -> Term:
        parts = [self.unary()]
        while self.peek()[1] == "&&":
            self.take("&&")
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def unary(self) -> Term:
        if self.peek()[1] == "!":
            self.take("!")
            return ("not", self.unary())
        if self.peek()[1] == "(":
            self.take("(")
            term = self.or_()
            self.take(")")
            return term
        return self.atom()

    def string(self) -> str:
        return _unquote(self.take(kind="str"))

    def strings(self) -> frozenset:
        self.take("[")
        items = []
        while self.peek()[1] != "]":
            items.append(self.string())
            if self.peek()[1] == ",":
                self.take(",")
        self.take("]")
        return frozenset(items)

    def atom(self) -> Atom:
        if self.peek()[1] in ("true", "false"):
            return Atom("const", self.take() == "true")
        if self.peek()[0] == "str" and [self.peek(k)[1] for k in range(1, 5)] == ["==", "host", "(", ")"]:
            value = self.string()
            for w in ("==", "host", "(", ")"):
                self.take(w)
            return Atom("host_eq", value.lower())
        if self.names("host", "(", ")"):
            for w in ("host", "(", ")"):
                self.take(w)
            if self.peek()[1] == "==":
                self.take("==")
                return Atom("host_eq", self.string().lower())
            if self.names(".", "endsWith", "("):
                for w in (".", "endsWith", "("):
                    self.take(w)
                value = self.string()
                self.take(")")
                return Atom("host_suffix", value.lower())
            raise Unsupported("host() is compared only with == or endsWith here")
        if self.names("inUrlList", "(", "host", "(", ")", ","):
            for w in ("inUrlList", "(", "host", "(", ")", ","):
                self.take(w)
            value = self.string()
            self.take(")")
            return Atom("url_list", value)
        if self.names("inIpRange", "(", "source", ".", "ip", ","):
            for w in ("inIpRange", "(", "source", ".", "ip", ","):
                self.take(w)
            value = self.string()
            self.take(")")
            try:
                return Atom("src", ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise Unsupported(f"inIpRange range {value!r} is not an address range") from None
        if self.names("request", ".", "method"):
            for w in ("request", ".", "method"):
                self.take(w)
            if self.peek()[1] == "==":
                self.take("==")
                return Atom("method_in", frozenset({self.string()}))
            if self.peek()[1] == "in":
                self.take("in")
                return Atom("method_in", self.strings())
            raise Unsupported("request.method is compared only with == or in here")
        if self.names("request", ".", "path"):
            for w in ("request", ".", "path"):
                self.take(w)
            if self.peek()[1] == "==":
                self.take("==")
                return Atom("path_in", frozenset({self.string()}))
            if self.peek()[1] == "in":
                self.take("in")
                return Atom("path_in", self.strings())
            for fn, kind in (("startsWith", "path_prefix"), ("contains", "path_contains"), ("matches", "path_regex")):
                if self.names(".", fn, "("):
                    for w in (".", fn, "("):
                        self.take(w)
                    value = self.string()
                    self.take(")")
                    if kind == "path_regex":
                        _check_regex(value)
                    return Atom(kind, value)
            raise Unsupported("request.path is compared only with ==, in, startsWith, contains or matches here")
        raise Unsupported(f"{self.peek()[1]!r} is outside the CEL subset the model reads")


def _check_regex(value: str) -> None:
    """The proxy's `matches` is RE2: a pattern RE2 refuses (look-arounds, back-references) or Python's `re` reads
    otherwise is outside the subset."""
    try:
        re.compile(value)
        import re2  # the RE2 binding cel-python evaluates `matches` with
        re2.compile(value)
    except ImportError:
        pass
    except Exception as exc:
        raise Unsupported(f"regular expression {value!r}: {exc}") from None


_CACHE: dict[str, Term] = {}


def parse(text: str) -> Term:
    """The matcher as a term; raises Unsupported outside the subset. Cached: the same text parses once."""
    if text not in _CACHE:
        _CACHE[text] = _Parser(text).parse() if text.strip() else Atom("const", True)
    return _CACHE[text]


def atoms(term: Term):
    if isinstance(term, Atom):
        yield term
    elif term[0] == "not":
        yield from atoms(term[1])
    else:
        for t in term[1]:
            yield from atoms(t)


def url_list_matches(host: str, entries: tuple[str, ...]) -> bool:
    """Secure Web Proxy URL list semantics for a host (stacks.facts.host_allowed is the one implementation)."""
    from stacks.facts import host_allowed
    return host_allowed(host, entries)


@dataclass(frozen=True)
class Point:
    """One request as the proxy sees it; None for a dimension not fixed yet (partial evaluation)."""
    source: object = None       # an ip_address
    host: str | None = None
    method: str | None = None
    path: str | None = None


_REGEX: dict[str, re.Pattern] = {}


def _atom(a: Atom, p: Point, lists: dict[str, tuple[str, ...]]):
    k = a.kind
    if k == "const":
        return a.value
    if k == "src":
        return None if p.source is None else p.source in a.value
    if k in ("host_eq", "host_suffix", "url_list"):
        if p.host is None:
            return None
        if k == "host_eq":
            return p.host == a.value
        if k == "host_suffix":
            return p.host.endswith(a.value)
        if a.value not in lists:
            raise Unsupported(f"URL list {a.value} is not in the plan")
        return url_list_matches(p.host, lists[a.value])
    if k == "method_in":
        return None if p.method is None else p.method in a.value
    if p.path is None:
        return None
    if k == "path_in":
        return p.path in a.value
    if k == "path_prefix":
        return p.path.startswith(a.value)
    if k == "path_contains":
        return a.value in p.path
    rx = _REGEX.get(a.value)
    if rx is None:
        rx = _REGEX[a.value] = re.compile(a.value)
    return rx.search(p.path) is not None         # CEL matches: RE2 search (unanchored unless the pattern anchors)


def evaluate(term: Term, p: Point, lists: dict[str, tuple[str, ...]]):
    """True / False, or None where it depends on a dimension the point leaves open (three-valued)."""
    if isinstance(term, Atom):
        return _atom(term, p, lists)
    op, arg = term
    if op == "not":
        v = evaluate(arg, p, lists)
        return None if v is None else not v
    values = []
    for t in arg:
        v = evaluate(t, p, lists)
        if op == "and" and v is False:
            return False
        if op == "or" and v is True:
            return True
        values.append(v)
    return None if None in values else (op == "and")


# Witnesses: requests that exercise each path term -----------------------------------------------------------------
def regex_examples(pattern: str, limit: int = 50000) -> list[str]:
    """Strings the pattern matches: every combination of its alternatives while there are at most `limit`, beyond
    that every alternative at least once (optional parts with and without, repeats taken once, classes by their
    first member). Enough to exercise a rule's regular expression; not every string it matches."""
    try:
        from re import _parser as sre  # type: ignore[attr-defined]
    except ImportError:                                     # Python < 3.11
        import sre_parse as sre  # type: ignore[no-redef]
    C = sre.__dict__

    def gen(items) -> list[str]:
        outs = [""]
        for op, av in items:
            opts = node(op, av)
            if not opts:
                return []
            if len(outs) * len(opts) <= limit:
                outs = [o + x for o in outs for x in opts]
            else:       # too many combinations: every option at least once, every earlier string once
                outs = [o + opts[0] for o in outs] + [outs[0] + x for x in opts[1:]]
        return outs

    def node(op, av) -> list[str]:
        if op is C["LITERAL"]:
            return [chr(av)]
        if op is C["NOT_LITERAL"]:
            return ["x" if av != ord("x") else "y"]
        if op is C["ANY"]:
            return ["x"]
        if op is C["IN"]:
            for kind, val in av:
                if kind is C["LITERAL"]:
                    return [chr(val)]
                if kind is C["RANGE"]:
                    return [chr(val[0])]
                if kind is C["CATEGORY"]:
                    return ["a" if "WORD" in str(val) or "NOT_SPACE" in str(val) else
                            "0" if "DIGIT" in str(val) else " "]
                if kind is C["NEGATE"]:
                    return ["x"]
            return ["x"]
        if op in (C["MAX_REPEAT"], C["MIN_REPEAT"], C.get("POSSESSIVE_REPEAT")):
            lo, _hi, sub = av
            one = gen(sub)
            return ([""] if lo == 0 else []) + [s * max(lo, 1) for s in one]
        if op is C["SUBPATTERN"]:
            return gen(av[-1])
        if op is C["BRANCH"]:
            return [s for b in av[1] for s in gen(b)]
        if op in (C["AT"],):
            return [""]
        if op is C["CATEGORY"]:
            return ["a"]
        if op is C["GROUPREF"]:
            return [""]
        return ["x"]
    try:
        return sorted(set(gen(list(sre.parse(pattern)))))
    except Exception:           # a construct the generator does not know: the probes still exercise the rule
        return []


def path_witnesses(term: Term, ambiguous: tuple[str, ...]) -> set[str]:
    """Paths that exercise a term's path atoms: each listed path; each prefix followed by a name, and by each part a
    server may normalize (`..`, `//`, encoded dots and slashes); a path holding each `contains` part; examples of
    each regular expression (and of their prefixes followed by those parts)."""
    out: set[str] = set()
    for a in atoms(term):
        if a.kind == "path_in":
            out |= set(a.value)
        elif a.kind == "path_prefix":
            out |= {a.value + "x", a.value} | {a.value + part + "x" for part in ambiguous}
        elif a.kind == "path_contains":
            out.add("/x" + a.value + "x")
        elif a.kind == "path_regex":
            for ex in regex_examples(a.value):
                out.add(ex)
                if ex.endswith("x") or ex.endswith("/"):
                    out |= {ex + part + "x" for part in ambiguous}
    return out
