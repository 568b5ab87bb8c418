"""
The master's RAET daemon seen from Salt: ``salt-run raet.status``.

Loaded from saltext-raet's ``salt.loader`` entry point (the ``runners``
directory of the package), with ``transport: raet`` only.
"""

from saltext_raet import status as _status

__virtualname__ = "raet"


def __virtual__():
    return _status.virtual(__opts__, __virtualname__)  # pylint: disable=undefined-variable


def status(timeout=_status.TIMEOUT):
    """
    The master daemon's status, as ``salt-raet-master status --json`` prints
    it: its estate and version, one row per minion (key acceptance, joined,
    allowed, presence, last heard, road address) and the routing, road and
    lane counters.

    CLI Example:

    .. code-block:: bash

        salt-run raet.status
        salt-run raet.status --out=json
    """
    return _status.local_status(__opts__, timeout)  # pylint: disable=undefined-variable


def present(timeout=_status.TIMEOUT):
    """
    Ids of the minions the master daemon has allowed and hears (presence
    ``new`` or ``present``), sorted.

    CLI Example:

    .. code-block:: bash

        salt-run raet.present
    """
    rows = status(timeout).get("remotes", [])
    return sorted(
        row["id"]
        for row in rows
        if row.get("allowed") and row.get("presence") in ("new", "present")
    )
