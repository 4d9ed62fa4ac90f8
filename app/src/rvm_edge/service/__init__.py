"""rvm-edge as a service: config, durable outbox, platform client, HTTP server, systemd glue.

Each module has one job; :mod:`rvm_edge.service.runner` wires them into ``rvm-edge run``.
"""
