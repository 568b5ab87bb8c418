"""Helpers of the raet_rs tests: the tutorial's service loop, without ioflo's timer."""

import socket
import time

import pytest


def serviceStacks(stacks, duration=5.0):
    """The tutorial's loop: service every stack until none has a transaction left (or
    ``duration`` seconds pass); whether they all finished."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for stack in stacks:
            stack.serviceAll()
        if all(not stack.transactions for stack in stacks):
            return True
        time.sleep(0.01)
    return False


def serviceUntil(stacks, done, duration=5.0):
    """Services ``stacks`` until ``done()`` is true; whether it became true in time."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for stack in stacks:
            stack.serviceAll()
        if done():
            return True
        time.sleep(0.01)
    return False


def free_port():
    """A UDP port nobody is bound to on the loopback (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def closing():
    """Registers stacks to close after the test."""
    stacks = []
    yield stacks.append
    for stack in stacks:
        stack.server.close()
