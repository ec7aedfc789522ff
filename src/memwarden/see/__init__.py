"""See: what each request did to memory. The request context and id, the
meter, the request line, the census, the WSGI and ASGI trackers, and the
redaction and line cap every log line goes through. Imports nothing from
find, hold or export."""
