"""Brokers: which kernel serves which request, and routing the answers back.

:mod:`.queue` decides the order of requests without any I/O (a fair
round-robin across links); :mod:`.worker` runs one kernel's requests and
routes its packets; :mod:`.shared` puts every link on one kernel;
:mod:`.pool` gives each link a kernel of its own from a warm pool.
"""
