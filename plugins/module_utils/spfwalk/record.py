"""SPF record syntax (RFC 7208 sections 4.5, 4.6, 5, 6 and 7), parsed into terms.

A syntax error anywhere in a record makes the whole record a permerror (RFC 7208 4.6),
so parsing happens before any term is looked up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUALIFIERS = "+-~?"
PASS = "+"
# Mechanisms that cost a DNS query (RFC 7208 4.6.4); "redirect" is the modifier that does.
DNS_MECHANISMS = ("a", "mx", "ptr", "include", "exists")
MECHANISMS = (*DNS_MECHANISMS, "ip4", "ip6", "all")

_VERSION = re.compile(r"^v=spf1(?: |$)", re.IGNORECASE)
_MODIFIER_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$", re.IGNORECASE)
# RFC 7208 7.1: %{letter digits r delimiters}, or the escapes %% %_ %-. The letters c, r
# and t are allowed only in explanation text (the TXT record exp= points to), never in a record.
_MACRO = re.compile(r"%(?:\{[slodiphv][0-9]*r?[.\-+,/_=]*\}|[%_-])", re.IGNORECASE)
# RFC 7208 3.1, 4.6.1: a record is US-ASCII terms (visible characters) separated by spaces.
_NOT_RECORD_CHAR = re.compile(r"[^\x20-\x7e]")
# RFC 7208 5.6: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT), so no leading zeros.
_CIDR4 = r"(?:/(0|[1-9][0-9]?))"
_CIDR6 = r"(?:/(0|[1-9][0-9]{0,2}))"
_DUAL_CIDR = re.compile(rf"^(.*?){_CIDR4}?(?:/{_CIDR6})?$")
_IP4_ADDRESS = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_IP6_ADDRESS = re.compile(r"^[0-9a-f:.]+$", re.IGNORECASE)  # hex groups, "::", an embedded IPv4 tail
# RFC 7208 toplabel: alphanumeric with at least one letter, or containing inner hyphens.
_TOPLABEL = re.compile(r"^(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])$", re.IGNORECASE)


class SpfSyntaxError(ValueError):
    """The record breaks RFC 7208 syntax: the result is permerror."""


class MultipleRecordsError(ValueError):
    """More than one SPF record at a name: permerror (RFC 7208 4.5)."""


@dataclass(frozen=True)
class Term:
    qualifier: str
    name: str  # mechanism or modifier name, lower case
    domain: str | None = None  # domain-spec (may hold macros) or None for "this domain"
    network: str | None = None  # ip4/ip6 literal as written (without its CIDR length)
    cidr4: int | None = None
    cidr6: int | None = None
    text: str = ""  # the term as written, for messages and provenance

    @property
    def has_macro(self) -> bool:
        return self.domain is not None and "%" in self.domain


@dataclass(frozen=True)
class Record:
    mechanisms: tuple[Term, ...]
    redirect: Term | None = None

    @property
    def has_all(self) -> bool:
        return any(term.name == "all" for term in self.mechanisms)

    @property
    def reachable(self) -> tuple[Term, ...]:
        """The mechanisms SPF can evaluate: "all" always matches, so nothing after it is ever reached."""
        for index, term in enumerate(self.mechanisms):
            if term.name == "all":
                return self.mechanisms[: index + 1]
        return self.mechanisms

    @property
    def effective_redirect(self) -> Term | None:
        """The redirect= modifier SPF follows: RFC 7208 6.1 ignores it when the record has "all"."""
        return None if self.has_all else self.redirect

    @property
    def dns_terms(self) -> int:
        """Terms that cost a DNS-querying lookup (RFC 7208 4.6.4)."""
        count = sum(1 for term in self.reachable if term.name in DNS_MECHANISMS)
        return count + (1 if self.effective_redirect is not None else 0)


def select_spf_record(txt_records: list[str] | tuple[str, ...]) -> str | None:
    """Pick the one SPF record among a name's TXT records (None when there is none)."""
    found = [record for record in txt_records if _VERSION.match(record)]
    if len(found) > 1:
        raise MultipleRecordsError(f"{len(found)} SPF records published")
    return found[0] if found else None


def parse_record(text: str) -> Record:
    bad = _NOT_RECORD_CHAR.search(text)
    if bad:
        raise SpfSyntaxError(f"character {bad.group()!r} is not allowed in an SPF record")
    mechanisms: list[Term] = []
    modifiers: dict[str, Term] = {}
    for word in text.split(" ")[1:]:
        if not word:
            continue  # RFC allows 1*SP between terms
        term = _parse_term(word)
        if term.qualifier == "=":
            if term.name in ("redirect", "exp") and term.name in modifiers:
                raise SpfSyntaxError(f"modifier {term.name}= appears twice")
            modifiers[term.name] = term
        else:
            mechanisms.append(term)
    return Record(tuple(mechanisms), modifiers.get("redirect"))


