"""The test suite: a folder per runtime package, helpers shared between folders in tests/support/."""
