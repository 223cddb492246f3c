"""greylist-report: what greylisting costs and stops, read from an admin's own mail log.

Standard library only (plus spfwalk for --check-spf); every stage streams, so memory grows
with the number of distinct triplets and messages in flight, never with the size of the log.
"""
