"""The daemon: serves one store per domain to many agent processes over a Unix socket.

``service`` holds the request handlers (no sockets), ``server`` the event loop, ``lifecycle``
the runtime directory, lock and detaching, ``inprocess`` a transport for the client that calls
the handlers directly.
"""
