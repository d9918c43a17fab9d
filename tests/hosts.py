"""Emulated hosts on one Linux machine: network namespaces on a private bridge, sshd in each.

    python tests/hosts.py up 2        # h0, h1 (10.213.47.10, .11) with sshd; prints how to ssh
    python tests/hosts.py rate 1000   # shape every host's link to 1000 Mbit/s each way (tbf)
    python tests/hosts.py status
    python tests/hosts.py down        # also removes what a killed run left behind

Each host is a network namespace ``fe47h<i>`` joined to the bridge ``fe47br`` by a veth pair
whose inner end is called ``fe47n`` in every host (as a cluster's hosts share an interface
name such as ``eth0``), on the subnet 10.213.47.0/24 that only these namespaces use; nothing is
routed anywhere else. The bridge holds 10.213.47.1 so the machine itself (the test process)
reaches the hosts. The file system is shared, as a cluster shares NFS.

Each host's sshd runs in its own UTS and mount namespaces, so processes started over ssh see
the host's own hostname (``h0``) and an /etc/hosts that resolves every emulated host name to
its address (bind-mounted over /etc/hosts in that mount namespace only; the machine's own file
is untouched). Without that, every namespace shares the machine's hostname, which /etc/hosts
resolves to 127.0.0.1: the loopback-hostname pitfall (README, "Across hosts").

Keys (a host key per host, one root client key) are generated for the run in the state
directory (``FE_DIST_HOSTS_DIR``, default /tmp/fe47-hosts), with an ssh_config and known_hosts;
``<state>/bin/ssh`` is an ``ssh`` wrapper that uses them, so putting ``<state>/bin`` first on
PATH lets horovodrun and mpirun reach ``h0`` non-interactively without touching ~/.ssh.

Delay: this machine's kernel has no ``sch_netem`` (only tbf/htb among the shaping qdiscs), so
`shape` sets bandwidth only; latency cannot be added here (see `shape`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PREFIX = "fe47"
SUBNET = "10.213.47"
BRIDGE = f"{PREFIX}br"
IFACE = f"{PREFIX}n"  # the interface name inside every host
BRIDGE_ADDRESS = f"{SUBNET}.1"
STATE = Path(os.environ.get("FE_DIST_HOSTS_DIR", f"/tmp/{PREFIX}-hosts"))
SSHD = "/usr/sbin/sshd"


@dataclasses.dataclass(frozen=True)
class Host:
    """One emulated host."""

    index: int

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}h{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{10 + self.index}"

    @property
    def veth(self) -> str:
        """The outer end of the host's link, on the bridge in the machine's namespace."""
        return f"{PREFIX}v{self.index}"


@dataclasses.dataclass
class Cluster:
    """Hosts that are up, and how to reach them."""

    hosts: list[Host]
    state: Path = STATE

    @property
    def bin_dir(self) -> Path:
        """Holds the ``ssh`` wrapper: put it first on PATH."""
        return self.state / "bin"

    @property
    def ssh_config(self) -> Path:
        return self.state / "ssh_config"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) with the ssh wrapper first on PATH."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def ssh(self, host: Host | str, command: str, timeout: float = 30,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run ``command`` on ``host`` over ssh."""
        name = host.name if isinstance(host, Host) else host
        return subprocess.run([str(self.bin_dir / "ssh"), name, command], capture_output=True,
                              text=True, timeout=timeout, check=check)

    def exec_in(self, host: Host, args: list[str], **kwargs) -> subprocess.Popen:
        """Start ``args`` inside ``host``'s namespaces (network, UTS, mount of its sshd), as a
        process started over ssh would be, without ssh."""
        pid = sshd_pid(host)
        return subprocess.Popen(["nsenter", "-t", str(pid), "-n", "-u", "-m", *args], **kwargs)

    def link(self, host: Host, up: bool) -> None:
        """Set ``host``'s link up or down (a network partition), on both ends."""
        state = "up" if up else "down"
        _run(["ip", "netns", "exec", host.netns, "ip", "link", "set", IFACE, state])
        _run(["ip", "link", "set", host.veth, state])

    def crash(self, host: Host) -> list[int]:
        """Kill every process in ``host`` except its sshd listener (the ranks, their shells and
        ssh sessions), as a host crash would; the listener stays so the host can come back.
        Returns the killed pids."""
        keep = sshd_pid(host)
        out = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split() if int(p) != keep]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def shape(self, rate_mbit: float | None) -> None:
        """Limit every host's link to ``rate_mbit`` Mbit/s in each direction (tbf on both ends
        of each veth); None removes the limit. tbf adds no delay; netem, which would, is not
        in this kernel, so the latency is the veth's own."""
        for host in self.hosts:
            for prefix, dev in ((["ip", "netns", "exec", host.netns], IFACE), ([], host.veth)):
                subprocess.run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"],
                               capture_output=True)
                if rate_mbit is not None:
                    # burst: at least one 64 KiB TSO segment plus a timer tick's worth of bytes.
                    burst = max(256 * 1024, int(rate_mbit * 1e6 / 8 / 250))
                    _run([*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                          f"{rate_mbit}mbit", "burst", str(burst), "latency", "50ms"])


