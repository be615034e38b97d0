"""Hosts as Linux network namespaces, for the tests of a fleet: a bridge in the root
namespace (where the coordinator and HAProxy run) and one namespace per host on it, each
with its own address, its own loopback and a link the test can take down.

Making them needs root and iproute2. Under CI (`CI` set, as .ci/run runs as root) a
missing capability fails the test; a local run without it skips with a loud message.
Everything made here is removed on close, processes left inside a namespace first."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

import pytest


def require_netns() -> None:
    """Fail (under CI) or skip loudly unless this process may make namespaces."""
    why = None
    if os.geteuid() != 0:
        why = "they need root"
    elif not shutil.which("ip"):
        why = "iproute2's `ip` is not installed"
    if why is None:
        return
    message = f"network namespaces as hosts cannot be made: {why} (CI runs .ci/run as root)"
    if os.environ.get("CI"):
        pytest.fail(message)
    print(f"\n\n*** SKIPPING: {message} ***\n")
    pytest.skip(message)


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    """One namespace on the bridge."""

    name: str
    namespace: str
    address: str
    link: str
    """Its veth's end in the root namespace: down, the host is cut off."""

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]


@dataclass
class Network:
    """A /24 on a bridge of its own; the root namespace holds `.1`."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, Host] = field(default_factory=dict)
    subnet: ipaddress.IPv4Network = field(init=False)

    def __post_init__(self) -> None:
        used = _ip("-4", "-o", "addr", "show")
        while True:
            third, fourth = secrets.randbelow(56) + 200, secrets.randbelow(256)
            self.subnet = ipaddress.IPv4Network(f"10.{third}.{fourth}.0/24")
            if f"10.{third}.{fourth}." not in used:
                break

    @property
    def bridge(self) -> str:
        return f"cvb{self.tag}"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge: where hosts reach the coordinator."""
        return str(self.subnet.network_address + 1)

    def __enter__(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str) -> Host:
        """A new namespace `name` on the bridge, at the next free address."""
        index = len(self.hosts) + 2
        made = Host(
            name=name,
            namespace=f"cvy-{self.tag}-{name}",
            address=str(self.subnet.network_address + index),
            link=f"cvv{self.tag}{index}",
        )
        self.hosts[name] = made
        inside = f"cvp{self.tag}{index}"
        _ip("netns", "add", made.namespace)
        _ip("link", "add", made.link, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", made.namespace)
        _ip("link", "set", made.link, "master", self.bridge)
        _ip("link", "set", made.link, "up")
        for args in (
            ("addr", "add", f"{made.address}/24", "dev", inside),
            ("link", "set", inside, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("-n", made.namespace, *args)
        return made

    def set_link(self, host: Host, up: bool) -> None:
        _ip("link", "set", host.link, "up" if up else "down")

    def close(self) -> None:
        """Kill what runs inside the namespaces, then remove them and the bridge."""
        for host in self.hosts.values():
            try:
                pids = _ip("netns", "pids", host.namespace).split()
            except RuntimeError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for args in (("link", "del", host.link), ("netns", "del", host.namespace)):
                try:
                    _ip(*args)
                except RuntimeError:
                    pass  # already gone
        self.hosts.clear()
        try:
            _ip("link", "del", self.bridge)
        except RuntimeError:
            pass
