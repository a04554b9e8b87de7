"""Which transport a new connection gets, as Envoy's filter chain match chooses it (pure).

A listener that may serve TLS looks at each connection's first bytes before any codec reads them
(accept.py): TLS or plaintext, and the server name (SNI) a TLS client asked for. Its `ChainSelector`
then answers with a `FilterChain` (TLS with a context, or plaintext) or with None: no chain
matches and the connection is refused (reset), as Envoy closes a connection no chain matches.

The sidecar's inbound chains follow the PeerAuthentication mode of the destination port
(istio-semantics.md §2.1, Istio's inbound listener):
- STRICT: only mutual TLS. A plaintext client is reset (Istio's migration task: curl exits 56).
- PERMISSIVE: mutual TLS when the client speaks TLS, plaintext when it does not.
- DISABLE: plaintext only; TLS bytes reach the HTTP codec, which answers 400.
Every mutual TLS chain requires the client's certificate and checks it against the mesh root; a
sidecar without a certificate yet has no TLS chain.

A gateway's port either serves plaintext HTTP or terminates TLS for its Gateway servers: the
server whose host matches the SNI best (exact, then the longest wildcard, then `*`) answers, and a
plaintext client or an SNI no server answers gets no chain, as Envoy's server_names match.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

STRICT, PERMISSIVE, DISABLE = "STRICT", "PERMISSIVE", "DISABLE"


@dataclass(frozen=True)
class FilterChain:
    """The transport of one accepted connection: TLS with `context`, or plaintext (None)."""

    context: ssl.SSLContext | None = None
    mutual: bool = False  # the context requires and verifies a client certificate
    own_id: str = ""  # our SPIFFE ID under mesh mTLS (X-Forwarded-Client-Cert's By)
    client_names: tuple[str, ...] = ()  # a client certificate must carry one of these SANs (if any)


PLAINTEXT = FilterChain()


@dataclass(frozen=True)
class Accepted:
    """What the listener learnt of a connection before its codec: the chain, the SNI, and the
    address an iptables REDIRECT sent it to (None when it connected to the listener itself)."""

    chain: FilterChain
    sni: str = ""
    original_dst: tuple[str, int] | None = None


class ChainSelector(Protocol):
    def select(self, tls: bool, sni: str, port: int) -> FilterChain | None:
        """The chain for a connection to `port` (its original destination's, else the listener's)."""
        ...


def inbound_chain(mode: str, tls: bool, mesh: FilterChain | None) -> FilterChain | None:
    """A sidecar's inbound chain for a client that does (`tls`) or does not speak TLS, on a port
    whose PeerAuthentication mode is `mode`; `mesh`: the mutual TLS chain (None: no certificate)."""
    if mode == DISABLE:
        return PLAINTEXT
    if tls:
        return mesh  # no certificate yet: nothing to answer a handshake with
    return None if mode == STRICT else PLAINTEXT


class InboundChains:
    """A sidecar's inbound selector: each inbound port's mode (by original destination port; a
    listener whose port is none of them, as in the loopback runtime, takes the first port's)."""

    def __init__(self) -> None:
        self.modes: Mapping[int, str] = {}
        self.mesh: FilterChain | None = None

    def select(self, tls: bool, sni: str, port: int) -> FilterChain | None:
        return inbound_chain(self.mode(port), tls, self.mesh)

    def mode(self, port: int) -> str:
        modes = self.modes
        mode = modes.get(port)
        if mode is None:
            mode = next(iter(modes.values()), PERMISSIVE)
        return mode

    def accepts(self, port: int, chain: FilterChain) -> bool:
        """Whether a connection made on `chain` would still be accepted: after a PeerAuthentication
        change, the listener drains the connections its new chains would refuse (as Envoy drains a
        changed filter chain)."""
        mode = self.mode(port)
        return mode != DISABLE if chain.context is not None else mode != STRICT


def server_name_matches(pattern: str, sni: str) -> int:
    """How well a Gateway server host matches an SNI: 0 not at all, higher is more specific."""
    if pattern == "*":
        return 1
    if pattern.startswith("*."):
        return 1 + len(pattern) if sni.endswith(pattern[1:]) else 0
    return 1000 + len(pattern) if sni == pattern else 0


class GatewayChains:
    """One gateway listener's selector: `servers` (hosts, chain; None: its certificate is unusable),
    empty for a plaintext HTTP port."""

    def __init__(self) -> None:
        self.servers: tuple[tuple[tuple[str, ...], FilterChain | None], ...] = ()

    def select(self, tls: bool, sni: str, port: int) -> FilterChain | None:
        if not self.servers:
            return PLAINTEXT
        if not tls:
            return None
        best, chain = 0, None
        for hosts, candidate in self.servers:
            score = max((server_name_matches(h, sni) for h in hosts), default=0) if sni else int("*" in hosts)
            if score > best:
                best, chain = score, candidate
        return chain
