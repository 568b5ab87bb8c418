"""
saltext-raet: runs Salt on RAET (``transport: raet``).

Salt imports this package through its ``salt.loader`` entry point; importing
it registers the transport (see :mod:`saltext_raet.registry`). Code that uses
Salt's transport or channel factories without ever building a Salt loader
(some tests) must import it first.
"""

from saltext_raet import registry

registry.install()
