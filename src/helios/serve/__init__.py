"""Live serving: a WebSocket streaming protocol, an HTTP job API and a web page (paper §6)."""
