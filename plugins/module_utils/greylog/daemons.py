"""What each daemon logs when it greylists a triplet and when it lets the mail in.

The formats come from the daemons' sources:
- postgrey (github.com/schweikert/postgrey, file postgrey, VERSION 1.33, mylog_action):
  "[QID: ]action=greylist, reason=new|early-retry (Ns missing), client_name=...,
  client_address=..., sender=..., recipient=..." and "action=pass, reason=triplet found[,
  delay=N], ..."; empty fields are left out (a bounce has no sender=).
- sqlgrey (github.com/mmatuska/sqlgrey, file sqlgrey, VERSION 1.8.0-rc2, smtpd_access_policy
  and mylog): "grey: new: CLTID(ADDR), SENDER -> RCPT", "grey: early reconnect: ...",
  "grey: throttling: ...", "grey: reconnect ok: CLTID(ADDR), SENDER -> RCPT (DELAY)",
  "whitelist: SENDER, ADDR(NAME) -> RCPT"; an empty sender is "-undef-@-undef-". Its AWL
  matches name no recipient: the Postfix lines of that message carry the acceptance.
- Postfix smtpd: "NOQUEUE: reject: RCPT from name[addr]: 450 4.2.0 <rcpt>: Recipient address
  rejected: TEXT; from=<s> to=<r> proto=ESMTP helo=<h>"; a message it accepts is "QID:
  client=name[addr]" (smtpd), "QID: from=<s>, size=..." (qmgr), "QID: to=<r>, [orig_to=<o>,]
  relay=..." (delivery agents), "QID: removed" (qmgr).
- Exim (roles/exim4 templates, log_message = greylisted): "H=name (helo) [addr] F=<s>
  temporarily rejected RCPT <r>: greylisted", bounces at DATA "... F=<> temporarily rejected
  after DATA: greylisted (bounce)"; arrivals "ID <= sender H=name [addr] ...", deliveries
  "ID => local <rcpt> R=..." (also ->, *>, ==, **), "ID Completed".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .lines import EXIM, Record

GREYLISTED = "greylisted"
PASSED = "passed"

# Who said it: a policy daemon's line and the MTA's line about the same attempt are two
# witnesses of one attempt, so the aggregator counts attempts per witness, never both.
POLICY = "policy"
MTA = "mta"

UNKNOWN_RECIPIENT = ""  # Exim greylists bounces at DATA, where the log names no recipient


@dataclass(slots=True)
class Event:
    kind: str  # GREYLISTED or PASSED
    witness: str  # POLICY or MTA
    time: float
    address: str
    name: str  # reverse name, "" when unknown
    sender: str  # "" for the null sender
    recipient: str


# -- postgrey --------------------------------------------------------------------------------

_POSTGREY = re.compile(r"(?:[0-9A-Za-z]+: )?action=(?P<action>greylist|pass), reason=(?P<reason>[^,]*)(?P<rest>.*)")
_POSTGREY_FIELD = re.compile(r", (client_name|client_address|sender|recipient)=([^,]*)")


def postgrey(record: Record) -> Event | None:
    match = _POSTGREY.match(record.message)
    if match is None:
        return None
    fields = dict(_POSTGREY_FIELD.findall(match["rest"]))
    address = fields.get("client_address")
    if not address:
        return None
    kind = GREYLISTED if match["action"] == "greylist" else PASSED
    name = fields.get("client_name", "")
    return Event(kind, POLICY, record.time, address, "" if name == "unknown" else name,
                 fields.get("sender", "").lower(), fields.get("recipient", "").lower())


# -- sqlgrey ---------------------------------------------------------------------------------

_SQLGREY = re.compile(
    r"grey: (?P<kind>new|early reconnect|throttling|reconnect ok): [^(\s]+\((?P<addr>[^)]+)\), "
    r"(?P<sender>\S*) -> (?P<rcpt>\S*)")
_SQLGREY_WHITELIST = re.compile(r"whitelist: (?P<sender>\S*), (?P<addr>[^(\s]+)\((?P<name>[^)]*)\) -> (?P<rcpt>\S*)")
_SQLGREY_NULL_SENDER = "-undef-@-undef-"


def sqlgrey(record: Record) -> Event | None:
    message = record.message
    match = _SQLGREY.match(message)
    if match is not None:
        kind = PASSED if match["kind"] == "reconnect ok" else GREYLISTED
        return Event(kind, POLICY, record.time, match["addr"], "", _sqlgrey_sender(match["sender"]),
                     match["rcpt"].lower())
    match = _SQLGREY_WHITELIST.match(message)
    if match is not None:
        name = match["name"]
        return Event(PASSED, POLICY, record.time, match["addr"], "" if name == "unknown" else name,
                     _sqlgrey_sender(match["sender"]), match["rcpt"].lower())
    return None


def _sqlgrey_sender(sender: str) -> str:
    return "" if sender == _SQLGREY_NULL_SENDER else sender.lower()


# -- Postfix ---------------------------------------------------------------------------------

_POSTFIX_REJECT = re.compile(
    r"(?:NOQUEUE|[0-9A-Za-z]+): reject: RCPT from (?P<name>[^\s\[]*)\[(?P<addr>[^\]]+)\](?::\d+)?: "
    r"4\d\d (?:\d\.\d{1,3}\.\d{1,3} )?<(?P<rcpt>[^>]*)>: Recipient address rejected: (?P<text>.*); "
    r"from=<(?P<sender>[^>]*)> to=<[^>]*>")
_POSTFIX_CLIENT = re.compile(r"(?P<qid>[0-9A-Za-z]+): client=(?P<name>[^\s\[,]*)\[(?P<addr>[^\]]+)\]")
_POSTFIX_FROM = re.compile(r"(?P<qid>[0-9A-Za-z]+): from=<(?P<sender>[^>]*)>, ")
_POSTFIX_TO = re.compile(r"(?P<qid>[0-9A-Za-z]+): to=<(?P<rcpt>[^>]*)>, (?:orig_to=<(?P<orig>[^>]*)>, )?")
_POSTFIX_REMOVED = re.compile(r"(?P<qid>[0-9A-Za-z]+): removed$")


class MessageTable:
    """Messages an MTA accepted and has not finished with: client and sender until the recipients.

    Bounded: the oldest entry goes when ``limit`` is reached (a log cut in the middle of a
    message must not make the table grow with the log).
    """

    def __init__(self, limit: int = 200_000):
        self._limit = limit
        self._messages: dict[str, list] = {}

    def arrived(self, qid: str, time: float, address: str, name: str, sender: str | None) -> None:
        if len(self._messages) >= self._limit:
            del self._messages[next(iter(self._messages))]
        self._messages[qid] = [time, address, name, sender]

    def set_sender(self, qid: str, sender: str) -> None:
        message = self._messages.get(qid)
        if message is not None:
            message[3] = sender

    def recipient(self, qid: str, recipient: str) -> Event | None:
        message = self._messages.get(qid)
        if message is None or message[3] is None:
            return None
        time, address, name, sender = message
        return Event(PASSED, MTA, time, address, name, sender, recipient.lower())

    def done(self, qid: str) -> None:
        self._messages.pop(qid, None)

    def __len__(self) -> int:
        return len(self._messages)


class Postfix:
    def __init__(self, reject_text: re.Pattern, table: MessageTable):
        self._reject_text = reject_text
        self._table = table

    def __call__(self, record: Record) -> Event | None:
        return self.service(record.program)(record)

    def service(self, program: str) -> Callable[[Record], Event | None]:
        """The parser of one Postfix program ("postfix/smtpd", "postfix-out/qmgr"...): the
        Dispatcher remembers it per program, so the service is not worked out on every line."""
        service = program.rpartition("/")[2]
        if service == "smtpd":
            return self.smtpd
        if service == "qmgr":
            return self.qmgr
        return self.delivery

    def smtpd(self, record: Record) -> Event | None:
        message = record.message
        if "reject: RCPT from" in message:
            return self._reject(record)
        match = _POSTFIX_CLIENT.match(message)
        if match is not None:
            name = match["name"]
            self._table.arrived(match["qid"], record.time, match["addr"], "" if name == "unknown" else name,
                                None)
        return None

    def qmgr(self, record: Record) -> Event | None:
        message = record.message
        match = _POSTFIX_FROM.match(message)
        if match is not None:
            self._table.set_sender(match["qid"], match["sender"].lower())
        else:
            match = _POSTFIX_REMOVED.match(message)
            if match is not None:
                self._table.done(match["qid"])
        return None

    def delivery(self, record: Record) -> Event | None:
        """Any other service (local, lmtp, smtp, virtual, pipe...): a "to=<...>" line is a delivery."""
        match = _POSTFIX_TO.match(record.message)
        if match is not None:
            return self._table.recipient(match["qid"], match["orig"] or match["rcpt"])
        return None

    def _reject(self, record: Record) -> Event | None:
        match = _POSTFIX_REJECT.match(record.message)
        if match is None or not self._reject_text.search(match["text"]):
            return None
        name = match["name"]
        return Event(GREYLISTED, MTA, record.time, match["addr"], "" if name == "unknown" else name,
                     match["sender"].lower(), match["rcpt"].lower())


# -- Exim ------------------------------------------------------------------------------------

_EXIM_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [+-]\d{4})?(?: \[\d+\])? ")
_EXIM_HOST = re.compile(r"H=(?P<host>[^\[]*)\[(?P<addr>[^\]]+)\]")
_EXIM_DEFER = re.compile(
    r" F=<(?P<sender>[^>]*)> temporarily rejected (?:RCPT <(?P<rcpt>[^>]*)>|after DATA): (?P<text>.*)")
_EXIM_ID = r"(?P<id>[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4})"
_EXIM_ARRIVAL = re.compile(_EXIM_ID + r" <= (?P<sender><>|\S+) (?P<rest>.*)")
_EXIM_DELIVERY = re.compile(_EXIM_ID + r" (?:=>|->|\*>|==|\*\*) (?P<first>\S+)(?: <(?P<orig>[^>]*)>)?")
_EXIM_DONE = re.compile(_EXIM_ID + r" Completed")


class Exim:
    def __init__(self, reject_text: re.Pattern, table: MessageTable):
        self._reject_text = reject_text
        self._table = table

    def __call__(self, record: Record) -> Event | None:
        message = record.message
        if record.program != EXIM:
            # Through syslog (log_file_path = syslog) Exim may still stamp its messages.
            stamp = _EXIM_STAMP.match(message)
            if stamp is not None:
                message = message[stamp.end():]
        if " temporarily rejected " in message:
            return self._deferred(record.time, message)
        match = _EXIM_ARRIVAL.match(message)
        if match is not None:
            return self._arrived(record.time, match)
        match = _EXIM_DELIVERY.match(message)
        if match is not None:
            return self._table.recipient(match["id"], match["orig"] or match["first"])
        match = _EXIM_DONE.match(message)
        if match is not None:
            self._table.done(match["id"])
        return None

    def _deferred(self, time: float, message: str) -> Event | None:
        defer = _EXIM_DEFER.search(message)
        host = _EXIM_HOST.search(message)
        if defer is None or host is None or not self._reject_text.search(defer["text"]):
            return None
        rcpt = defer["rcpt"]
        return Event(GREYLISTED, MTA, time, host["addr"], _exim_name(host["host"]), defer["sender"].lower(),
                     UNKNOWN_RECIPIENT if rcpt is None else rcpt.lower())

    def _arrived(self, time: float, match: re.Match) -> Event | None:
        host = _EXIM_HOST.search(match["rest"])
        if host is None:
            return None  # local submission: never greylisted
        sender = "" if match["sender"] == "<>" else match["sender"].lower()
        name = _exim_name(host["host"])
        self._table.arrived(match["id"], time, host["addr"], name, sender)
        if sender:
            return None
        # A bounce was greylisted without a recipient: its arrival passes that triplet.
        return Event(PASSED, MTA, time, host["addr"], name, sender, UNKNOWN_RECIPIENT)


def _exim_name(host: str) -> str:
    """"name (helo) ", "(helo) " or "name ": the verified reverse name, if any."""
    host = host.strip()
    return "" if not host or host.startswith("(") else host.split(" ", 1)[0]


def _no_event(record: Record) -> None:
    return None


# -- dispatch --------------------------------------------------------------------------------

class Dispatcher:
    """Routes each record to the parser of the program that wrote it."""

    _MAX_PROGRAMS = 1024  # programs whose parser is remembered: a log names a handful

    def __init__(self, reject_text: re.Pattern, table: MessageTable | None = None):
        table = table or MessageTable()
        self.table = table
        self._postfix = Postfix(reject_text, table)
        self._exim = Exim(reject_text, table)
        self._parsers: dict[str, Callable[[Record], Event | None]] = {}

    def parser(self, program: str) -> Callable[[Record], Event | None]:
        if program.startswith("postfix"):
            return self._postfix.service(program)
        if program == "postgrey":
            return postgrey
        if program == "sqlgrey":
            return sqlgrey
        if program.startswith("exim"):
            return self._exim
        return _no_event

    def event(self, record: Record) -> Event | None:
        # One dict look-up per record instead of the chain of prefix tests (the hot path).
        parse = self._parsers.get(record.program)
        if parse is None:
            parse = self.parser(record.program)
            if len(self._parsers) < self._MAX_PROGRAMS:
                self._parsers[record.program] = parse
        return parse(record)

    def events(self, records: Iterator[Record]) -> Iterator[Event]:
        for record in records:
            event = self.event(record)
            if event is not None:
                yield event
