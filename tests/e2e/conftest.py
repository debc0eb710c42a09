"""Browser-test fixtures: the session's one chromium is `chromium` in tests/conftest.py (shared with the
service tests' browser checks, since Playwright's sync API allows one driver at a time)."""
