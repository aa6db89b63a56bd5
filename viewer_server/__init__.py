"""TwinView server: the aiohttp app, the protocol, sessions, ingest, storage, auth and the CLI."""

__version__ = "0.1.0"
