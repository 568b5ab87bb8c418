"""Type stubs of ``saltext_raet._native``: the lane client (PyO3, Rust)."""

from os import PathLike
from types import TracebackType
from typing import Dict, List, Optional, Tuple, Type, Union

LANE: str
"""The daemons' lane name, ``"salt"``."""
MANOR: str
"""The daemon's own yard on the lane, ``"manor"``."""
VERSION: str
"""The version of saltext-raet (the workspace's, as the daemons'), e.g. ``"0.1.0"``."""

Estate = Union[str, List[str], None]
"""A destination estate: None (this host), a name, a list of names, or ``"*"`` (all)."""

def lane_dir(sock_dir: Union[str, PathLike[str]]) -> str:
    """``<sock_dir>/raet``: where the daemon's lane lives for Salt's ``sock_dir``."""

class LaneError(OSError):
    """A yard could not be bound, or a message not sent (the message names the path)."""

class Message:
    """A message received from the lane (a route envelope, decoded)."""

    @property
    def src(self) -> Tuple[Optional[str], Optional[str], Optional[str]]:
        """``route.src``: (estate, yard, share)."""
    @property
    def dst(self) -> Tuple[Estate, Optional[str], Optional[str]]:
        """``route.dst``: (estate, yard, share)."""
    @property
    def rid(self) -> Optional[str]:
        """``load["rid"]`` (a string), else None."""
    @property
    def salt(self) -> Optional[bytes]:
        """The base64-decoded ``load["salt"]``, else None."""
    @property
    def error(self) -> Optional[str]:
        """``load["error"]``: the daemon's reason when the message is an error."""
    @property
    def kind(self) -> Optional[str]:
        """``load["kind"]``: the error code (``unknown_share``, ``unknown_estate``...)."""
    @property
    def load(self) -> str:
        """The whole load as JSON text."""
    @property
    def yard(self) -> str:
        """The lane yard it came from (normally ``"manor"``)."""

class Yard:
    """
    A yard on a lane, bound at ``<lane_dir>/<lane>.<name>.uxd`` (non-blocking).

    Wait for readability on :meth:`fileno`, then call :meth:`recv`.
    """

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    def __init__(
        self, lane_dir: Union[str, PathLike[str]], name: str, lane: str = "salt"
    ) -> None:
        """
        Binds the yard (creating ``lane_dir`` with mode 0700 if missing). A stale socket file
        is replaced; a live one raises :class:`LaneError`; a bad name ValueError.
        """
    def fileno(self) -> int:
        """The socket's file descriptor; -1 once closed."""
    def send(
        self,
        dst: Tuple[Estate, Optional[str], Optional[str]],
        load_json: Optional[str] = None,
        salt: Optional[bytes] = None,
        to_yard: str = "manor",
    ) -> None:
        """
        Sends ``{"route": {"src": [None, name, None], "dst": dst}, "load": load}`` to yard
        ``to_yard`` (paginated), without the GIL. ``load_json`` is a JSON object (None: ``{}``);
        ``salt`` goes base64-encoded into ``load["salt"]``. Raises ValueError for a bad load,
        BlockingIOError if the destination's queue stays full for 5 s, :class:`LaneError` if
        the destination is missing or nobody listens there (or the yard is closed).
        """
    def recv(self) -> List[Message]:
        """
        Drains the socket (never blocks) and returns the completed messages; bad pages and
        envelopes are counted in :meth:`stats` and skipped. LaneError once closed.
        """
    def stats(self) -> Dict[str, int]:
        """Counters (``sent``, ``received``, ``bad_envelope``, ``bad_salt``, page drops...)."""
    def close(self) -> None:
        """Closes the socket and removes its file; idempotent (also done on drop)."""
    def __enter__(self) -> "Yard": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