def _parse_term(word: str) -> Term:
    name, sep, value = word.partition("=")
    if sep and _MODIFIER_NAME.match(name) and ":" not in name and "/" not in name:
        name = name.lower()
        if name in ("redirect", "exp"):
            _check_domain_spec(value, word)
        else:
            _check_macro_string(value, word)
        return Term("=", name, domain=value, text=word)

    qualifier = PASS
    if word[0] in QUALIFIERS:
        qualifier, word_body = word[0], word[1:]
    else:
        word_body = word
    name, colon, argument = word_body.partition(":")
    name_and_cidr = _DUAL_CIDR.match(name) if not colon else None
    if name_and_cidr and name_and_cidr.group(1).lower() in ("a", "mx"):
        name = name_and_cidr.group(1)
    name = name.lower()
    if name not in MECHANISMS:
        raise SpfSyntaxError(f"unknown mechanism {word!r}")

    if name in ("ip4", "ip6"):
        return _parse_ip(qualifier, name, colon, argument, word)
    if name == "all":
        if colon or word_body.lower() != "all":
            raise SpfSyntaxError(f"'all' takes no argument: {word!r}")
        return Term(qualifier, "all", text=word)
    if name in ("a", "mx"):
        spec = argument if colon else word_body[len(name):]
        domain, cidr4, cidr6 = _split_dual_cidr(spec, word, has_domain=bool(colon))
        return Term(qualifier, name, domain=domain, cidr4=cidr4, cidr6=cidr6, text=word)
    # include, exists need a domain; ptr's is optional.
    if name in ("include", "exists") and not colon:
        raise SpfSyntaxError(f"{name} needs a domain: {word!r}")
    if colon:
        _check_domain_spec(argument, word)
    elif word_body.lower() != name:
        raise SpfSyntaxError(f"malformed mechanism {word!r}")
    return Term(qualifier, name, domain=argument if colon else None, text=word)


def _parse_ip(qualifier: str, name: str, colon: str, argument: str, word: str) -> Term:
    if not colon or not argument:
        raise SpfSyntaxError(f"{name} needs an address: {word!r}")
    pattern = _CIDR4 if name == "ip4" else _CIDR6
    match = re.match(rf"^(.*?){pattern}?$", argument)
    address, length = match.group(1), match.group(2)
    limit = 32 if name == "ip4" else 128
    if length is not None and int(length) > limit:
        raise SpfSyntaxError(f"CIDR length /{length} is too long for {name}: {word!r}")
    # Strict, so that a length the CIDR pattern refused (a leading zero: "/032", "/00")
    # cannot stay behind in the address and be read as a length later.
    if name == "ip4" and not _IP4_ADDRESS.match(address):
        raise SpfSyntaxError(f"not an IPv4 address: {word!r}")
    if name == "ip6" and not (":" in address and _IP6_ADDRESS.match(address)):
        raise SpfSyntaxError(f"not an IPv6 address: {word!r}")
    cidr = int(length) if length is not None else limit
    return Term(
        qualifier, name, network=address,
        cidr4=cidr if name == "ip4" else None, cidr6=cidr if name == "ip6" else None, text=word,
    )


def _split_dual_cidr(spec: str, word: str, has_domain: bool) -> tuple[str | None, int | None, int | None]:
    match = _DUAL_CIDR.match(spec)
    domain, cidr4, cidr6 = match.group(1), match.group(2), match.group(3)
    if cidr4 is not None and int(cidr4) > 32:
        raise SpfSyntaxError(f"IPv4 CIDR length /{cidr4} is too long: {word!r}")
    if cidr6 is not None and int(cidr6) > 128:
        raise SpfSyntaxError(f"IPv6 CIDR length /{cidr6} is too long: {word!r}")
    if has_domain:
        _check_domain_spec(domain, word)
    elif domain:
        raise SpfSyntaxError(f"malformed mechanism {word!r}")
    return (domain or None), _int_or_none(cidr4), _int_or_none(cidr6)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _check_macro_string(value: str, word: str) -> None:
    leftover = _MACRO.sub("", value)
    if "%" in leftover:
        raise SpfSyntaxError(f"invalid macro in {word!r}")


def _check_domain_spec(domain: str, word: str) -> None:
    """domain-spec = macro-string domain-end (RFC 7208 7.1)."""
    if not domain:
        raise SpfSyntaxError(f"empty domain in {word!r}")
    _check_macro_string(domain, word)
    if domain.endswith("}") and "%{" in domain:
        return  # domain-end may be a macro expansion
    labels = domain.rstrip(".").split(".")
    if len(labels) < 2 or not _TOPLABEL.match(labels[-1]):
        raise SpfSyntaxError(f"{domain!r} is not a fully qualified domain name in {word!r}")


# Macro letters whose value does not depend on the client: d (the current domain) and
# o (the sender's domain, i.e. the root being walked). All others (s, l, i, p, h, v) do.
_CLIENT_FREE_LETTERS = "do"
_MACRO_PARTS = re.compile(r"%\{([a-z])([0-9]*)(r?)([.\-+,/_=]*)\}|%([%_-])", re.IGNORECASE)
_ESCAPES = {"%": "%", "_": " ", "-": "%20"}
_MAX_DOMAIN_LENGTH = 253


def expand_domain_spec(spec: str, domain: str, sender_domain: str) -> str | None:
    """Expand a domain-spec's macros (RFC 7208 7.3, 7.4, 4.8), or None when the client decides them."""
    unknown = False

    def expand(match: re.Match) -> str:
        nonlocal unknown
        letter, digits, reverse, delimiters, escape = match.groups()
        if escape:
            return _ESCAPES[escape]
        if letter.lower() not in _CLIENT_FREE_LETTERS:
            unknown = True
            return ""
        value = domain if letter.lower() == "d" else sender_domain
        parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
        if reverse:
            parts.reverse()
        if digits:
            parts = parts[-int(digits):] if int(digits) else parts
        return ".".join(parts)

    expanded = _MACRO_PARTS.sub(expand, spec)
    if unknown:
        return None
    expanded = expanded.rstrip(".")
    # RFC 7208 4.8: an over-long result loses labels on the left until it fits.
    while len(expanded) > _MAX_DOMAIN_LENGTH and "." in expanded:
        expanded = expanded.split(".", 1)[1]
    return expanded
