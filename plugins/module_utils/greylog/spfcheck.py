"""Does a pool's sender domain vouch for the pool's addresses? Asked of the project's SPF walker.

The walker (and so dnspython) is imported only when --check-spf asks for it. greylog finds it
beside itself in both of its homes: module_utils of the collection mailguard.mail (the Ansible
module greylist_report: a relative import, which Ansible's module packer follows) and the
top-level packages the command greylist-report is installed as.
"""

from __future__ import annotations


def _spfwalk(name: str):
    """The spfwalk submodule ``name`` (walker, cli), wherever this greylog lives."""
    try:
        if name == "walker":
            from ..spfwalk import walker as found
        else:
            from ..spfwalk import cli as found
    except ImportError as exc:
        # "attempted relative import beyond top-level package": greylog is the installed command.
        if "relative import" not in str(exc):
            raise
        if name == "walker":
            from spfwalk import walker as found
        else:
            from spfwalk import cli as found
    return found


def package_version() -> str:
    try:
        return _spfwalk("cli").package_version()
    except ImportError:  # dnspython missing: the report does not need it, its generator line may say so
        return "unknown"


def spf_lookup(resolver=None, **options):
    """A report.SpfLookup: domain -> (status, networks its SPF record passes); options of WalkerOptions."""
    walker = _spfwalk("walker")
    walker_options = walker.WalkerOptions(**options)

    def lookup(domains: list[str]) -> dict[str, tuple[str, list]]:
        if not domains:
            return {}
        report = walker.walk_sync(domains, walker_options, resolver)
        return {domain: (root.status, list(root.networks)) for domain, root in report.roots.items()}

    return lookup
