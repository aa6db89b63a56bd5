"""TwinView tests; the shared helpers live in tests/live_server.py and tests/web_helpers.py."""
