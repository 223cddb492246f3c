"""The RFC 7208 (openspf.org 2014.04) test suite, applied to the SPF netblock walker.

harness.py loads the suite and turns each scenario into a lab DNS zone and each test
into a walker prediction; test_rfc7208_suite.py runs it under pytest; not_applicable.yml
lists the tests a netblock walker cannot answer, with the reason; ``python -m
tests.rfc7208.summary`` prints the counts.
"""
