"""
The local RAET daemon's status for Salt's loader modules: the runner
``raet.status`` (on the master) and the execution module ``raet.status`` (on
a minion) both ask the daemon of their host over its lane, as
``salt-raet-master status --json`` / ``salt-raet-minion status --json`` do.
"""

import salt.exceptions

from saltext_raet import _native, registry, transport

#: Seconds to wait for the daemon's answer by default.
TIMEOUT = 5.0


def virtual(opts, name):
    """``__virtual__`` of both modules: loaded with transport raet only."""
    if registry.ttype(opts) != registry.NAME:
        return (False, f"{name}: transport is {registry.ttype(opts)!r}, not 'raet'")
    return name


def local_status(opts, timeout=TIMEOUT):
    """
    The status of the RAET daemon of this host (lane ``<sock_dir>/raet``);
    raises ``CommandExecutionError`` saying what failed when the daemon does
    not answer or is of another version.
    """
    lane = _native.lane_dir(opts["sock_dir"])
    try:
        return transport.daemon_status(opts, timeout=float(timeout))
    except transport.DaemonVersionError as exc:
        raise salt.exceptions.CommandExecutionError(str(exc)) from exc
    except (OSError, TimeoutError) as exc:
        raise salt.exceptions.CommandExecutionError(
            f"RAET: no salt-raet daemon answers on lane {lane}: {exc}"
        ) from exc
