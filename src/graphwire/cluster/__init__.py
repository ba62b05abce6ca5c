"""Scale-out over Redis: the transport between one simulation and many gateways.

Nothing here knows the server: :mod:`envelope` is pure bytes, :mod:`link` is the Redis
connection (fenced writes, ordered subscriptions, outage accounting), :mod:`lease` the
simulation lease with its fencing token, :mod:`commands` the gateway → simulation commands and
:mod:`settings_sync` the single writer of settings revisions and its replicas. The server's
roles (``graphwire serve --role``) wire these to the stream hub and the services.
"""
