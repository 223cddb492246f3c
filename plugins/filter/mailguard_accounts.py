"""The system accounts of a mail host that refuse mail from outside, for both MTA stacks.

    postfix: "{{ ansible_facts.getent_passwd | mailguard_system_accounts(postfix_first_user_uid, ...) }}"

www-data, postgrey, daemon, bin... read no mail: whatever a stranger sends them is spam, a probe or
a harvest of valid names. The postfix and exim4 roles read the host's passwd (getent) and refuse
these local parts at RCPT from outside; one rule decides which accounts they are.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def mailguard_system_accounts(passwd, first_user_uid=1000, extra=(), exempt=()) -> list:
    """Sorted lower-case names: UID below ``first_user_uid``, and nobody, plus ``extra``, minus ``exempt``.

    ``passwd`` is getent's passwd fact (name -> [password, uid, gid, gecos, home, shell]).
    ``exempt`` are local parts that must always get mail (postmaster, abuse), given as local parts
    or as Exim address items such as ``postmaster@+local_domains``.
    """
    try:
        floor = int(first_user_uid)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"the first user UID must be a number, not {first_user_uid!r}") from None
    names = {str(name).lower() for name in extra or ()}
    for name, fields in (passwd or {}).items():
        try:
            uid = int(fields[1])
        except (IndexError, TypeError, ValueError):
            raise AnsibleFilterError(f"passwd entry {name!r} has no numeric UID: {fields!r}") from None
        if uid < floor or name == "nobody":
            names.add(str(name).lower())
    exempt_names = {str(item).split("@", 1)[0].lower() for item in exempt or ()}
    return sorted(names - exempt_names)


class FilterModule:
    def filters(self):
        return {"mailguard_system_accounts": mailguard_system_accounts}
