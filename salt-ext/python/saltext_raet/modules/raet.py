"""
A minion's RAET daemon seen from Salt: ``salt <minion> raet.status``.

Loaded from saltext-raet's ``salt.loader`` entry point (the ``modules``
directory of the package), with ``transport: raet`` only.
"""

from saltext_raet import status as _status

__virtualname__ = "raet"


def __virtual__():
    return _status.virtual(__opts__, __virtualname__)  # pylint: disable=undefined-variable


def status(timeout=_status.TIMEOUT):
    """
    The minion daemon's status, as ``salt-raet-minion status --json`` prints
    it: its estate and version, its masters (join state and attempts), one
    row per master estate (joined, allowed, presence) and the routing, road
    and lane counters.

    CLI Example:

    .. code-block:: bash

        salt '*' raet.status
        salt-call raet.status
    """
    return _status.local_status(__opts__, timeout)  # pylint: disable=undefined-variable
