"""salt-api end to end: Salt's real ``rest_cherrypy`` netapi on a master on ``transport: raet``.

One lab: salt-master, salt-raet-master and salt-api (``saltlab.Lab(salt_api=True)``: plain
HTTP on a free loopback port, clients ``local`` and ``runner``, eauth ``auto``), one minion
with its salt-raet-minion. Clients talk HTTP to salt-api only; salt-api reaches the master
as a local client through the extension, and the jobs reach the minion over RAET.
"""

import pytest

import saltlab
from conftest import running_lab

MINION = "api-1"

# salt-api is a local client of the master like the salt CLI: CI runs these on 3007 too
pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def api_lab(tmp_path_factory, bin_dir):
    """A started lab with salt-api and one unaccepted minion."""
    with running_lab(tmp_path_factory, bin_dir, [MINION], salt_api=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def token(api_lab):
    """A session token of salt-api (POST /login, eauth auto), once salt-api answers."""
    api_lab.wait_api()
    return api_lab.api_login()


def test_salt_api_refuses_requests_without_a_token(api_lab, token):
    status, _ = api_lab.api_request("/", {"client": "local", "tgt": "*", "fun": "test.ping"})
    assert status == 401
    status, _ = api_lab.api_request("/", {"client": "local", "tgt": "*", "fun": "test.ping"},
                                    token="not-a-token")
    assert status == 401


def test_local_client_test_ping_through_salt_api(api_lab, token):
    api_lab.wait_pending([MINION], deadline_s=180)
    api_lab.accept(MINION)
    low = {"client": "local", "tgt": "*", "fun": "test.ping", "timeout": 5}

    def answered():
        api_lab.check_alive()
        status, answer = api_lab.api_request("/", low, token=token)
        return answer if status == 200 and answer == {"return": [{MINION: True}]} else None

    assert saltlab.wait_for("test.ping through salt-api", answered, deadline_s=180,
                            interval_s=0.5) == {"return": [{MINION: True}]}
    # a function with arguments and a result computed on the minion
    status, answer = api_lab.api_request(
        "/", {"client": "local", "tgt": MINION, "fun": "cmd.run", "arg": ["echo api"]},
        token=token)
    assert (status, answer) == (200, {"return": [{MINION: "api"}]})


def test_runner_client_through_salt_api(api_lab, token):
    # manage.up: on raet from the master daemon's presence (no job), on zeromq a test.ping
    status, answer = api_lab.api_request("/", {"client": "runner", "fun": "manage.up"},
                                         token=token)
    assert (status, answer) == (200, {"return": [[MINION]]})
    status, answer = api_lab.api_request("/", {"client": "runner", "fun": "manage.present"},
                                         token=token)
    assert (status, answer) == (200, {"return": [[MINION]]})
