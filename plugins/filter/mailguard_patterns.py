"""Host name patterns that both MTAs read: refused on the controller before a host changes.

    mailguard_greylist_dynamic_name_patterns | mailguard_bad_name_patterns

Selective greylisting matches a client's verified host name against the patterns of
``mailguard_greylist_dynamic_name_patterns``, as a Postfix regexp table (POSIX extended regular
expressions, between slashes) and in Exim's ACL (PCRE). The common ground is checked here:
a pattern Python cannot compile is one neither MTA would read as meant; a "/" ends the pattern
early in the Postfix table, and a space ends the table's pattern field; a backslash class such as
\\d is PCRE only (POSIX reads a plain "d"); and a pattern that matches an empty string, or a
plain host name such as mail.example.org, would greylist every client.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# Names every real mail server could have: a pattern that matches one of them treats every
# client as a bot.
ORDINARY_NAMES = ("mail.example.org", "mx1.example.net", "smtp.example.com", "a.b")
PCRE_ONLY = re.compile(r"\\[dDwWsSbB]")


def _problem(pattern) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return "is no pattern"
    if "/" in pattern or re.search(r"\s", pattern):
        return 'holds a "/" or a space (a Postfix regexp table would cut the pattern there)'
    if PCRE_ONLY.search(pattern):
        return "uses a backslash class (\\d, \\w, \\s, \\b) that POSIX regular expressions lack: write [0-9]"
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        return f"is no regular expression ({exc})"
    if compiled.search(""):
        return "matches the empty string: every client would match"
    matched = [name for name in ORDINARY_NAMES if compiled.search(name)]
    if matched:
        return f"matches ordinary mail server names ({', '.join(matched)}): every client would match"
    return None


def mailguard_bad_name_patterns(patterns) -> list[str]:
    """'PATTERN: why' for each pattern neither MTA should get; [] when all are fine."""
    if not isinstance(patterns, list):
        raise AnsibleFilterError(f"host name patterns must be a list, got {patterns!r}")
    return [f"{pattern!r} {why}" for pattern in patterns if (why := _problem(pattern))]


class FilterModule:
    def filters(self):
        return {"mailguard_bad_name_patterns": mailguard_bad_name_patterns}