def hosts_of(n: int) -> list[Host]:
    return [Host(i) for i in range(n)]


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def available() -> str | None:
    """None if emulated hosts can be made here; otherwise why not (for a skip reason)."""
    if os.geteuid() != 0:
        return "emulated hosts need root (network namespaces, a bridge, sshd)"
    for tool in ("ip", "tc", "unshare", "nsenter", "ssh-keygen", "ssh"):
        if shutil.which(tool) is None:
            return f"emulated hosts need {tool!r} (bash .ci/setup installs it)"
    if not Path(SSHD).exists():
        return "emulated hosts need openssh-server (bash .ci/setup installs it)"
    probe = f"{PREFIX}probe"
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if proc.returncode != 0:
        return f"cannot create a network namespace here: {proc.stderr.strip()}"
    return None


def _existing_netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[0].startswith(f"{PREFIX}h")]


def _kill_namespace_processes(netns: str) -> None:
    """End every process in ``netns`` (its sshd, and ranks started through it): they are ours,
    the namespace is ours. TERM first, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
            if not out.stdout.split():
                return
            time.sleep(0.1)


def down() -> None:
    """Remove every emulated host, the bridge and the state directory, including what a killed
    run left behind. Safe to call when nothing is up."""
    for netns in _existing_netns():
        _kill_namespace_processes(netns)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(f"{PREFIX}v") or name == BRIDGE:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
    shutil.rmtree(STATE, ignore_errors=True)


def sshd_pid(host: Host) -> int:
    return int((STATE / host.name / "sshd.pid").read_text())


def _keygen(path: Path, comment: str) -> str:
    if not path.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return Path(f"{path}.pub").read_text().strip()


def up(n: int, own_names: bool = True) -> Cluster:
    """Bring up hosts h0..h{n-1} (after removing any earlier ones) and wait for their sshd.

    ``own_names=False`` leaves every host with the machine's hostname and /etc/hosts (the
    loopback-hostname pitfall), to show what goes wrong without the fix."""
    reason = available()
    if reason is not None:
        raise RuntimeError(reason)
    down()
    hosts = hosts_of(n)
    STATE.mkdir(parents=True, mode=0o700)
    cluster = Cluster(hosts)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    client_key = STATE / "id_ed25519"
    client_pub = _keygen(client_key, f"{PREFIX}-client")
    (STATE / "authorized_keys").write_text(client_pub + "\n")
    etc_hosts = "127.0.0.1 localhost\n" + "".join(f"{h.address} {h.name}\n" for h in hosts)
    known = []
    for host in hosts:
        hdir = STATE / host.name
        hdir.mkdir(mode=0o700)
        _run(["ip", "netns", "add", host.netns])
        _run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", IFACE, "netns",
              host.netns])
        _run(["ip", "link", "set", host.veth, "master", BRIDGE])
        _run(["ip", "link", "set", host.veth, "up"])
        inside = ["ip", "netns", "exec", host.netns]
        _run([*inside, "ip", "addr", "add", f"{host.address}/24", "dev", IFACE])
        _run([*inside, "ip", "link", "set", IFACE, "up"])
        _run([*inside, "ip", "link", "set", "lo", "up"])
        host_pub = _keygen(hdir / "ssh_host_ed25519_key", host.name)
        known.append(f"{host.name},{host.address} {' '.join(host_pub.split()[:2])}")
        (hdir / "hosts").write_text(etc_hosts)
        (hdir / "sshd_config").write_text(
            f"ListenAddress {host.address}\nHostKey {hdir / 'ssh_host_ed25519_key'}\n"
            f"PidFile {hdir / 'sshd.pid'}\nAuthorizedKeysFile {STATE / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
            "StrictModes no\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n")
        # Own hostname (UTS) and own /etc/hosts (mount namespace) for everything sshd starts.
        script = (f"hostname {host.name} && mount --bind {hdir / 'hosts'} /etc/hosts && "
                  if own_names else "") + (
                  f"exec {SSHD} -f {hdir / 'sshd_config'} -E {hdir / 'sshd.log'}")
        _run([*inside, "unshare", "--uts", "--mount", "--propagation", "private",
              "sh", "-c", script])
    (STATE / "known_hosts").write_text("\n".join(known) + "\n")
    cluster.ssh_config.write_text("".join(
        f"Host {h.name} {h.address}\n  HostName {h.address}\n  HostKeyAlias {h.name}\n"
        for h in hosts) + (
        f"Host *\n  User root\n  IdentityFile {client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {STATE / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n"))
    cluster.bin_dir.mkdir()
    wrapper = cluster.bin_dir / "ssh"
    # Horovod runs `ssh -o StrictHostKeyChecking=no host ...`; the first value ssh sees for an
    # option wins, and -F's file is read after the command line, so this file's keys and
    # known_hosts apply while horovod's own options still hold.
    wrapper.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {cluster.ssh_config} \"$@\"\n")
    wrapper.chmod(0o755)
    deadline = time.monotonic() + 20
    for host in hosts:
        while True:
            try:
                if cluster.ssh(host, "hostname", timeout=10).stdout.strip() == (
                        host.name if own_names else os.uname().nodename):
                    break
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                if time.monotonic() > deadline:
                    down()
                    raise RuntimeError(f"sshd on {host.name} ({host.address}) did not answer: "
                                       f"{getattr(err, 'stderr', err)}") from err
            time.sleep(0.2)
    return cluster


def current() -> Cluster | None:
    """The hosts `up` made, if they are still up."""
    names = sorted(_existing_netns())
    if not names or not (STATE / "ssh_config").exists():
        return None
    return Cluster(hosts_of(len(names)))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "down", "status", "rate"):
        print(__doc__)
        return 2
    if argv[0] == "up":
        cluster = up(int(argv[1]) if len(argv) > 1 else 2)
        print(f"up: {', '.join(f'{h.name}={h.address}' for h in cluster.hosts)} on {IFACE}\n"
              f"  export PATH={cluster.bin_dir}:$PATH; ssh h0 hostname")
    elif argv[0] == "down":
        down()
        print("down")
    elif argv[0] == "rate":
        cluster = current()
        if cluster is None:
            print("no hosts are up")
            return 1
        cluster.shape(None if argv[1] == "none" else float(argv[1]))
    else:
        cluster = current()
        print("no hosts are up" if cluster is None else
              "\n".join(f"{h.name} {h.address} netns {h.netns}" for h in cluster.hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
